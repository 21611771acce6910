"""`python -m train.evaluate --run RUN`: score a trained run on its test split, honestly.

Writes RUN/eval/: metrics.json, report.md, predictions.csv and PNG plots (confusion matrix, reliability
diagram, predicted-vs-true age, per-race and per-age-band bars). The test split is never used for any
choice made during training; the gender temperature was fitted on the validation split.
Other splits and --flip-average (test-time augmentation, a what-if not used by the app) write to their own
folder, e.g. RUN/eval-val-flip/, so they never replace the test report that is shipped.
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from model.nets import ARCHITECTURES, AgeGenderNet, split_output
from model.preprocess import normalize
from train import plots
from train.checkpoint import atomic_write_json, atomic_write_text
from train.data import RACES, load_records, race_name, read_split_csv
from train.images import load_images
from train.metrics import all_metrics, expected_calibration_error

log = logging.getLogger("train.evaluate")


def load_run_model(run: Path) -> AgeGenderNet:
    arch = json.loads((run / "model" / "config.json").read_text())["arch"]
    return ARCHITECTURES[arch].from_pretrained(run / "model").eval()


def resolve_records(run: Path, split: str) -> list:
    """The run's split.csv rows for `split`, with paths resolved against the data folder it was made from
    (re-extracted from the run's data sources if that folder has gone)."""
    root = Path(json.loads((run / "data_report.json").read_text())["split_root"])
    records = [r for r in read_split_csv(run / "split.csv", root) if r.split == split]
    if not all(Path(r.path).exists() for r in records):
        config = json.loads((run / "train_config.json").read_text())
        load_records(config["data"], Path(config["cache_dir"]))  # extracts the archive into the cache again
    return records


@torch.no_grad()
def predict_images(model: AgeGenderNet, images: torch.Tensor, batch_size: int = 128,
                   flip_average: bool = False) -> dict[str, np.ndarray]:
    """flip_average: average each face's output logits with its mirror image's (two forward passes)."""
    norm, parts = normalize(), []
    for start in tqdm(range(0, len(images), batch_size), desc="predicting", leave=False):
        batch = norm(images[start:start + batch_size])
        raw = (model(batch) + model(batch.flip(-1))) / 2 if flip_average else model(batch)
        out = model.readouts(raw)
        out["logit"] = split_output(raw)[0]  # before temperature scaling, for the uncalibrated ECE
        parts.append({k: v.numpy() for k, v in out.items() if k != "age_probs"})
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else {}


def eval_dir(run: Path, split: str = "test", flip_average: bool = False) -> Path:
    return run / "-".join(["eval"] + ([split] if split != "test" else []) + (["flip"] if flip_average else []))


def evaluate_run(run: Path, split: str = "test", flip_average: bool = False) -> dict:
    run = Path(run)
    out = eval_dir(run, split, flip_average)
    out.mkdir(parents=True, exist_ok=True)
    model = load_run_model(run)
    records = resolve_records(run, split)
    images, records = load_images(records, model.image_size)
    pred = predict_images(model, images, flip_average=flip_average)
    gender = np.array([r.gender for r in records])
    age = np.array([r.age for r in records])
    race = np.array([r.race for r in records])
    metrics = all_metrics(pred["p_female"], gender, pred["age"], age, race)
    metrics["split"] = split
    metrics["flip_average"] = flip_average
    metrics["model"] = {"arch": model.arch, "image_size": model.image_size,
                        "gender_temperature": float(model.gender_temperature)}
    uncalibrated = torch.sigmoid(torch.from_numpy(pred["logit"])).numpy()  # stable for large logits
    metrics["gender"]["ece_uncalibrated"] = expected_calibration_error(uncalibrated, gender)
    inside = (age >= pred["age_low"]) & (age <= pred["age_high"])
    metrics["age"]["interval_coverage"] = float(inside[age >= 0].mean()) if (age >= 0).any() else float("nan")
    atomic_write_json(out / "metrics.json", metrics)
    write_predictions(out / "predictions.csv", records, pred)
    plots.confusion_matrix(metrics["gender"]["confusion"], out / "confusion.png")
    plots.reliability_diagram(metrics["gender"]["reliability"], metrics["gender"]["ece"], out / "reliability.png")
    plots.age_scatter(age[age >= 0], pred["age"][age >= 0], out / "age_scatter.png")
    plots.group_bars(metrics["by_race"], "race", out / "by_race.png")
    plots.group_bars(metrics["by_age_band"], "age band", out / "by_age_band.png")
    atomic_write_text(out / "report.md", report_markdown(run, metrics))
    log.info("%s on %s (n=%d): gender acc %.4f, F1 %.4f, ECE %.4f | age MAE %.2f, CS@5 %.3f", run, split,
             metrics["n"], metrics["gender"]["accuracy"], metrics["gender"]["f1_weighted"], metrics["gender"]["ece"],
             metrics["age"]["mae"], metrics["age"]["cs5"])
    return metrics


def write_predictions(path: Path, records, pred) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "age", "gender", "race", "p_female", "pred_age", "age_low", "age_high"])
        for i, r in enumerate(records):
            writer.writerow([Path(r.path).name, r.age, r.gender, race_name(r.race), f"{pred['p_female'][i]:.4f}",
                             f"{pred['age'][i]:.2f}", int(pred["age_low"][i]), int(pred["age_high"][i])])


def _table(title: str, table: dict[str, dict], order: list[str]) -> str:
    rows = [f"| {title} | n | gender accuracy | age MAE (years) |", "|---|---:|---:|---:|"]
    for name in [o for o in order if o in table] + sorted(set(table) - set(order)):
        t = table[name]
        rows.append(f"| {name} | {t['n']} | {t['gender_accuracy']:.3f} | {t['age_mae']:.2f} |")
    return "\n".join(rows)


def report_markdown(run: Path, m: dict) -> str:
    g, a = m["gender"], m["age"]
    (tn, fp), (fn, tp) = g["confusion"]
    bands = sorted(m["by_age_band"], key=lambda b: int(b.split("-")[0].rstrip("+")) if b[0].isdigit() else 999)
    return f"""# Evaluation: {run.name} ({m['model']['arch']}, {m['model']['image_size']} px) on the {m['split']} split{' (outputs averaged with the mirror image)' if m.get('flip_average') else ''}

n = {m['n']} faces (deduplicated UTKFace, split file `split.csv`).

| metric | value |
|---|---:|
| gender accuracy | {g['accuracy']:.4f} |
| gender F1 (weighted) | {g['f1_weighted']:.4f} |
| gender ECE (calibrated, T = {m['model']['gender_temperature']:.3f}) | {g['ece']:.4f} |
| gender ECE (before calibration) | {g['ece_uncalibrated']:.4f} |
| age MAE (years) | {a['mae']:.2f} |
| age CS@5 (share within 5 years) | {a['cs5']:.3f} |
| 80% age interval coverage | {a['interval_coverage']:.3f} |

Confusion (rows true, columns predicted): male→male {tn}, male→female {fp}, female→male {fn}, female→female {tp}.

## Fairness

{_table("race", m['by_race'], list(RACES))}

{_table("age band", m['by_age_band'], bands)}

{_table("gender", m['by_gender'], ["male", "female"])}

![confusion](confusion.png) ![reliability](reliability.png) ![age](age_scatter.png)
![by race](by_race.png) ![by age band](by_age_band.png)
"""


def main(argv=None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    parser = argparse.ArgumentParser(prog="python -m train.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, type=Path, help="training output directory")
    parser.add_argument("--split", default="test", choices=["train", "val", "test"])
    parser.add_argument("--flip-average", action="store_true",
                        help="average each face's output with its mirror image's (a what-if: the app does not)")
    args = parser.parse_args(argv)
    metrics = evaluate_run(args.run, args.split, args.flip_average)
    print(json.dumps({k: metrics[k] for k in ("n", "split")} | {
        "gender_accuracy": metrics["gender"]["accuracy"], "age_mae": metrics["age"]["mae"]}))


if __name__ == "__main__":
    main()
