"""`python -m train.validate`: score models on a run's validation split, one line per data source.

For choosing between models (an image size, a new data source, a retrained model against the shipped one)
without touching an evaluation set: the validation rows of RUN/split.csv (UTKFace val and, where the run
trained on it, the 10% of FairFace's training csv held out) are the only images read. Every model is scored
on the same faces, each at its own input size, in fp32 (`--precision bf16`: every model through the app's
bf16 fast path, model/fast.py: about 3x faster on a CPU with bf16 matrix units, for a choice between models
read alike).

    python -m train.validate --run runs/vgg16-utkff --model runs/vgg16-utkff/model --model assets/models/vgg16

With `--predictions DIR` it also writes each model's answers per face, as train.evaluate does (DIR/<k>/ for
the k-th --model: predictions.csv for UTKFace, fairface/predictions.csv for FairFace), so that `python -m
train.compare DIR/0 DIR/1` weighs two models face by face, with the noise of the validation split.
Each model reads faces as the app does (mirrored where its config says `mirror_average`). `--flip-average`
scores each face as the mean of its own and its mirror image's outputs even where the model does not
(test-time augmentation, as train.evaluate's option): run a plain model once with and once without it to
weigh what mirroring buys.
"""
from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np

from model.fast import PRECISIONS
from model.hub import ModelLoadError, load_model
from train.aligned import alignment_matrices
from train.data import read_split_csv
from train.evaluate import CACHE_DIR, label_arrays, predict_images, write_predictions
from train.images import load_images
from train.metrics import AgeLabels, age_mae, gender_accuracy, group_table, range_accuracy, worst_band


def validation_records(run: Path) -> list:
    """The validation rows of the run's split.csv, every source, paths resolved as the run wrote them."""
    needed = [name for name in ("data_report.json", "split.csv") if not (run / name).is_file()]
    if needed:
        raise SystemExit(f"{run} is not a training run: it has no {' or '.join(needed)} (train with python -m train)")
    root = Path(json.loads((run / "data_report.json").read_text())["split_root"])
    records = [r for r in read_split_csv(run / "split.csv", root) if r.split == "val"]
    missing = [r.path for r in records if not Path(r.path).exists()]
    if missing:
        raise SystemExit(f"{len(missing)} validation images of {run} are missing, e.g. {missing[:2]}: "
                         "rerun its training command once to extract its data again")
    return records


def validation_crops(run: Path, crops: str | None = None) -> tuple[list, list | None]:
    """The run's validation records and, for crops "app" (the default where the run trained on them), each
    face's alignment as the app finds it (train/aligned.py; None: the stored crops), for train.images.load_images."""
    records = validation_records(run)
    crops = crops or json.loads((run / "data_report.json").read_text()).get("crops", "files")
    return records, alignment_matrices(records, CACHE_DIR) if crops == "app" else None


def validation_images(run: Path, crops: str | None, image_size: int) -> tuple:
    """(decoded images, the records that decoded) of the run's validation split, as validation_crops cuts them."""
    records, matrices = validation_crops(run, crops)
    return load_images(records, image_size, CACHE_DIR, matrices=matrices)


def load_or_exit(spec: str):
    """load_model for the commands that read a run's validation split: a spec that does not load (no such
    folder, corrupt or mismatched weights) is one sentence and exit 1, not a traceback."""
    try:
        return load_model(spec)
    except ModelLoadError as error:
        raise SystemExit(str(error)) from None


def half_of(records) -> np.ndarray:
    """A fixed half of the faces (by a hash of the file name), for a held-out check of a correction."""
    return np.array([hashlib.sha256(Path(r.path).name.encode()).digest()[0] % 2 == 0 for r in records])


def correction_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The options shared by the commands that fit a correction on a run's validation split and write the
    corrected model (train.fit_age_warp, train.fit_gender_offset); each adds its own."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--run", type=Path, required=True, help="the run whose split.csv gives the val rows")
    parser.add_argument("--model", required=True, help="the model to correct, e.g. assets/models/scratch")
    parser.add_argument("--out", type=Path, required=True, help="the model folder to write")
    parser.add_argument("--crops", choices=["app", "files"], help="default: as the run trained")
    return parser


def score(pred: dict, records) -> dict:
    """Gender accuracy for every face; age MAE where the age is exact, range accuracy where it is a range."""
    y = label_arrays(records)
    ages = AgeLabels(y["age"], y["age_low"], y["age_high"])  # the masks the evaluation uses (unknown: neither)
    out = {"n": len(records), "gender_accuracy": gender_accuracy(pred["p_female"], y["gender"])}
    if ages.exact.any():
        out["age_mae"] = age_mae(pred["age"][ages.exact], ages.age[ages.exact])
    if ages.ranged.any():
        r = ages.ranged
        out["age_range_accuracy"] = range_accuracy(pred["age"][r], ages.low[r], ages.high[r])
    # Ages pulled to the middle show as signed errors of opposite sign at the young and old bands.
    by_band = group_table(pred["p_female"], y["gender"], pred["age"], y["age"], ages.bands(), labels=ages)
    out["age_signed_error_by_band"] = {band: round(row["age_signed_error"], 2) for band, row in by_band.items()
                                       if band != "unknown"}
    worst = worst_band(by_band)
    if worst:
        out["worst_band"] = worst[0]
    for gender, name in enumerate(("male", "female")):
        mask = y["gender"] == gender
        out[f"gender_accuracy_{name}"] = gender_accuracy(pred["p_female"][mask], y["gender"][mask])
        out[f"n_{name}"] = int(mask.sum())
    return out


PREDICTION_FOLDERS = {"utkface": ".", "fairface": "fairface"}  # where train.compare reads each source


def validate(run: Path, specs: list[str], crops: str | None = None, predictions: Path | None = None,
             flip_average: bool | None = None, precision: str | None = None) -> dict[str, dict[str, dict]]:
    """{model spec: {source: score}} on the run's validation split. crops: "app" (each face found and aligned
    as the app does, train/aligned.py) or "files" (as stored); default: as the run trained. predictions: also
    write each model's per-face answers under predictions/<k>/ (see the module's docstring). flip_average:
    each face's outputs averaged with its mirror image's (None: as the model's config says). precision: None
    = each model itself in fp32 (the reference); fp32 / bf16 / auto = the app's fast path (model/fast.py)."""
    records, matrices = validation_crops(run, crops)
    decoded = {}  # image size -> (images, records that decoded): models of one size share the decoding
    results = {}
    for index, spec in enumerate(specs):
        model = load_or_exit(spec)
        if model.image_size not in decoded:
            decoded[model.image_size] = load_images(records, model.image_size, CACHE_DIR, matrices=matrices)
        images, kept = decoded[model.image_size]
        pred = predict_images(model, images, flip_average=flip_average, precision=precision)
        sources = np.array([r.source for r in kept])
        results[spec] = {}
        for source in sorted(set(sources)):
            mask = sources == source
            source_pred, source_records = {k: v[mask] for k, v in pred.items()}, [r for r, m in zip(kept, mask) if m]
            results[spec][source] = score(source_pred, source_records)
            if predictions is not None and source in PREDICTION_FOLDERS:
                folder = predictions / str(index) / PREDICTION_FOLDERS[source]
                folder.mkdir(parents=True, exist_ok=True)
                write_predictions(folder / "predictions.csv", source_records, source_pred)
    return results


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m train.validate", description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="the run whose split.csv gives the val rows")
    parser.add_argument("--model", action="append", required=True,
                        help="a model folder or spec (repeatable): e.g. RUN/model, assets/models/vgg16")
    parser.add_argument("--crops", choices=["app", "files"],
                        help="faces as the app finds and aligns them, or as stored (default: as the run trained)")
    parser.add_argument("--predictions", type=Path, metavar="DIR",
                        help="also write each model's per-face answers to DIR/<k>/, for train.compare")
    parser.add_argument("--flip-average", action="store_true", default=None,
                        help="average each face's outputs with its mirror image's even where the model does not "
                             "(default: as the model's config says, as the app does)")
    parser.add_argument("--precision", choices=PRECISIONS,
                        help="read every model through the app's fast path at this precision (default: each "
                             "model itself in fp32, the reference)")
    args = parser.parse_args(argv)
    results = validate(args.run, args.model, args.crops, args.predictions, args.flip_average, args.precision)
    for spec, by_source in results.items():
        for source, s in by_source.items():
            cells = [f"gender {s['gender_accuracy']:.2%}"]
            if "age_mae" in s:
                cells.append(f"age MAE {s['age_mae']:.2f} y")
            if "age_range_accuracy" in s:
                cells.append(f"age range {s['age_range_accuracy']:.1%}")
            cells.append(f"M/F {s['gender_accuracy_male']:.1%}/{s['gender_accuracy_female']:.1%}")
            if "worst_band" in s:
                band = s["worst_band"]
                cells.append(f"worst band {band} {s['age_signed_error_by_band'][band]:+.1f} y")
            print(f"{spec:40s} {source:9s} n={s['n']:5d}  " + ", ".join(cells))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
