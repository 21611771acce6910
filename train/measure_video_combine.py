"""`python -m train.measure_video_combine`: how a tracked person's frames are best combined into one answer.

    python -m train.measure_video_combine [--model scratch] [--faces 1000] [--frames 8]

The video tab gives each person one answer from all the frames they were seen in (demo/video.py, `Person`).
Labelled clips of faces do not exist here, so this makes them: each UTKFace *validation* face (as the app
crops it) becomes a "clip" of --frames frames, each the face with its own small shift, rotation, scale,
brightness and, on some frames, blur, dim light or JPEG artefacts (train/augment.py's recipe, no flips or
erasing). Every frame is predicted, and the frames are combined three ways:

- probabilities: the mean P(female), and the mean of the age distributions (what the app does);
- logits: the mean gender logit and the mean age logits, then the model's own calibration (temperatures,
  age warp), i.e. the frames' distributions multiplied as if independent evidence;
- one frame: the first frame alone (no combination), for reference.

It prints, per rule, gender accuracy, log loss and ECE, age MAE, and the 80% interval's coverage and mean
width. The validation split only: no evaluation set is read.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from model.age import age_interval, mean_age
from model.hub import load_model
from train.aligned import alignment_matrices
from train.augment import BatchAugment
from train.evaluate import CACHE_DIR, split_csv_records
from train.images import load_images
from train.metrics import expected_calibration_error, gender_accuracy

SPLIT = Path(__file__).resolve().parents[1] / "assets" / "models" / "split.csv"


def validation_faces(data: Path, n: int) -> list:
    """n UTKFace validation faces spread over the split (its rows are sorted by file name, i.e. by age)."""
    rows = split_csv_records(SPLIT, data, "val")
    return rows[::max(1, len(rows) // n)][:n]


@torch.no_grad()
def frame_outputs(model, images: torch.Tensor, frames: int, seed: int = 0) -> torch.Tensor:
    """[N, frames, outputs]: the model's raw outputs on `frames` perturbed copies of each face."""
    torch.manual_seed(seed)
    augment = BatchAugment(erase_p=0.0, grey_p=0.0, small_p=0.0, degrees=5.0, translate=0.03, scale=(0.95, 1.05),
                           brightness=0.15, contrast=0.15)
    outs = []
    for _ in range(frames):  # BatchAugment also mirrors half the faces: the same face, as a turned head is
        x = augment(images)
        # each frame read as the app reads a face (with its mirror image where the model says mirror_average)
        outs.append(torch.cat([model.outputs(x[i:i + 256]) for i in range(0, len(x), 256)]))
    return torch.stack(outs, 1)


def combine(model, raw: torch.Tensor, rule: str) -> dict[str, np.ndarray]:
    n, frames, _ = raw.shape
    if rule == "one frame":
        out = model.readouts(raw[:, 0])
    elif rule == "logits":
        out = model.readouts(raw.mean(1))
    else:  # probabilities: each frame's calibrated readouts, then their mean
        per_frame = model.readouts(raw.reshape(n * frames, -1))
        probs = per_frame["age_probs"].reshape(n, frames, -1).mean(1)
        low, high = age_interval(probs)
        out = {"p_female": per_frame["p_female"].reshape(n, frames).mean(1), "age": mean_age(probs),
               "age_low": low, "age_high": high}
    return {k: v.numpy() for k, v in out.items() if k != "age_probs"}


def scores(pred: dict, gender: np.ndarray, age: np.ndarray) -> dict[str, float]:
    p = np.clip(pred["p_female"], 1e-6, 1 - 1e-6)
    return {"gender accuracy": gender_accuracy(p, gender),
            "log loss": float(-(gender * np.log(p) + (1 - gender) * np.log(1 - p)).mean()),
            "ECE": float(expected_calibration_error(p, gender)),
            "age MAE": float(np.abs(pred["age"] - age).mean()),
            "80% coverage": float(((age >= pred["age_low"]) & (age <= pred["age_high"])).mean()),
            "interval width": float((pred["age_high"] - pred["age_low"]).mean())}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m train.measure_video_combine", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="scratch")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/UTKFace.tar.gz"))
    parser.add_argument("--faces", type=int, default=1000)
    parser.add_argument("--frames", type=int, default=8)
    args = parser.parse_args(argv)
    model = load_model(args.model).eval()
    records = validation_faces(args.data, args.faces)
    images, kept = load_images(records, model.image_size, CACHE_DIR,
                               matrices=alignment_matrices(records, CACHE_DIR))
    gender, age = np.array([r.gender for r in kept]), np.array([r.age for r in kept])
    raw = frame_outputs(model, images, args.frames)
    print(f"{args.model}: {len(kept)} UTKFace validation faces x {args.frames} frames")
    for rule in ("probabilities", "logits", "one frame"):
        cells = ", ".join(f"{k} {v:.4f}" if k in ("log loss", "ECE") else f"{k} {v:.3f}"
                          for k, v in scores(combine(model, raw, rule), gender, age).items())
        print(f"{rule:14s} {cells}")


if __name__ == "__main__":
    main()
