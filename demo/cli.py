"""Batch age & gender for images, videos and folders: one output row per face (photos) or per person (videos).

    python -m demo.cli IMAGE_VIDEO_OR_DIR... [--model scratch|vgg16|ensemble|<hub id or dir>] [--format json|csv]
                       [--no-detect] [--detector auto|full|short|both] [--cam OUT_DIR] [--output FILE]
                       [--min-score 0.5] [--threads N] [--max-faces N] [--per-frame] [--every N] [--age-probs]

Rows go to stdout (or --output); problems and notes go to stderr. A file that cannot be read is reported
and skipped, the others go on. Exit code: 0 all files processed, 1 some file failed, 2 bad arguments/model.
A video (by its suffix, demo.videoio.VIDEO_SUFFIXES) gives one row per tracked person (demo/video.py), or
with --per-frame one row per face per analysed frame. In CSV, a run with videos writes the union of the
columns of the kinds of rows it has, empty where a column does not apply.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from demo import video
from model.age import AGE_BINS
from model.gender import gender_name
from model.imageio import BadImageError
from demo.pipeline import DETECTORS, Pipeline, csv_row
from demo.videoio import VIDEO_SUFFIXES, BadVideoError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
COLUMNS = ["file", "face", "x", "y", "w", "h", "p_female", "gender", "age", "age_low", "age_high", "det_score"]
PERSON_COLUMNS = ["file", "track", "frames", "first_s", "last_s", "p_female", "gender", "age", "age_low",
                  "age_high"]
FRAME_COLUMNS = ["file", "frame", "time_s", "track", "x", "y", "w", "h", "p_female", "gender", "age", "age_low",
                 "age_high", "det_score"]


def collect(inputs: list[str]) -> tuple[list[Path], bool]:
    """Files named on the command line (always tried) and image and video files found in folders (recursively)."""
    files, any_folder = [], False
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            any_folder = True
            files += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES)
        else:
            files.append(path)  # missing files are reported by load_image like any bad file
    return files, any_folder


def rows_for(path: Path, result, age_probs: bool = False) -> list[dict]:
    rows = []
    for face in result.faces:
        record = face.to_record(age_probs)
        x, y, w, h = record.pop("box")
        rows.append({"file": str(path), "face": record.pop("index"), "x": x, "y": y, "w": w, "h": h, **record})
    return rows


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def columns_for(files: list[Path], per_frame: bool, age_probs: bool = False) -> list[str]:
    """CSV header: the photo columns alone when there is no video (as before videos were read), else the
    union of the columns of the kinds of rows the files give, in order; with age_probs, age_p0 ... age_p100 last."""
    kinds = [COLUMNS] if any(not is_video(f) for f in files) else []
    if any(is_video(f) for f in files):
        kinds.append(FRAME_COLUMNS if per_frame else PERSON_COLUMNS)
    if age_probs:
        kinds.append([f"age_p{age}" for age in range(AGE_BINS)])
    return list(dict.fromkeys(c for kind in kinds for c in kind))


def video_rows(path: Path, result, per_frame: bool, age_probs: bool = False) -> list[dict]:
    """One row per person (or per face per analysed frame) with the file first. age_probs: each person's age
    distribution (a frame's face carries none: its person's is the one its answer comes from)."""
    if per_frame:
        return [{"file": str(path), **row.to_record(),
                 "gender": gender_name(row.p_female)} for row in result.rows]
    return [{"file": str(path), **person.to_record(age_probs)} for person in result.people]


def run_video(pipeline, path: Path, args) -> tuple[object, list[dict]]:
    """A video through demo.video with a frame progress bar on stderr; no size or length cap on the CLI."""
    output = None
    if args.cam:
        args.cam.mkdir(parents=True, exist_ok=True)
        output = args.cam / f"{path.stem}.annotated{video.videoio.SUFFIX}"
    with tqdm(unit="frame", file=sys.stderr, leave=False, desc=path.name) as bar:
        def progress(done, total, stage):
            bar.total, bar.n = total, done
            bar.set_description_str(f"{path.name}: {stage}", refresh=False)
            bar.refresh()
        result = video.analyze(pipeline, path, every=args.every, output=output, progress=progress,
                               detector=args.detector or video.VIDEO_DETECTOR,
                               max_bytes=float("inf"), max_seconds=float("inf"))
    return result, video_rows(path, result, args.per_frame, args.age_probs)


def save_cams(out_dir: Path, path: Path, result, heads: tuple[str, ...]) -> None:
    """<stem>.annotated.jpg, and per face and head <stem>.face<i>.<head>.jpg (the aligned face with its map)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    Image.fromarray(result.annotated).save(out_dir / f"{path.stem}.annotated.jpg", quality=90)
    for face in result.faces:
        for head in heads:
            Image.fromarray(face.cam_image(head)).save(out_dir / f"{path.stem}.face{face.index}.{head}.jpg", quality=90)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo.cli", description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+", metavar="IMAGE_VIDEO_OR_DIR")
    parser.add_argument("--model", default=None, help="scratch, vgg16, ensemble (both), a Hub id[@revision] or a model "
                                                      "folder (default: $FACE_MODEL, else the default architecture)")
    parser.add_argument("--format", choices=("json", "csv"), default="json")
    parser.add_argument("--no-detect", action="store_true", help="the images are face crops: use each whole")
    parser.add_argument("--detector", choices=DETECTORS, default=None,
                        help=f"face finder (default: auto for photos, {video.VIDEO_DETECTOR} for video frames)")
    parser.add_argument("--min-score", type=float, default=0.5, help="detector confidence threshold")
    parser.add_argument("--cam", type=Path, metavar="OUT_DIR", help="write Grad-CAM images (gender, age) here")
    parser.add_argument("--output", "-o", type=Path, help="write rows here instead of stdout")
    parser.add_argument("--threads", type=int, help="torch threads (1 is often faster on a busy 2-core machine)")
    parser.add_argument("--max-faces", type=int, default=None,
                        help="keep at most this many faces per photo or frame, the most confident (default: all)")
    parser.add_argument("--per-frame", action="store_true", help="videos: one row per face per analysed frame "
                                                                 "instead of one per person")
    parser.add_argument("--every", type=int, default=1, help="videos: find faces on every N-th frame only "
                                                             "(faster; the tracker carries the boxes between)")
    parser.add_argument("--age-probs", action="store_true",
                        help="each face's (and video person's) age distribution, P(age) for 0-100 y: a list "
                             "age_probs in JSON, columns age_p0 ... age_p100 in CSV")
    args = parser.parse_args(argv)
    if args.max_faces is not None and args.max_faces < 1 or args.every < 1:
        parser.error("--max-faces and --every must be at least 1")
    if args.threads is not None and args.threads < 1:  # torch would raise a bare RuntimeError
        parser.error("--threads must be at least 1")
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)

    files, any_folder = collect(args.inputs)
    if not files:
        print("error: no image or video files found in " + ", ".join(args.inputs), file=sys.stderr)
        return 1
    try:
        from model.hub import load_model
        model = load_model(args.model)
    except Exception as e:  # ModelLoadError and friends: a message, not a traceback
        print(f"error: cannot load model {args.model or '(default)'}: {e}", file=sys.stderr)
        return 2
    pipeline = Pipeline(model, detector=args.detector or "auto", min_score=args.min_score,
                        max_faces=args.max_faces or sys.maxsize)
    heads = ("gender", "age") if args.cam else ()

    try:
        out = open(args.output, "w", newline="") if args.output else sys.stdout
    except OSError as e:  # e.g. a folder that does not exist: a message, not a traceback
        print(f"error: cannot write {args.output}: {e.strerror}", file=sys.stderr)
        return 2
    writer = csv.DictWriter(out, fieldnames=columns_for(files, args.per_frame, args.age_probs), restval="") \
        if args.format == "csv" else None
    if writer:
        writer.writeheader()
    all_rows, failed = [], 0
    progress = tqdm(files, unit="image", disable=not any_folder or None, file=sys.stderr)
    for path in progress:
        try:
            if is_video(path):
                result, rows = run_video(pipeline, path, args)
            else:
                result = pipeline(path, detect=not args.no_detect, cam_heads=heads)
                rows = rows_for(path, result, args.age_probs)
        except (BadImageError, BadVideoError) as e:
            failed += 1
            tqdm.write(f"error: {path}: {e}", file=sys.stderr)
            continue
        except Exception as e:  # an unexpected bug on one file must not cost the others
            failed += 1
            tqdm.write(f"error: {path}: unexpected {type(e).__name__}: {e}", file=sys.stderr)
            continue
        for note in result.notes:
            tqdm.write(f"note: {path}: {note}", file=sys.stderr)
        if writer:
            writer.writerows(csv_row(row) for row in rows)
            out.flush()
        else:
            all_rows += rows
        if args.cam and not is_video(path):
            save_cams(args.cam, path, result, heads)
    if not writer:
        json.dump(all_rows, out, indent=1)
        out.write("\n")
    if out is not sys.stdout:
        out.close()
    print(f"{len(files) - failed} of {len(files)} files processed, {failed} failed "
          f"({getattr(model, 'arch', 'model')} in {pipeline.fast.precision})", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
