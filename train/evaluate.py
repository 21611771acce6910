"""`python -m train.evaluate`: score a model honestly on UTKFace's test split and on FairFace's validation set.

    python -m train.evaluate --run RUN [--fairface DIR] [--limit N]
    python -m train.evaluate --model DIR --split-csv split.csv --data UTKFace.tar.gz --out OUT [--fairface DIR]

Writes RUN/eval/ (or OUT/) for the split's UTKFace test rows: metrics.json, report.md, predictions.csv and PNG
plots (confusion matrix, reliability diagram, predicted-vs-true age, per-race and per-age-band bars). The test
split is never used for any choice made during training; the gender temperature was fitted on the validation
split. Each face is read as the app reads it: averaged with its mirror image where the model's config says
`mirror_average`. Other splits and --flip-average (mirroring forced on for a model that does not use it, a
what-if) write to their own folder, e.g. RUN/eval-val-flip/, so they never replace the test report that is
shipped.

FairFace's validation set (--fairface DIR, else $FACE_FAIRFACE_DIR, else ~/.cache/face-age-gender/fairface
when present) is a second, differently collected source, labelled with age ranges. It goes to .../fairface/:
the model on the crops as training reads them, and the demo's whole path end to end (demo.pipeline, as an
upload: detection on, and off). FairFace val is for evaluation only: nothing in training reads it.

By default the crops are scored by the fp32 model (the reference) and the app path runs at the CPU's fastest
precision. --precision fp32|bf16|int8|auto scores the app's fast path (model/fast.py) at that precision for both,
into RUN/eval-<precision>/: the check that bf16 or int8 inference leaves the figures where they were.
"""
from __future__ import annotations

import argparse
import copy
import csv
import json
import logging
import os
import random
import shlex
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from model.age import AGE_BINS
from model.faces import DEFAULT_DETECTOR, DEFAULT_MIN_SCORE, FaceFinder, clip_box, cut_faces, main_box_index
from model.fast import PRECISIONS, fast_model
from model.imageio import BadImageError, load_image
from model.nets import AgeGenderNet, read_outputs, split_output
from model.preprocess import batch_from_faces, normalize
from train import plots
from train.checkpoint import atomic_write_json, atomic_write_text
from train.report import END_TO_END_MODES, MIN_GROUP, band_order, fairface_report, ordered, report_markdown
from train.data import FRAMING_CROP, RACES, extract_archive, load_records, race_name, read_split_csv, scan_fairface
from train.aligned import alignment_matrices
from train.images import load_images
from train.metrics import all_metrics, end_to_end_metrics, expected_calibration_error, worst_group_gap

log = logging.getLogger("train.evaluate")

CACHE_DIR = Path.home() / ".cache" / "face-age-gender"
FAIRFACE_ENV = "FACE_FAIRFACE_DIR"
DEFAULT_FAIRFACE = CACHE_DIR / "fairface"


def default_fairface_dir() -> Path | None:
    """$FACE_FAIRFACE_DIR, else the usual cache folder when it holds FairFace's validation csv, else None."""
    if os.environ.get(FAIRFACE_ENV):
        return Path(os.environ[FAIRFACE_ENV]).expanduser()
    return DEFAULT_FAIRFACE if (DEFAULT_FAIRFACE / "fairface_label_val.csv").exists() else None


# ---------------------------------------------------------------------------------------------- UTKFace rows

def load_run_model(run: Path) -> AgeGenderNet:
    from model.hub import load_model  # the one loader (a local folder: no network)
    return load_model(str(run / "model"))


def resolve_records(run: Path, split: str) -> list:
    """The run's split.csv UTKFace rows for `split`, with paths resolved against the data folder it was made
    from (re-extracted from the run's data sources if that folder has gone)."""
    root = Path(json.loads((run / "data_report.json").read_text())["split_root"])
    records = [r for r in read_split_csv(run / "split.csv", root) if r.split == split and r.source == "utkface"]
    if not all(Path(r.path).exists() for r in records):
        config = json.loads((run / "train_config.json").read_text())
        load_records(config["data"], Path(config["cache_dir"]))  # extracts the archive into the cache again
    return records


def split_csv_records(split_csv: Path, data: Path, split: str, cache_dir: Path = CACHE_DIR) -> list:
    """A published split.csv's UTKFace rows for `split`, found by file name in `data` (the UTKFace archive,
    extracted once into the cache, or its folder)."""
    if not data.exists():
        raise SystemExit(f"UTKFace data not found: {data}")
    folder = extract_archive(data, cache_dir) if data.is_file() else data
    by_name = {p.name: p for p in folder.rglob("*") if p.is_file()}
    records = [r for r in read_split_csv(split_csv) if r.source == "utkface" and r.split == split]
    missing = [r.path for r in records if Path(r.path).name not in by_name]
    if missing:
        raise SystemExit(f"{len(missing)} of the {len(records)} UTKFace {split} rows of {split_csv} are not in "
                         f"{data}, e.g. {missing[:3]}: is it the data the split was made from?")
    for r in records:
        r.path = str(by_name[Path(r.path).name])
    return records


# ---------------------------------------------------------------------------------------------- predictions

@torch.no_grad()
def crop_images(records, image_size: int, crops: str) -> tuple[torch.Tensor, list]:
    """The faces as the model is scored on them: "app" = found and aligned as the app does (what the models
    train on since crops were cut that way, train/aligned.py), "files" = the stored crops."""
    matrices = alignment_matrices(records, CACHE_DIR) if crops == "app" else None
    return load_images(records, image_size, matrices=matrices)


def reading_faces(model: AgeGenderNet, flip_average: bool | None) -> AgeGenderNet:
    """The model as an evaluation reads faces, on the crops and on the app's path alike: flip_average None =
    as its config says (`mirror_average`); True / False = mirrored or not (a what-if), on a shallow copy that
    shares the weights, so the caller's model reads as before."""
    if flip_average is None or flip_average == model.mirror_average:
        return model
    model = copy.copy(model)
    model.mirror_average = flip_average
    return model


@torch.no_grad()
def raw_outputs(forward, images: torch.Tensor, mirror: bool, batch_size: int = 128) -> torch.Tensor:
    """forward's raw outputs [N, 1 + AGE_BINS] for decoded faces, each read as model.nets.read_outputs reads
    it (mirror: the mean over the face and its mirror image). Before any calibration: what it is fitted on."""
    norm = normalize()
    parts = [read_outputs(forward, norm(images[start:start + batch_size]), mirror)
             for start in tqdm(range(0, len(images), batch_size), desc="predicting", leave=False)]
    return torch.cat(parts).float() if parts else torch.zeros(0, 1 + AGE_BINS)


def predict_images(model: AgeGenderNet, images: torch.Tensor, batch_size: int = 128,
                   flip_average: bool | None = None, precision: str | None = None,
                   keep_probs: bool = False) -> dict[str, np.ndarray]:
    """flip_average: average each face's output logits with its mirror image's (two forward passes); None:
    as the model reads faces in the app (its `mirror_average`).
    precision: None = the model itself in fp32 (the reference); "fp32" / "bf16" / "int8" / "auto" = the app's
    fast path (model/fast.py) at that precision. keep_probs: also return the age distributions."""
    if not len(images):
        return {}
    model = reading_faces(model, flip_average)
    forward = model if precision is None else fast_model(model, precision)
    raw = raw_outputs(forward, images, model.mirror_average, batch_size)
    out = model.readouts(raw)
    out["logit"] = split_output(raw)[0]  # before temperature scaling, for the uncalibrated ECE
    return {k: v.numpy() for k, v in out.items() if keep_probs or k != "age_probs"}


def label_arrays(records) -> dict[str, np.ndarray]:
    return {name: np.array([getattr(r, name) for r in records])
            for name in ("gender", "age", "race", "age_low", "age_high")}


def model_metrics(model: AgeGenderNet, records, pred: dict, split: str, precision: str | None = None) -> dict:
    """all_metrics for decoded records and their predictions, plus the uncalibrated ECE and the model."""
    y = label_arrays(records)
    metrics = all_metrics(pred["p_female"], y["gender"], pred["age"], y["age"], y["race"], pred["age_low"],
                          pred["age_high"], y["age_low"], y["age_high"])
    metrics["split"] = split
    metrics["flip_average"] = model.mirror_average
    metrics["precision"] = precision or "fp32 (reference)"
    metrics["model"] = {"arch": model.arch, "image_size": model.image_size,
                        "gender_temperature": float(model.gender_temperature),
                        "gender_offset": float(model.gender_offset),
                        "age_temperature": float(model.age_temperature)}
    uncalibrated = torch.sigmoid(torch.from_numpy(pred["logit"])).numpy()  # stable for large logits
    metrics["gender"]["ece_uncalibrated"] = expected_calibration_error(uncalibrated, y["gender"])
    return metrics


def app_predictions(model: AgeGenderNet, records, detect: bool, precision: str | None = None,
                    finder: FaceFinder | None = None) -> tuple[dict[str, np.ndarray], str]:
    """Each image as an upload goes through the app (demo/pipeline.py runs the same model/ steps): decoded by
    model.imageio, faces found by model.faces.FaceFinder at the app's defaults (detect=True; False: the whole
    image is the face), aligned, predicted by the fast path at `precision`, and the main face scored. No face
    found, or an image the app refuses: found is False and the predictions NaN. Returns the arrays and the
    precision the model ran at. finder: another FaceFinder's settings (train.measure_tight_crops). tests/
    test_train_loop.py checks the readouts equal the app's."""
    fast = fast_model(model.eval(), precision)
    finder = finder or FaceFinder()
    n = len(records)
    out = {k: np.full(n, np.nan) for k in ("p_female", "age", "age_low", "age_high", "det_score")}
    out["found"], out["faces"] = np.zeros(n, bool), np.zeros(n, int)
    mode = "detection on" if detect else "detection off"
    for i, r in enumerate(tqdm(records, desc=f"app path, {mode}", mininterval=5)):
        try:
            rgb = load_image(r.path)
        except BadImageError as error:
            log.warning("%s: %s", r.path, error)
            continue
        detections = finder.find(rgb, DEFAULT_MIN_SCORE, DEFAULT_DETECTOR, []) if detect else [None]
        out["faces"][i] = len(detections)
        if not detections:
            continue
        main = main_box_index([clip_box(None if d is None else d.box, rgb.shape) for d in detections], rgb.shape)
        _, crops = cut_faces(rgb, detections)  # every face, as the app batches them
        predicted = fast.predict(batch_from_faces(crops, model.image_size))
        out["found"][i] = True
        for k in ("p_female", "age", "age_low", "age_high"):
            out[k][i] = float(predicted[k][main])
        out["det_score"][i] = np.nan if detections[main] is None else detections[main].score
    return out, fast.precision


# ---------------------------------------------------------------------------------------------- FairFace

def race_stratified_subset(records, limit: int, seed: int = 0) -> list:
    """`limit` records with every race in proportion (largest remainders), drawn with a seeded RNG; the
    chosen records keep their input order. limit 0 (or above the count) keeps all."""
    if not limit or limit >= len(records):
        return list(records)
    by_race = defaultdict(list)
    for r in records:
        by_race[r.race].append(r)
    exact = {race: limit * len(group) / len(records) for race, group in by_race.items()}
    quota = {race: int(share) for race, share in exact.items()}
    for race in sorted(exact, key=lambda race: quota[race] - exact[race])[:limit - sum(quota.values())]:
        quota[race] += 1
    rng = random.Random(seed)
    chosen = set()
    for race in sorted(by_race):
        chosen.update(r.path for r in rng.sample(sorted(by_race[race], key=lambda r: r.path), quota[race]))
    return [r for r in records if r.path in chosen]


def evaluate_fairface(model: AgeGenderNet, root: Path, out: Path, *, limit: int = 0, seed: int = 0,
                      flip_average: bool | None = None, end_to_end: bool = True, command: str = "",
                      precision: str | None = None, crops: str = "app") -> dict:
    """FairFace's validation set -> out/: the model on the crops (read as training reads FairFace), and
    with end_to_end the demo's path with detection on and off. Returns the metrics written."""
    model = reading_faces(model, flip_average)
    root = Path(root)
    if not (root / "fairface_label_val.csv").exists():
        raise SystemExit(f"FairFace not found: {root}/fairface_label_val.csv is missing")
    out.mkdir(parents=True, exist_ok=True)
    listed, scan = scan_fairface(root, "val")
    chosen = race_stratified_subset(listed, limit, seed)
    images, records = crop_images(chosen, model.image_size, crops)
    if not records:
        raise SystemExit(f"no readable FairFace validation images under {root}")
    pred = predict_images(model, images, precision=precision)
    metrics = model_metrics(model, records, pred, "val", precision)
    metrics["race_gap"] = worst_group_gap(metrics["by_race"], min_n=MIN_GROUP)
    metrics["data"] = {"source": "fairface", "root": str(root), "rows": scan["rows"], "skipped": scan["skipped"],
                       "usable": len(listed), "limit": limit, "seed": seed, "chosen": len(chosen),
                       "unreadable": len(chosen) - len(records), "framing_crop": FRAMING_CROP.get("fairface"),
                       "crops": crops}
    metrics["command"] = command
    y = label_arrays(records)
    app = {}
    if end_to_end:
        metrics["end_to_end"] = {}
        for name, detect in END_TO_END_MODES.items():
            start = time.perf_counter()
            app[name], ran_at = app_predictions(model, records, detect, precision)
            seconds = time.perf_counter() - start
            scores = end_to_end_metrics(app[name]["found"], app[name]["p_female"], y["gender"], app[name]["age"],
                                        y["age_low"], y["age_high"], y["race"])
            scores["race_gap"] = worst_group_gap(scores["by_race"], min_n=MIN_GROUP)
            metrics["end_to_end"][name] = scores | {"seconds": seconds, "ms_per_image": 1000 * seconds / len(records),
                                                    "precision": ran_at}
            log.info("FairFace val end to end, %s (n=%d, %.0f s): face found %.3f, gender acc %.4f, age range acc "
                     "%.3f", name.replace("_", " "), len(records), seconds, scores["face_found"],
                     scores["gender_accuracy"], scores["age_range_accuracy"])
    atomic_write_json(out / "metrics.json", metrics)
    write_predictions(out / "predictions.csv", records, pred, app)
    write_plots(metrics, y, pred, out)
    if end_to_end:
        plots.end_to_end_by_race(ordered(metrics["by_race"], RACES), metrics["end_to_end"],
                                 out / "end_to_end_by_race.png")
    atomic_write_text(out / "report.md", fairface_report(metrics))
    log.info("FairFace val (n=%d): gender acc %.4f, F1 %.4f, ECE %.4f | age range acc %.3f, interval overlap %.3f",
             metrics["n"], metrics["gender"]["accuracy"], metrics["gender"]["f1_weighted"], metrics["gender"]["ece"],
             metrics["age_range"]["range_accuracy"], metrics["age_range"]["interval_overlap"])
    return metrics


def fairface_summary(m: dict) -> dict:
    """The FairFace figures worth carrying in the main (UTKFace) metrics.json, which is what gets bundled."""
    summary = {"n": m["n"], "gender_accuracy": m["gender"]["accuracy"], "gender_ece": m["gender"]["ece"],
               "age_range_accuracy": m["age_range"]["range_accuracy"],
               "age_interval_overlap": m["age_range"]["interval_overlap"],
               "age_mean_signed_error": m["age_range"]["mean_signed_error"], "race_gap": m["race_gap"]}
    for name, e in m.get("end_to_end", {}).items():
        summary[name] = {k: e[k] for k in ("face_found", "gender_accuracy", "age_range_accuracy", "race_gap")}
    return summary


# ---------------------------------------------------------------------------------------------- UTKFace

def eval_dir(run: Path, split: str = "test", flip_average: bool | None = None, precision: str | None = None) -> Path:
    return run / "-".join(["eval"] + ([split] if split != "test" else []) + (["flip"] if flip_average else [])
                          + ([precision] if precision else []))


def evaluate_records(model: AgeGenderNet, records, out: Path, *, split: str = "test", flip_average: bool | None = None,
                     title: str = "", data: str = "", command: str = "", fairface: Path | None = None,
                     limit: int = 0, end_to_end: bool = True, fairface_note: str = "",
                     precision: str | None = None, crops: str = "app") -> dict:
    """UTKFace records of one split -> out/ (metrics.json, report.md, predictions.csv, plots); with
    `fairface`, FairFace's validation set -> out/fairface/ too (else `fairface_note` says why not, in the
    report). Returns the UTKFace metrics."""
    out.mkdir(parents=True, exist_ok=True)
    model = reading_faces(model, flip_average)
    images, records = crop_images(records, model.image_size, crops)
    pred = predict_images(model, images, precision=precision)
    metrics = model_metrics(model, records, pred, split, precision)
    metrics["data"] = data
    metrics["crops"] = crops
    metrics["command"] = command
    if fairface is not None:
        ff = evaluate_fairface(model, fairface, out / "fairface", limit=limit,
                               end_to_end=end_to_end, command=command, precision=precision, crops=crops)
        metrics["fairface_val"] = fairface_summary(ff)
    elif fairface_note:
        metrics["fairface_val"] = {"not_evaluated": fairface_note}
    atomic_write_json(out / "metrics.json", metrics)
    write_predictions(out / "predictions.csv", records, pred)
    write_plots(metrics, label_arrays(records), pred, out)
    atomic_write_text(out / "report.md", report_markdown(title or out.parent.name, metrics))
    a = metrics["age"]
    log.info("%s on UTKFace %s (n=%d): gender acc %.4f, F1 %.4f, ECE %.4f | age MAE %.2f, CS@5 %.3f | ages 0-12: "
             "MAE %.2f, signed %+.2f", title, split, metrics["n"], metrics["gender"]["accuracy"],
             metrics["gender"]["f1_weighted"], metrics["gender"]["ece"], a["mae"], a["cs5"], a["ages_0_12"]["mae"],
             a["ages_0_12"]["mean_signed_error"])
    return metrics


def evaluate_run(run: Path, split: str = "test", flip_average: bool | None = None, fairface: Path | None = None,
                 limit: int = 0, end_to_end: bool = True, command: str = "", fairface_note: str = "",
                 precision: str | None = None, crops: str = "app") -> dict:
    """A training run on its split's UTKFace rows -> RUN/eval*/ (and FairFace val when `fairface` is given)."""
    run = Path(run)
    command = command or f"python -m train.evaluate --run {run}" + (f" --fairface {fairface}" if fairface else "")
    return evaluate_records(load_run_model(run), resolve_records(run, split),
                            eval_dir(run, split, flip_average, precision), precision=precision,
                            split=split, flip_average=flip_average, title=run.name, command=command,
                            data=f"deduplicated UTKFace, the {split} rows of the run's `split.csv`",
                            fairface=fairface, limit=limit, end_to_end=end_to_end, fairface_note=fairface_note,
                            crops=crops)


def evaluate_model_dir(model_dir: Path, split_csv: Path, data: Path, out: Path, split: str = "test",
                       flip_average: bool | None = None, fairface: Path | None = None, limit: int = 0,
                       end_to_end: bool = True, cache_dir: Path = CACHE_DIR, command: str = "",
                       fairface_note: str = "", precision: str | None = None, crops: str = "app") -> dict:
    """A model folder (e.g. assets/models/scratch) on a published split.csv's UTKFace rows -> out/."""
    from model.hub import load_model
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").exists():
        raise SystemExit(f"{model_dir} is not a model folder (no config.json)")
    records = split_csv_records(Path(split_csv), Path(data), split, Path(cache_dir))
    command = command or (f"python -m train.evaluate --model {model_dir} --split-csv {split_csv} --data {data} "
                          f"--out {out}")
    return evaluate_records(load_model(str(model_dir)), records, Path(out), split=split, flip_average=flip_average,
                            title=model_dir.name, command=command, fairface=fairface, limit=limit,
                            end_to_end=end_to_end, fairface_note=fairface_note, precision=precision, crops=crops,
                            data=f"deduplicated UTKFace ({data}), the {split} rows of `{split_csv}`")


# ---------------------------------------------------------------------------------------------- files

def exact(value) -> str:
    """A readout as written to predictions.csv: enough digits for a float32 to read back the same, so that
    train.compare makes the same 50% gender call and the same age-range call as the metrics (at 4 digits a
    p_female of 0.49996 read back as 0.5000, a woman: one face of UTKFace test moved between the two)."""
    return f"{float(value):.9g}"


def write_predictions(path: Path, records, pred, app: dict | None = None) -> None:
    """One row per face: labels and the model's readouts; with `app`, each end-to-end mode's too."""
    app = app or {}
    ranges = any(r.has_range for r in records)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "age", "gender", "race", "p_female", "pred_age", "age_low", "age_high"]
                        + (["true_age_low", "true_age_high"] if ranges else [])
                        + [f"{mode}_{k}" for mode in app for k in ("found", "p_female", "age", "age_low", "age_high")])
        for i, r in enumerate(records):
            row = [Path(r.path).name, r.age, r.gender, race_name(r.race), exact(pred["p_female"][i]),
                   exact(pred["age"][i]), int(pred["age_low"][i]), int(pred["age_high"][i])]
            row += [r.age_low, r.age_high] if ranges else []
            for a in app.values():
                row += [int(a["found"][i])] + ([exact(a["p_female"][i]), exact(a["age"][i]),
                                                int(a["age_low"][i]), int(a["age_high"][i])]
                                               if a["found"][i] else ["", "", "", ""])
            writer.writerow(row)


def write_plots(metrics: dict, y: dict, pred: dict, out: Path) -> None:
    plots.confusion_matrix(metrics["gender"]["confusion"], out / "confusion.png")
    plots.reliability_diagram(metrics["gender"]["reliability"], metrics["gender"]["ece"], out / "reliability.png")
    exact = y["age"] >= 0
    if exact.any():
        plots.age_scatter(y["age"][exact], pred["age"][exact], out / "age_scatter.png")
    if "age_range" in metrics:
        plots.age_by_range(y["age_low"], y["age_high"], pred["age"], out / "age_by_range.png")
    plots.group_bars(ordered(metrics["by_race"], RACES), "race", out / "by_race.png")
    plots.group_bars(ordered(metrics["by_age_band"], band_order(metrics["by_age_band"])), "age band",
                     out / "by_age_band.png")


def main(argv=None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    parser = argparse.ArgumentParser(prog="python -m train.evaluate", description=__doc__.split("\n")[0])
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--run", type=Path, help="training output directory (writes RUN/eval/)")
    what.add_argument("--model", type=Path, help="a model folder (config.json + model.safetensors), e.g. "
                                                 "assets/models/scratch; needs --split-csv, --data and --out")
    parser.add_argument("--split-csv", type=Path, help="with --model: the split file, e.g. assets/models/split.csv")
    parser.add_argument("--data", type=Path, help="with --model: the UTKFace archive or folder the split lists")
    parser.add_argument("--out", type=Path, help="with --model: the output folder")
    parser.add_argument("--cache-dir", type=Path, default=CACHE_DIR, help="where the UTKFace archive is extracted")
    parser.add_argument("--split", default="test", choices=["train", "val", "test"])
    parser.add_argument("--flip-average", action="store_true", default=None,
                        help="average each face's output with its mirror image's even where the model does not "
                             "(default: as the model's config says, as the app does)")
    parser.add_argument("--fairface", type=Path, default=None,
                        help=f"FairFace folder (fairface_label_val.csv + images); default ${FAIRFACE_ENV}, else "
                             f"{DEFAULT_FAIRFACE} if present")
    parser.add_argument("--no-fairface", action="store_true", help="evaluate UTKFace only")
    parser.add_argument("--no-end-to-end", action="store_true",
                        help="FairFace: score the model on the crops only, not the demo's path (the slow part)")
    parser.add_argument("--limit", type=int, default=0,
                        help="FairFace: a seeded race-stratified subset of this many images (default all)")
    parser.add_argument("--threads", type=int, help="torch threads (1 is often faster on a busy 2-core machine)")
    parser.add_argument("--precision", choices=PRECISIONS,
                        help="score the app's fast path (model/fast.py) at this precision, crops and end to end, "
                             "into RUN/eval-<precision>/ (default: crops by the fp32 model, the app path at auto)")
    parser.add_argument("--crops", choices=["app", "files"], default="app",
                        help="score the model on each face as the app finds and aligns it (where it finds none, "
                             "the stored crop), as training cuts them; or on the stored crops")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.model and not (args.split_csv and args.data and args.out):
        parser.error("--model needs --split-csv, --data and --out")
    fairface = None if args.no_fairface else args.fairface or default_fairface_dir()
    note = "left out with --no-fairface" if args.no_fairface else \
        f"not found: no --fairface, ${FAIRFACE_ENV} unset, no {DEFAULT_FAIRFACE}" if fairface is None else ""
    if note:
        log.warning("FairFace %s: evaluating UTKFace only", note)
    command = shlex.join(["python", "-m", "train.evaluate"] + (sys.argv[1:] if argv is None else list(argv)))
    options = dict(split=args.split, flip_average=args.flip_average, fairface=fairface, limit=args.limit,
                   end_to_end=not args.no_end_to_end, command=command, fairface_note=note, precision=args.precision,
                   crops=args.crops)
    if args.run:
        metrics = evaluate_run(args.run, **options)
    else:
        metrics = evaluate_model_dir(args.model, args.split_csv, args.data, args.out, cache_dir=args.cache_dir,
                                     **options)
    print(json.dumps({k: metrics[k] for k in ("n", "split")} | {
        "gender_accuracy": metrics["gender"]["accuracy"], "age_mae": metrics["age"]["mae"]}
        | ({"fairface_val": metrics["fairface_val"]} if "fairface_val" in metrics else {})))


if __name__ == "__main__":
    main()
