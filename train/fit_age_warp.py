"""`python -m train.fit_age_warp`: fit a trained model's age calibration again, on validation only.

    python -m train.fit_age_warp --run runs/scratch-app-p1 --model assets/models/scratch --out runs/scratch-warp/model

Reads the validation rows of RUN/split.csv (as train.validate does), fits the age distribution's calibration
of train/calibrate.py on them (the temperature that makes the 80% interval cover 80% of exact ages, then the
monotone age warp that undoes ages pulled to the middle) and writes the model with it to OUT (a model folder:
evaluate it with `train.evaluate --model OUT`). New training runs fit both themselves (train.train.finish);
this is for a model trained before, without training it again.

Before fitting on all of validation it prints an honest check: the calibration fitted on one half of the
validation faces and scored on the other half, per source and age band, against none and against the model's
own. No evaluation set is read.
"""
from __future__ import annotations

import json

import numpy as np
import torch

from model.age import age_interval, identity_warp, mean_age, warp_ages
from model.nets import split_output
from train.calibrate import fit_age_calibration, warp_inputs
from train.checkpoint import save_model_dir
from train.evaluate import label_arrays, raw_outputs
from train.metrics import FLOOR_BANDS
from train.validate import correction_parser, half_of, load_or_exit, validation_images


def band_errors(age: np.ndarray, target: np.ndarray, bands, sources, mask: np.ndarray) -> dict:
    """{source: {band: mean signed error}} over the faces in mask, floor bands only."""
    bands, sources = np.asarray(bands), np.asarray(sources)
    out = {}
    for source in sorted(set(sources[mask])):
        rows = {}
        for band in FLOOR_BANDS:
            m = mask & (sources == source) & (bands == band) & np.isfinite(target)
            if m.sum():
                rows[band] = round(float((age[m] - target[m]).mean()), 2)
        out[source] = rows
    return out


def main(argv=None) -> None:
    parser = correction_parser("python -m train.fit_age_warp", __doc__.split("\n")[0])
    args = parser.parse_args(argv)

    model = load_or_exit(args.model)
    own = float(model.age_temperature), model.age_warp.clone()
    images, records = validation_images(args.run, args.crops, model.image_size)
    # fit from the model's own logits (as it reads faces), not through a calibration it may carry
    logits = split_output(raw_outputs(model, images, model.mirror_average))[1]
    labels = {k: torch.from_numpy(v).long() for k, v in label_arrays(records).items() if k != "race"}
    target, bands, sources = warp_inputs(records)

    def fit_on(mask: np.ndarray) -> dict:
        m = torch.from_numpy(mask)
        return fit_age_calibration(logits[m], labels["age"][m], labels["age_low"][m], labels["age_high"][m],
                                   [r for r, keep in zip(records, mask) if keep])

    half = half_of(records)
    other_half = fit_on(half)
    age = labels["age"].numpy()
    exact = ~half & (age >= 0)
    held_out = {}
    for name, (t, warp) in (("none", (1.0, identity_warp())), ("the model's own", own),
                            ("fitted on the other half", (other_half["temperature"], other_half["warp"]))):
        probs = warp_ages((logits / t).softmax(-1), warp)
        held_out[name] = band_errors(mean_age(probs).numpy(), target, bands, sources, ~half)
        low, high = (v.numpy()[exact] for v in age_interval(probs))
        mae = np.abs(mean_age(probs).numpy()[exact] - age[exact]).mean()
        covered = ((age[exact] >= low) & (age[exact] <= high)).mean()
        print(f"held-out half, {name:25s} T {t:.3f}, exact ages n={exact.sum()}: MAE {mae:.2f} y, "
              f"80% interval covers {covered:.1%}")
        for source, rows in held_out[name].items():
            worst = max(rows, key=lambda b: abs(rows[b]))
            cells = " ".join(f"{b} {e:+.1f}" for b, e in rows.items())
            print(f"held-out half, {name:25s} {source:9s} worst {worst} {rows[worst]:+.1f} y | {cells}")
    fitted = fit_on(np.ones(len(records), dtype=bool))
    model.age_temperature.fill_(fitted["temperature"])
    model.age_warp.copy_(fitted["warp"])
    save_model_dir(model, args.out)
    print(json.dumps({"age_temperature": fitted["temperature"], "fitted_to": fitted["fitted_to"],
                      "knots": fitted["warp_knots"], "held_out": held_out,
                      "warp": [round(float(w), 2) for w in fitted["warp"]]}))
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
