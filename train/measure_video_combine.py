"""`python -m train.measure_video_combine`: how a tracked person's frames are best combined into one answer.

    python -m train.measure_video_combine [--model scratch] [--faces 1000] [--frames 8]
        [--camera-frames] [--read-once] [--precision auto]

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
width. The validation split only: no evaluation set is read. --camera-frames leaves out the mirrored frames
(a camera gives none; by default half the frames are mirrored); --read-once reads each frame once where the
model would read it with its mirror image (what a stream would gain by skipping that: docs/benchmarks.md,
"Video"); --precision reads through the app's fast path (model/fast.py) instead of the model in fp32.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from model.age import age_interval, mean_age
from model.fast import PRECISIONS, fast_model
from model.hub import load_model
from model.nets import read_outputs
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
def frame_outputs(model, images: torch.Tensor, frames: int, seed: int = 0, flip_p: float = 0.5, once: bool = False,
                  precision: str | None = None) -> torch.Tensor:
    """[N, frames, outputs]: the model's raw outputs on `frames` perturbed copies of each face.
    flip_p: the share of frames mirrored (0.5: the same face, as a turned head is; 0: as a camera gives them).
    once: each frame read once, even by a network that reads faces with their mirror image (mirror_average).
    precision: read through the app's fast path at this precision (model/fast.py); None: the model in fp32."""
    torch.manual_seed(seed)
    augment = BatchAugment(erase_p=0.0, grey_p=0.0, small_p=0.0, degrees=5.0, translate=0.03, scale=(0.95, 1.05),
                           brightness=0.15, contrast=0.15, flip_p=flip_p)
    reader = model if precision is None else fast_model(model, precision)
    mirror = model.mirror_average and not once  # an ensemble's members mirror inside its forward, as it says
    outs = []
    for _ in range(frames):
        x = augment(images)
        outs.append(torch.cat([read_outputs(reader, x[i:i + 256], mirror) for i in range(0, len(x), 256)]))
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
    parser.add_argument("--camera-frames", action="store_true",
                        help="no mirrored frames, as a camera gives them (default: half the frames mirrored)")
    parser.add_argument("--read-once", action="store_true",
                        help="read each frame once, even where the model reads faces with their mirror image "
                             "(a single network: an ensemble's members read as each says)")
    parser.add_argument("--precision", choices=PRECISIONS,
                        help="read through the app's fast path at this precision (default: the model in fp32)")
    args = parser.parse_args(argv)
    model = load_model(args.model).eval()
    records = validation_faces(args.data, args.faces)
    images, kept = load_images(records, model.image_size, CACHE_DIR,
                               matrices=alignment_matrices(records, CACHE_DIR))
    gender, age = np.array([r.gender for r in kept]), np.array([r.age for r in kept])
    raw = frame_outputs(model, images, args.frames, flip_p=0.0 if args.camera_frames else 0.5, once=args.read_once,
                        precision=args.precision)
    how = ", ".join(k for k, on in (("camera frames", args.camera_frames), ("read once", args.read_once),
                                    (f"fast path {args.precision}", args.precision)) if on)
    print(f"{args.model}: {len(kept)} UTKFace validation faces x {args.frames} frames" + (f" ({how})" if how else ""))
    for rule in ("probabilities", "logits", "one frame"):
        cells = ", ".join(f"{k} {v:.4f}" if k in ("log loss", "ECE") else f"{k} {v:.3f}"
                          for k, v in scores(combine(model, raw, rule), gender, age).items())
        print(f"{rule:14s} {cells}")


if __name__ == "__main__":
    main()
