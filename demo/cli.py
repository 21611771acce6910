"""Batch age & gender for images and folders: one output row per face.

    python -m demo.cli IMAGE_OR_DIR... [--model scratch|vgg16|<hub id or dir>] [--format json|csv]
                       [--no-detect] [--detector auto|full|short|both] [--cam OUT_DIR] [--output FILE]
                       [--min-score 0.5] [--threads N]

Rows go to stdout (or --output); problems and notes go to stderr. A file that cannot be read is reported
and skipped, the others go on. Exit code: 0 all files processed, 1 some file failed, 2 bad arguments/model.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from demo.imageio import BadImageError
from demo.pipeline import DETECTORS, Pipeline

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
COLUMNS = ["file", "face", "x", "y", "w", "h", "p_female", "gender", "age", "age_low", "age_high", "det_score"]


def collect(inputs: list[str]) -> tuple[list[Path], bool]:
    """Files named on the command line (always tried) and image files found in folders (recursively)."""
    files, any_folder = [], False
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            any_folder = True
            files += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            files.append(path)  # missing files are reported by load_image like any bad file
    return files, any_folder


def rows_for(path: Path, result) -> list[dict]:
    rows = []
    for face in result.faces:
        record = face.to_record()
        x, y, w, h = record.pop("box")
        rows.append({"file": str(path), "face": record.pop("index"), "x": x, "y": y, "w": w, "h": h, **record})
    return rows


def save_cams(out_dir: Path, path: Path, result, heads: tuple[str, ...]) -> None:
    """<stem>.annotated.jpg, and per face and head <stem>.face<i>.<head>.jpg (the aligned face with its map)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    Image.fromarray(result.annotated).save(out_dir / f"{path.stem}.annotated.jpg", quality=90)
    for face in result.faces:
        for head in heads:
            Image.fromarray(face.cam_image(head)).save(out_dir / f"{path.stem}.face{face.index}.{head}.jpg", quality=90)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo.cli", description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR")
    parser.add_argument("--model", default=None, help="scratch, vgg16, a Hub id[@revision] or a model folder "
                                                      "(default: $FACE_MODEL, else the default architecture)")
    parser.add_argument("--format", choices=("json", "csv"), default="json")
    parser.add_argument("--no-detect", action="store_true", help="the images are face crops: use each whole")
    parser.add_argument("--detector", choices=DETECTORS, default="auto")
    parser.add_argument("--min-score", type=float, default=0.5, help="detector confidence threshold")
    parser.add_argument("--cam", type=Path, metavar="OUT_DIR", help="write Grad-CAM images (gender, age) here")
    parser.add_argument("--output", "-o", type=Path, help="write rows here instead of stdout")
    parser.add_argument("--threads", type=int, help="torch threads (1 is often faster on a busy 2-core machine)")
    args = parser.parse_args(argv)
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)

    files, any_folder = collect(args.inputs)
    if not files:
        print("error: no image files found in " + ", ".join(args.inputs), file=sys.stderr)
        return 1
    try:
        from model.hub import load_model
        model = load_model(args.model)
    except Exception as e:  # ModelLoadError and friends: a message, not a traceback
        print(f"error: cannot load model {args.model or '(default)'}: {e}", file=sys.stderr)
        return 2
    pipeline = Pipeline(model, detector=args.detector, min_score=args.min_score)
    heads = ("gender", "age") if args.cam else ()

    out = open(args.output, "w", newline="") if args.output else sys.stdout
    writer = csv.DictWriter(out, fieldnames=COLUMNS) if args.format == "csv" else None
    if writer:
        writer.writeheader()
    all_rows, failed = [], 0
    progress = tqdm(files, unit="image", disable=not any_folder or None, file=sys.stderr)
    for path in progress:
        try:
            result = pipeline(path, detect=not args.no_detect, cam_heads=heads)
        except BadImageError as e:
            failed += 1
            tqdm.write(f"error: {path}: {e}", file=sys.stderr)
            continue
        except Exception as e:  # an unexpected bug on one file must not cost the others
            failed += 1
            tqdm.write(f"error: {path}: unexpected {type(e).__name__}: {e}", file=sys.stderr)
            continue
        for note in result.notes:
            tqdm.write(f"note: {path}: {note}", file=sys.stderr)
        rows = rows_for(path, result)
        if writer:
            writer.writerows(rows)
            out.flush()
        else:
            all_rows += rows
        if args.cam:
            save_cams(args.cam, path, result, heads)
    if not writer:
        json.dump(all_rows, out, indent=1)
        out.write("\n")
    if out is not sys.stdout:
        out.close()
    print(f"{len(files) - failed} of {len(files)} files processed, {failed} failed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
