"""`python -m train.recalibrate`: fit a trained model's whole calibration again, on validation only.

    python -m train.recalibrate --run runs/vgg16-two128-aug2 --model assets/models/vgg16 --out runs/recal/vgg16

For a model whose outputs changed after its run fitted its calibration, e.g. one that now reads each face with
its mirror image (`mirror_average`, train.mirror): the validation rows of RUN/split.csv are read once, as the
model reads faces, and every calibration buffer (gender temperature, gender offset, age temperature, age warp)
is fitted on those outputs by the code a training run ends with (train.calibrate.fit_calibration); with
`--parts temperatures` only the two temperatures are (train.calibrate.fit_temperatures), e.g. for the ensemble,
whose members' outputs are already calibrated and warped. The model,
with it, is written to OUT (evaluate it with `train.evaluate --model OUT`). train.fit_age_warp and
train.fit_gender_offset fit one part each.

Before fitting on all of validation it prints an honest check: the calibration fitted on one half of the
validation faces, scored on the other half per source, against the model's own calibration on the same faces.
No evaluation set is read.
"""
from __future__ import annotations

import json

import numpy as np
import torch

from model.nets import split_output
from train.calibrate import calibration_of, fit_calibration, fit_temperatures, set_calibration
from train.checkpoint import save_model_dir
from train.evaluate import label_arrays, raw_outputs
from train.metrics import AgeLabels, FLOOR_BANDS, expected_calibration_error, interval_coverage
from train.validate import correction_parser, half_of, load_or_exit, score, validation_images


def held_out_scores(model, raw: torch.Tensor, records, mask: np.ndarray) -> dict:
    """{source: figures} of the model's current calibration on the faces in mask: train.validate's score plus
    the women - men gap, the worst floor band, the ECE and the 80% interval's coverage of exact ages."""
    out = {k: v.numpy() for k, v in model.readouts(raw[torch.from_numpy(mask)]).items() if k != "age_probs"}
    chosen = [r for r, keep in zip(records, mask) if keep]
    sources = np.array([r.source for r in chosen])
    scores = {}
    for source in sorted(set(sources)):
        m = sources == source
        pred, rows = {k: v[m] for k, v in out.items()}, [r for r, keep in zip(chosen, m) if keep]
        s = score(pred, rows)
        y = label_arrays(rows)
        s["women_minus_men"] = s["gender_accuracy_female"] - s["gender_accuracy_male"]
        bands = {b: e for b, e in s["age_signed_error_by_band"].items() if b in FLOOR_BANDS}
        s["worst_floor_band_error"] = max(bands.values(), key=abs) if bands else float("nan")
        s["ece"] = expected_calibration_error(pred["p_female"], y["gender"])
        exact = AgeLabels(y["age"], y["age_low"], y["age_high"]).exact
        if exact.any():
            s["coverage"] = interval_coverage(pred["age_low"][exact], pred["age_high"][exact], y["age"][exact])
        scores[source] = s
    return scores


def print_scores(name: str, scores: dict) -> None:
    for source, s in scores.items():
        age = (f"age MAE {s['age_mae']:.2f} y, 80% covers {s['coverage']:.1%}" if "age_mae" in s else
               f"age range {s['age_range_accuracy']:.1%}")
        print(f"held-out half, {name:24s} {source:9s} gender {s['gender_accuracy']:.2%}, women - men "
              f"{s['women_minus_men'] * 100:+.1f} points, ECE {s['ece']:.3f}, {age}, worst band "
              f"{s.get('worst_band', '-')} {s['worst_floor_band_error']:+.1f} y")


def main(argv=None) -> None:
    parser = correction_parser("python -m train.recalibrate", __doc__.split("\n")[0])
    parser.add_argument("--parts", choices=["all", "temperatures"], default="all",
                        help="all: every calibration buffer (default); temperatures: the gender and age temperatures "
                             "only, the model's own offset and age warp kept")
    args = parser.parse_args(argv)

    model = load_or_exit(args.model)
    images, records = validation_images(args.run, args.crops, model.image_size)
    raw = raw_outputs(model, images, model.mirror_average)
    gender_logit, age_logits = split_output(raw)
    labels = {k: torch.from_numpy(v).long() for k, v in label_arrays(records).items() if k != "race"}

    own = calibration_of(model)

    def fit_on(mask: np.ndarray) -> dict:
        m = torch.from_numpy(mask)
        chosen = {k: v[m] for k, v in labels.items()}
        if args.parts == "temperatures":
            return fit_temperatures(gender_logit[m], age_logits[m], chosen, own)
        return fit_calibration(gender_logit[m], age_logits[m], chosen, [r for r, keep in zip(records, mask) if keep])

    half = half_of(records)
    held_out = {}
    for name, calibration in (("the model's own", own), ("fitted on the other half", fit_on(half))):
        set_calibration(model, calibration)
        held_out[name] = held_out_scores(model, raw, records, ~half)
        print_scores(name, held_out[name])
    fitted = fit_on(np.ones(len(records), dtype=bool))
    set_calibration(model, fitted)
    save_model_dir(model, args.out)
    print(json.dumps({"fitted": {k: v for k, v in fitted.items() if k != "age_warp"},
                      "own": {k: v for k, v in own.items() if k != "age_warp"},
                      "parts": args.parts, "mirror_average": model.mirror_average, "held_out": held_out}))
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
