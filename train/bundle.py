"""`python -m train.bundle --run RUN --to assets/models/NAME [--half]`: ship a trained run with the app.

`python -m train.bundle --model DIR --eval DIR --to assets/models/NAME [--half]`: ship new weights of a model
already bundled there, with their evaluation, keeping its training files (a model recalibrated after
training, e.g. by train.fit_age_warp), or an ensemble (model/ensemble.py: its config and calibration).

Writes the weights as bundled weights (config.json, model.safetensors, sha256; float16 with --half, which
the loader casts back to float32), the evaluation report and plots (RUN/eval -> NAME/eval, read by the
app's About tab), the learning curves and training options, and the split once for all bundled models
(assets/models/split.csv). Bundled models must agree on every source they both list (a run whose UTKFace rows
differ is refused rather than overwriting them); a source only the run has (FairFace) is added to the file.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
from collections import defaultdict
from pathlib import Path

from model.hub import ENSEMBLE, load_model, write_bundle
from model.nets import CALIBRATION_BUFFERS
from train.data import read_split_csv, write_split_csv

EVAL_FILES = ("metrics.json", "report.md", "confusion.png", "reliability.png", "age_scatter.png", "by_race.png",
              "by_age_band.png")
RUN_FILES = ("train_config.json", "history.csv", "curves.png", "data_report.json")


def bundle_run(run: Path, dest: Path, half: bool = False) -> Path:
    run, dest = Path(run), Path(dest)
    missing = [name for name in EVAL_FILES if not (run / "eval" / name).exists()]
    if missing:
        raise SystemExit(f"{run} has no evaluation ({', '.join(missing)}): run python -m train.evaluate --run {run}")
    shared_split = dest.parent / "split.csv"
    merged = merged_split(shared_split, portable_split(run))
    ship_weights_and_eval(run / "model", run / "eval", dest, half)
    for name in RUN_FILES:
        shutil.copy(run / name, dest / name)
    if (run / "metrics.json").exists():  # how it trained (epochs, minutes, machine): the card and the About tab
        shutil.copy(run / "metrics.json", dest / "train_metrics.json")
    write_split_csv(merged, shared_split)
    return dest


def ship_weights_and_eval(model_dir: Path, eval_dir: Path, dest: Path, half: bool = False) -> None:
    missing = [name for name in EVAL_FILES if not (eval_dir / name).exists()]
    if missing:
        raise SystemExit(f"{eval_dir} lacks {', '.join(missing)}: run python -m train.evaluate first")
    write_bundle(load_model(str(model_dir)), dest, half=half)
    (dest / "eval").mkdir(parents=True, exist_ok=True)
    for name in EVAL_FILES:
        shutil.copy(eval_dir / name, dest / "eval" / name)
    if (eval_dir / "fairface").is_dir():  # the second evaluation source's report, linked from report.md
        shutil.copytree(eval_dir / "fairface", dest / "eval" / "fairface", dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("predictions.csv"))  # as for UTKFace: figures, not rows


def portable_split(run: Path) -> list:
    """The run's split.csv rows with each path relative to its own source's folder (a UTKFace file name,
    FairFace's "train/1.jpg"), as the shipped split lists them and `train --split-csv` matches them; the run
    wrote them relative to the folder all its sources share, which depends on the machine's cache."""
    report = json.loads((run / "data_report.json").read_text())
    roots = {source["layout"]: Path(source["root"]) for source in report["sources"]}
    rows = read_split_csv(run / "split.csv", Path(report["split_root"]))
    for r in rows:
        if r.source in roots:
            r.path = os.path.relpath(r.path, roots[r.source])
    return rows


def merged_split(shared: Path, run_rows: list) -> list:
    """The shared split plus the sources only the run lists; SystemExit if a source both list differs."""
    if not shared.exists():
        return run_rows
    shared_rows = read_split_csv(shared)

    def by_source(rows) -> dict:
        table = defaultdict(set)
        for r in rows:
            table[r.source].add((r.path, r.split))
        return table

    ours, theirs = by_source(shared_rows), by_source(run_rows)
    differing = sorted(s for s in ours.keys() & theirs.keys() if ours[s] != theirs[s])
    if differing:
        raise SystemExit(f"the run's split differs from {shared} on {', '.join(differing)}: bundled models must "
                         f"share one split (train with --split-csv {shared})")
    return shared_rows + [r for r in run_rows if r.source not in ours]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m train.bundle", description=__doc__.split("\n")[0])
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--run", type=Path, help="a training run: its model, evaluation, split and training files")
    what.add_argument("--model", type=Path, help="new weights for a model already bundled at --to, or an ensemble "
                                                 "(needs --eval)")
    parser.add_argument("--eval", type=Path, help="with --model: its evaluation folder (train.evaluate --out)")
    parser.add_argument("--to", required=True, type=Path, help="e.g. assets/models/scratch")
    parser.add_argument("--half", action="store_true", help="store the weights in float16")
    args = parser.parse_args(argv)
    if args.run:
        print(f"bundled {args.run} -> {bundle_run(args.run, args.to, args.half)}")
        return
    config = args.model / "config.json"
    ensemble = config.is_file() and json.loads(config.read_text()).get("arch") == ENSEMBLE
    if not args.eval or not ((args.to / "train_config.json").exists() or ensemble):
        parser.error("--model needs --eval and a model already bundled at --to (or an ensemble: it has no training "
                     "files of its own)")
    ship_weights_and_eval(args.model, args.eval, args.to, args.half)
    record_shipped_calibration(args.to)
    print(f"bundled {args.model} with {args.eval} -> {args.to}")


def record_shipped_calibration(dest: Path) -> None:
    """train_metrics.json says how the model trained, including the calibration fitted then; new weights of a
    recalibrated model carry another. Its temperatures and offset become the shipped weights' own, and what
    training fitted (with its age warp's fit, which the weights' warp replaced) moves to
    "calibration_when_trained", so the file does not contradict the weights."""
    path = dest / "train_metrics.json"
    if not path.exists():
        return
    metrics, model = json.loads(path.read_text()), load_model(str(dest))
    shipped = {key: round(float(getattr(model, key)), 4) for key in CALIBRATION_BUFFERS if key != "age_warp"}
    if "calibration_when_trained" not in metrics:  # the age warp is a table: the weights carry the shipped one
        metrics["calibration_when_trained"] = {key: metrics.pop(key, None) for key in CALIBRATION_BUFFERS}
    path.write_text(json.dumps(metrics | shipped, indent=2) + "\n")


if __name__ == "__main__":
    main()
