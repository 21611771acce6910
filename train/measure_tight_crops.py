"""`python -m train.measure_tight_crops`: where to set the padded fallback's score bar (model/faces.py).

    python -m train.measure_tight_crops --run runs/vgg16-two128-aug2 --model scratch --model vgg16

Where the app finds no face it pads the image with grey and looks again with the short-range detector,
accepting one face that spans half the image and scores at least TIGHT_CROP_MIN_SCORE. Per candidate bar
(--bars) this prints:

- on validation (the val rows of RUN/split.csv, per source), among the images in which the app finds no face
  at the highest bar: how many the fallback finds at that bar, and per --model how many of those it then
  reads right (gender; FairFace: age range too), i.e. what the lower bar adds to validation's end-to-end
  gender accuracy;
- on face-free squares cut at random (seeded) from the annotated PASCAL photos of --wild, none touching an
  annotated face box grown by half its side, and from dogs.jpg: the share in which the fallback finds a "face".

No evaluation set is read.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from model.datasets import annotated_faces
from model.faces import DEFAULT_DETECTOR, DEFAULT_MIN_SCORE, TIGHT_CROP_NOTE, FaceFinder
from model.imageio import load_image
from model.paths import SHARED_DIR
from train.data import in_age_range
from train.evaluate import app_predictions, label_arrays
from train.metrics import gender_correct
from train.validate import load_or_exit, validation_records

WILD = SHARED_DIR / "data" / "wild-faces"
BARS = (0.5, 0.55, 0.6, 0.65, 0.7)  # 0.7: the bar until Dec 2026


def face_free_squares(wild: Path, per_photo: int = 60, seed: int = 0) -> list[np.ndarray]:
    """Up to per_photo random squares (side 64 px .. 80% of the short side) from each annotated photo that
    touch no face box grown by half its side on every side, and as many from dogs.jpg (no people)."""
    rng = np.random.default_rng(seed)
    photos = dict(annotated_faces(wild)) | {"dogs.jpg": []}
    squares = []
    for name, boxes in sorted(photos.items()):
        rgb = load_image(wild / name)
        height, width = rgb.shape[:2]
        grown = [(x - w / 2, y - h / 2, 2 * w, 2 * h) for x, y, w, h in boxes]
        kept = 0
        for _ in range(50 * per_photo):
            if kept == per_photo:
                break
            side = int(rng.integers(64, max(65, int(0.8 * min(height, width)))))
            x, y = int(rng.integers(0, width - side + 1)), int(rng.integers(0, height - side + 1))
            if any(x < bx + bw and bx < x + side and y < by + bh and by < y + side for bx, by, bw, bh in grown):
                continue
            squares.append(rgb[y:y + side, x:x + side])
            kept += 1
    return squares


def lowest_bar(finder: FaceFinder, images) -> np.ndarray:
    """Per image (an iterable of RGB arrays): the lowest bar at which the app finds a face in it, given that
    `finder`'s own bar is at or below every candidate: the fallback face's score where only the padded
    fallback found one, inf where the main pass did (at any bar), 0 where nothing was found."""
    bars = []
    for rgb in images:
        notes = []
        found = finder.find(rgb, DEFAULT_MIN_SCORE, DEFAULT_DETECTOR, notes)
        bars.append(found[0].score if TIGHT_CROP_NOTE in notes else np.inf if found else 0.0)
    return np.array(bars)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m train.measure_tight_crops", description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="the run whose split.csv gives the val rows")
    parser.add_argument("--model", action="append", default=[], help="models to read the recovered faces")
    parser.add_argument("--wild", type=Path, default=WILD, help="the annotated photos (../shared/data/wild-faces)")
    parser.add_argument("--bars", type=float, nargs="+", default=list(BARS))
    args = parser.parse_args(argv)
    if not all((args.wild / name).is_file() for name in ("training.xml", "testing.xml", "dogs.jpg")):
        raise SystemExit(f"{args.wild} is not the annotated photos folder (training.xml, testing.xml, dogs.jpg): "
                         "pass --wild ../shared/data/wild-faces")
    models = [load_or_exit(spec) for spec in args.model]  # before the long pass: a bad spec fails at once
    finder = FaceFinder(tight_crop_min_score=min(args.bars))  # every bar's answers are among the lowest's

    records = validation_records(args.run)
    bars = lowest_bar(finder, (load_image(r.path) for r in tqdm(records, desc="finding faces", mininterval=10)))
    # the images without a face at the highest bar whose face the fallback finds at a lower one: the rest
    # read the same at every candidate bar
    rescued = [r for r, bar in zip(records, bars) if 0 < bar < max(args.bars)]
    sources = np.array([r.source for r in rescued])
    totals = {s: sum(r.source == s for r in records) for s in sorted({r.source for r in records})}
    y = label_arrays(rescued)
    read = {}
    for spec, model in zip(args.model, models):
        out, _ = app_predictions(model, rescued, detect=True, finder=finder)
        right = gender_correct(out["p_female"], y["gender"])
        in_range = in_age_range(out["age"], y["age_low"], y["age_high"])
        read[spec] = (out["found"], out["det_score"], right, in_range)
    squares = face_free_squares(args.wild)
    square_bars = lowest_bar(finder, squares)
    false_scores = np.where(np.isinf(square_bars), 0.0, square_bars)  # the fallback's false faces only

    results = {"validation": {}, "face_free": {"n": len(squares), "main_pass": int(np.isinf(square_bars).sum())}}
    for source in totals:
        at = np.array([b for r, b in zip(records, bars) if r.source == source])
        print(f"validation, {source}: {totals[source]} images, no face found at bar {max(args.bars):.2f}: "
              f"{int((at < max(args.bars)).sum())}, at any bar: {int((at == 0).sum())}")
    print(f"face-free squares: {len(squares)}, a face found by the main pass (any bar): "
          f"{results['face_free']['main_pass']}")
    for bar in sorted(args.bars):
        false = int((false_scores >= bar).sum())
        results["face_free"][str(bar)] = false
        cells = []
        for spec, (found, score, right, in_range) in read.items():
            got = found & (score >= bar)
            for source in totals:
                m = got & (sources == source)
                row = {"found": int(m.sum()), "gender_right": int(right[m].sum()),
                       "end_to_end_gain_points": round(100 * right[m].sum() / totals[source], 2)}
                if source == "fairface":
                    row["age_range_right"] = int(in_range[m].sum())
                results["validation"].setdefault(str(bar), {}).setdefault(spec, {})[source] = row
                cells.append(f"{spec} {source}: found {row['found']}, gender right {row['gender_right']} "
                             f"(+{row['end_to_end_gain_points']:.2f} points end to end)")
        print(f"bar {bar:.2f}: face-free squares with a face {false} of {len(squares)} ({false / len(squares):.1%})"
              + "".join(f"\n    {c}" for c in cells))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
