"""Measure how UTKFace chips frame a face, in the detector's own terms, for demo/align.py.

Runs the MediaPipe detectors on a sample of the 200x200 training chips and prints the mean keypoint
positions and face box relative to the chip. Alignment maps a detected face onto those mean positions, so
the crops the models see at inference are framed like the crops they were trained on (whatever the
detector's own keypoint biases are, they cancel).

    python -m demo.measure_framing [--tar ../shared/data/UTKFace.tar.gz] [--n 400]

Chips are read straight from the archive into memory: nothing is extracted, nothing lands in the repo.
"""
from __future__ import annotations

import argparse
import os
import io
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

from demo.detect import LEFT_EYE, MOUTH, NOSE, RIGHT_EYE, FaceDetectors

SHARED = Path(os.environ.get("FACE_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared"))  # as in tests
DEFAULT_TAR = SHARED / "data" / "UTKFace.tar.gz"
CHIP = 200


def sample_chips(tar_path: Path, n: int, every: int = 50):
    """Every `every`-th chip of the archive (spread over ages and identities, which the names are sorted by)."""
    with tarfile.open(tar_path, "r:gz") as tar:
        count = 0
        for i, member in enumerate(tar):
            if member.isfile() and member.name.endswith(".jpg") and i % every == 0:
                yield member.name, np.asarray(Image.open(io.BytesIO(tar.extractfile(member).read())).convert("RGB"))
                count += 1
                if count >= n:
                    return


def measure(chips, detectors: FaceDetectors, model: str, pad: float) -> dict:
    """Detect on each chip padded by `pad` x its side on each edge (grey border: the chips are tight, and the
    detectors find faces better with some context), and collect positions in chip pixels."""
    points, boxes, missed = [], [], 0
    for _, chip in chips:
        border = round(pad * CHIP)
        padded = np.pad(chip, ((border, border), (border, border), (0, 0)), constant_values=128)
        found = detectors.detect(padded, model, min_score=0.5)
        if not found:
            missed += 1
            continue
        best = found[0]
        points.append(best.keypoints[[RIGHT_EYE, LEFT_EYE, NOSE, MOUTH]] - border)
        x, y, w, h = best.box
        boxes.append((x - border, y - border, w, h))
    return {"points": np.array(points), "boxes": np.array(boxes), "missed": missed, "n": len(chips)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tar", type=Path, default=DEFAULT_TAR)
    parser.add_argument("--n", type=int, default=400)
    args = parser.parse_args(argv)

    chips = list(sample_chips(args.tar, args.n))
    detectors = FaceDetectors()
    print(f"{len(chips)} chips of {CHIP}x{CHIP} px from {args.tar.name}")
    for model in ("short", "full"):
        for pad in (0.0, 0.25):
            m = measure(chips, detectors, model, pad)
            print(f"  {model:5s} range, padding {pad:.2f}: face found in {m['n'] - m['missed']}/{m['n']} chips")
    results = {model: measure(chips, detectors, model, 0.25) for model in ("short", "full")}
    for model, m in results.items():
        mean, std = m["points"].mean(0), m["points"].std(0)
        print(f"\n{model} range, padded 0.25: mean (std) position in the 200x200 chip, pixels")
        for name, p, s in zip(("right eye", "left eye", "nose", "mouth"), mean, std):
            print(f"  {name:9s} x {p[0]:6.1f} ({s[0]:4.1f})  y {p[1]:6.1f} ({s[1]:4.1f})")
        print("  face box  x {:.1f} y {:.1f} w {:.1f} h {:.1f}".format(*m["boxes"].mean(0)))
    # Both models' keypoints go into the template: faces come from either, and they agree to ~1-2 px.
    points = np.concatenate([m["points"] for m in results.values()])
    eyes_mid = (points[:, 0] + points[:, 1]) / 2
    center = eyes_mid.mean(0)
    print("\nConstants for demo/align.py (both models):")
    print(f"EYES_CENTER = ({center[0]:.1f}, {center[1]:.1f})")
    print(f"EYE_DISTANCE = {np.linalg.norm(points[:, 1] - points[:, 0], axis=1).mean():.1f}")
    print(f"EYES_TO_MOUTH = {np.linalg.norm(points[:, 3] - eyes_mid, axis=1).mean():.1f}")
    print("eye-line tilt, degrees: mean {:.2f}, std {:.2f}".format(
        *(lambda a: (a.mean(), a.std()))(np.degrees(np.arctan2(points[:, 1, 1] - points[:, 0, 1],
                                                               points[:, 1, 0] - points[:, 0, 0])))))
    detectors.close()


if __name__ == "__main__":
    main()
