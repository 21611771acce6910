"""Measure how UTKFace chips frame a face, in the detector's own terms, for model/align.py.

Runs the MediaPipe detectors on a sample of the 200x200 training chips and prints the mean keypoint
positions and face box relative to the chip. Alignment maps a detected face onto those mean positions, so
the crops the models see at inference are framed like the crops they were trained on (whatever the
detector's own keypoint biases are, they cancel).

    python -m train.measure_framing [--tar ../shared/data/UTKFace.tar.gz] [--n 400]
    python -m train.measure_framing --fairface ~/.cache/face-age-gender/fairface --n 300 [--check 20]

With --fairface it also measures FairFace's 224 px training crops (framed looser: "margin 0.25") the same way
and prints the crop (fraction of the side, and the offset of its centre) that frames them like a UTKFace
chip, for train.data.FRAMING_CROP; --check then reads other FairFace images with that crop, exactly as
training does, and compares their framing with the UTKFace chips'.

Chips are read straight from the archive into memory: nothing is extracted, nothing lands in the repo.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from model.datasets import utkface_chips
from model.detect import LEFT_EYE, MOUTH, NOSE, RIGHT_EYE, FaceDetectors
from model.paths import SHARED_DIR

DEFAULT_TAR = SHARED_DIR / "data" / "UTKFace.tar.gz"
CHIP = 200


def measure(chips, detectors: FaceDetectors, model: str, pad: float) -> dict:
    """Detect on each chip padded by `pad` x its side on each edge (grey border: the chips are tight, and the
    detectors find faces better with some context), and collect positions in chip pixels."""
    points, boxes, missed = [], [], 0
    for _, chip in chips:
        border = round(pad * chip.shape[0])
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


def fairface_paths(root: Path) -> list[Path]:
    """FairFace's training crops, in numeric order (train/1.jpg, train/2.jpg, ...)."""
    folder = root.expanduser() / "fair_face" / "train"
    paths = sorted(folder.glob("*.jpg"), key=lambda p: (len(p.stem), p.stem))
    if not paths:
        raise SystemExit(f"no FairFace training images in {folder}: pass the folder that holds fair_face/")
    return paths


def spread(paths: list[Path], n: int, shift: float = 0.0) -> list[Path]:
    """n paths spread evenly over the list; `shift` (0-1 of a step) picks a disjoint sample."""
    step = len(paths) / n
    return [paths[int((i + shift) * step)] for i in range(min(n, len(paths)))]


def read_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def framing(m: dict, side: int) -> dict:
    """The statistics alignment cares about, as fractions of the image side: where the eyes' midpoint is, the
    face's size (eye distance + eyes-to-mouth, the sum model/align.py scales by), and the detector's box."""
    points, boxes = m["points"] / side, m["boxes"] / side
    eyes = (points[:, 0] + points[:, 1]) / 2
    size = np.linalg.norm(points[:, 1] - points[:, 0], axis=1) + np.linalg.norm(points[:, 3] - eyes, axis=1)
    return {"eyes": eyes.mean(0), "size": size.mean(), "size_std": size.std(), "box_size": boxes[:, 2:].mean(0),
            "box_center": (boxes[:, :2] + boxes[:, 2:] / 2).mean(0)}


def matching_crop(loose: dict, tight: dict) -> tuple[float, float, float]:
    """The square crop of a `loose`ly framed image that frames it like `tight`: (fraction of the side,
    x and y offset of the crop's centre from the image's centre, as fractions of the side).
    A point at p (fraction of the image) lands at (p - centre) / fraction + 0.5 in the crop."""
    fraction = loose["size"] / tight["size"]
    offset = loose["eyes"] - 0.5 - fraction * (tight["eyes"] - 0.5)
    return float(fraction), float(offset[0]), float(offset[1])


def print_framing(name: str, f: dict) -> None:
    print(f"  {name:30s} eyes at ({f['eyes'][0]:.3f}, {f['eyes'][1]:.3f})  face size {f['size']:.3f} "
          f"({f['size_std']:.3f})  "
          f"box {f['box_size'][0]:.3f} x {f['box_size'][1]:.3f} centred ({f['box_center'][0]:.3f}, "
          f"{f['box_center'][1]:.3f})")


def compare_fairface(args, utk: dict, detectors: FaceDetectors) -> None:
    """Measure FairFace like the UTKFace chips, print the crop that matches them, and check it."""
    paths = fairface_paths(args.fairface)
    sample = [(str(p), read_rgb(p)) for p in spread(paths, args.n)]
    side = sample[0][1].shape[0]
    print(f"\n{len(sample)} FairFace training crops of {side}x{side} px, every {len(paths) // args.n}th")
    fair = {model: measure(sample, detectors, model, 0.25) for model in ("short", "full")}
    for model, m in fair.items():
        print(f"  {model:5s} range, padding 0.25: face found in {m['n'] - m['missed']}/{m['n']}")
    print("\nFraming as fractions of the image side (mean over the faces found; face size mean (std)):")
    for model in ("short", "full", "both"):
        utk_m, fair_m = (both(utk), both(fair)) if model == "both" else (utk[model], fair[model])
        utk_f, fair_f = framing(utk_m, CHIP), framing(fair_m, side)
        name = "both detectors" if model == "both" else f"{model} range"
        print_framing(f"{name}: UTKFace chips", utk_f)
        print_framing(f"{name}: FairFace crops", fair_f)
        fraction, dx, dy = matching_crop(fair_f, utk_f)
        print(f"  -> crop FairFace to {fraction:.3f} of the side, centre offset x {dx:+.3f}, y {dy:+.3f} "
              f"({dx * side:+.1f}, {dy * side:+.1f} px at {side} px); box-size ratio "
              f"{fair_f['box_size'][0] / utk_f['box_size'][0]:.3f}")
    centred_eyes = (fair_f["eyes"] - 0.5) / fraction + 0.5  # "both": the pooled figures, as align.py pools
    print(f"\nFRAMING_CROP['fairface'] = {fraction:.2f}: a centred crop puts the eyes at ({centred_eyes[0]:.3f}, "
          f"{centred_eyes[1]:.3f}), UTKFace's are at ({utk_f['eyes'][0]:.3f}, {utk_f['eyes'][1]:.3f})")
    if args.check:
        check_crop(paths, args.check, utk_f, detectors, round(fraction, 2))


def check_crop(paths: list[Path], n: int, utk_f: dict, detectors: FaceDetectors, fraction: float) -> None:
    """Read n FairFace images outside the measured sample exactly as training will (train.images.read_face
    with the crop), at the chip's size, and compare their framing with the UTKFace chips'."""
    from train.images import read_face  # torch and the image cache: only for the check

    faces = [(str(p), read_face(str(p), CHIP, fraction)) for p in spread(paths, n, shift=0.5)]
    sample = [(path, face.permute(1, 2, 0).numpy()) for path, face in faces if face is not None]
    cropped = {model: measure(sample, detectors, model, 0.25) for model in ("short", "full")}
    found = sum(m["n"] - m["missed"] for m in cropped.values())
    print(f"\nCheck: {len(sample)} other FairFace images read with crop {fraction:.2f} at {CHIP} px; "
          f"faces found {found}/{2 * len(sample)} (both detectors)")
    f = framing(both(cropped), CHIP)
    print_framing("UTKFace chips", utk_f)
    print_framing("FairFace, cropped", f)
    print("  relative to UTKFace: face size {:+.1%}, box side {:+.1%}; eyes shifted x {:+.3f}, y {:+.3f} "
          "of the side".format(f["size"] / utk_f["size"] - 1, f["box_size"][0] / utk_f["box_size"][0] - 1,
                                *(f["eyes"] - utk_f["eyes"])))


def both(results: dict) -> dict:
    """Both detectors' measurements pooled, as the alignment template pools them."""
    return {key: np.concatenate([m[key] for m in results.values()]) for key in ("points", "boxes")}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tar", type=Path, default=DEFAULT_TAR)
    parser.add_argument("--n", type=int, default=400, help="images to measure from each set")
    parser.add_argument("--fairface", type=Path, help="FairFace folder (holds fair_face/train): measure it too")
    parser.add_argument("--check", type=int, default=20, help="FairFace images to check the crop on (0: none)")
    args = parser.parse_args(argv)

    chips = list(utkface_chips(args.tar, args.n))
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
    print("\nConstants for model/align.py (both models):")
    print(f"EYES_CENTER = ({center[0]:.1f}, {center[1]:.1f})")
    print(f"EYE_DISTANCE = {np.linalg.norm(points[:, 1] - points[:, 0], axis=1).mean():.1f}")
    print(f"EYES_TO_MOUTH = {np.linalg.norm(points[:, 3] - eyes_mid, axis=1).mean():.1f}")
    print("eye-line tilt, degrees: mean {:.2f}, std {:.2f}".format(
        *(lambda a: (a.mean(), a.std()))(np.degrees(np.arctan2(points[:, 1, 1] - points[:, 0, 1],
                                                               points[:, 1, 0] - points[:, 0, 0])))))
    if args.fairface:
        compare_fairface(args, results, detectors)
    detectors.close()


if __name__ == "__main__":
    main()
