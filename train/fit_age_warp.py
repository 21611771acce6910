"""`python -m train.fit_age_warp`: correct a trained model's ages pulled to the middle, on validation only.

    python -m train.fit_age_warp --run runs/scratch-app-p1 --model assets/models/scratch --out runs/scratch-warp/model

Reads the validation rows of RUN/split.csv (as train.validate does), fits the monotone age warp of
train/calibrate.py on them and writes the model with it to OUT (a model folder: evaluate it with
`train.evaluate --model OUT`). New training runs fit the warp themselves (train.train.finish); this is for a
model trained before, without training it again.

Before fitting on all of validation it prints an honest check: the warp fitted on one half of the validation
faces and scored on the other half, per source and age band, against no warp. No evaluation set is read.
"""
from __future__ import annotations

import json

import numpy as np
import torch

from model.age import age_interval, identity_warp, mean_age, warp_ages
from model.hub import load_model
from train.calibrate import WARP_KNOTS, fit_age_warp, warp_inputs
from train.checkpoint import save_model_dir
from train.evaluate import label_arrays, predict_images
from train.metrics import FLOOR_BANDS
from train.validate import correction_parser, half_of, validation_images


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
    parser.add_argument("--knots", type=float, nargs="+", default=list(WARP_KNOTS),
                        help="true ages where the fitted pull to the middle may bend (default: %(default)s)")
    args = parser.parse_args(argv)

    model = load_model(args.model)
    model.age_warp.copy_(identity_warp())  # fit from the model's own distributions, not a warp it may carry
    images, records = validation_images(args.run, args.crops, model.image_size)
    pred = predict_images(model, images, keep_probs=True)
    probs = torch.from_numpy(pred["age_probs"])
    target, bands, sources = warp_inputs(records)
    bands, sources = np.asarray(bands), np.asarray(sources)

    def fit_on(mask: np.ndarray):
        return fit_age_warp(probs[torch.from_numpy(mask)], target[mask], list(bands[mask]), list(sources[mask]),
                            knots=args.knots)

    half = half_of(records)
    warp_a, _ = fit_on(half)
    age = label_arrays(records)["age"]
    exact = ~half & (age >= 0)
    held_out = {}
    for name, warp in (("no warp", identity_warp()), ("warp fitted on the other half", warp_a)):
        warped = warp_ages(probs, warp)
        held_out[name] = band_errors(mean_age(warped).numpy(), target, bands, sources, ~half)
        low, high = (v.numpy()[exact] for v in age_interval(warped))
        mae = np.abs(mean_age(warped).numpy()[exact] - age[exact]).mean()
        covered = ((age[exact] >= low) & (age[exact] <= high)).mean()
        print(f"held-out half, {name:30s} exact ages n={exact.sum()}: MAE {mae:.2f} y, 80% interval covers {covered:.1%}")
        for source, rows in held_out[name].items():
            worst = max(rows, key=lambda b: abs(rows[b]))
            cells = " ".join(f"{b} {e:+.1f}" for b, e in rows.items())
            print(f"held-out half, {name:30s} {source:9s} worst {worst} {rows[worst]:+.1f} y | {cells}")
    warp, knots = fit_on(np.ones(len(records), dtype=bool))
    model.age_warp.copy_(warp)
    save_model_dir(model, args.out)
    print(json.dumps({"knots": knots, "held_out": held_out, "warp": [round(float(w), 2) for w in warp]}))
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
