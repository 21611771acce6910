"""`python -m train.fit_gender_offset`: even out how often a trained model misreads women and men, on validation.

    python -m train.fit_gender_offset --run runs/scratch-app-p1 --model assets/models/scratch \
        --out runs/scratch-fair/model

Reads the validation rows of RUN/split.csv (as train.validate does), fits the gender offset of
train/calibrate.py on them and writes the model with it to OUT (evaluate it with `train.evaluate --model OUT`).
New training runs fit it themselves (train.train.finish); this is for a model trained before.

Before fitting on all of validation it prints an honest check: the offset fitted on one half of the validation
faces and scored on the other half, per source, against no offset. No evaluation set is read.
"""
from __future__ import annotations

import json

import numpy as np

from train.calibrate import fit_gender_offset, gender_gaps
from train.checkpoint import save_model_dir
from train.evaluate import label_arrays, predict_images
from train.validate import correction_parser, half_of, load_or_exit, validation_images


def accuracy_by_source(scaled_logit: np.ndarray, gender: np.ndarray, sources: np.ndarray, offset: float) -> dict:
    said_female = scaled_logit + offset > 0
    return {str(s): round(float((said_female[sources == s] == (gender[sources == s] == 1)).mean()), 4)
            for s in np.unique(sources)}


def main(argv=None) -> None:
    args = correction_parser("python -m train.fit_gender_offset", __doc__.split("\n")[0]).parse_args(argv)

    model = load_or_exit(args.model)
    images, records = validation_images(args.run, args.crops, model.image_size)
    scaled = predict_images(model, images)["logit"] / float(model.gender_temperature)
    gender, sources = label_arrays(records)["gender"], np.array([r.source for r in records])

    half = half_of(records)
    offset_a = fit_gender_offset(scaled[half], gender[half], sources[half])
    held_out = {}
    for name, offset in (("no offset", 0.0), (f"offset {offset_a:+.2f} fitted on the other half", offset_a)):
        held = ~half
        gaps = gender_gaps(scaled[held], gender[held], sources[held], offset)
        accuracy = accuracy_by_source(scaled[held], gender[held], sources[held], offset)
        held_out[name] = {"women minus men": gaps, "accuracy": accuracy}
        cells = " | ".join(f"{s}: accuracy {accuracy[s]:.2%}, women - men " +
                           (f"{gaps[s] * 100:+.1f} points" if s in gaps else "(too few faces)") for s in accuracy)
        print(f"held-out half, {name:40s} {cells}")
    offset = fit_gender_offset(scaled, gender, sources)
    model.gender_offset.fill_(offset)
    save_model_dir(model, args.out)
    print(json.dumps({"gender_offset": offset, "held_out": held_out}))
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
