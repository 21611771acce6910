"""`python -m train.quantize`: a model's int8 ranges, measured on UTKFace training faces as the app cuts them.

    python -m train.quantize --model assets/models/vgg16 --data ../shared/data/UTKFace.tar.gz

Reads `--faces` rows of the split's UTKFace training part (evenly spaced: the rows are sorted by file name, which
starts with the age, so every age is in), cuts each face as the app does (found and aligned, as the models train
on them) and reads it as the model does (with its mirror image where the model reads faces mirrored). The ranges
torch's x86 observers choose on them are written to MODEL/int8.json (model/int8.py), and for a bundle its sha256
list again. It then prints how far the int8 body's readouts lie from fp32's on those same faces: a check that
the file works, not an evaluation (tests/test_fast_inference.py holds the parity bounds, on test faces).
No evaluation set is read.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np
import torch

from model.fast import FastModel
from model.gender import says_female
from model.hub import ASSETS_DIR, CHECKSUM_FILE, ModelLoadError, load_model, write_checksums
from model.int8 import RANGES_FILE, calibrate, save_ranges
from model.nets import with_mirrors
from model.preprocess import normalize
from train.aligned import alignment_matrices
from train.evaluate import CACHE_DIR, split_csv_records
from train.images import load_images

BATCH = 32


def spread(records: list, count: int) -> list:
    """`count` records evenly spaced through the list (all of them where it has fewer)."""
    if count >= len(records):
        return list(records)
    return [records[i] for i in np.linspace(0, len(records) - 1, count).round().astype(int)]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m train.quantize", description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="a network's folder (config.json + weights)")
    parser.add_argument("--data", type=Path, required=True, help="the UTKFace archive or folder the split lists")
    parser.add_argument("--split-csv", type=Path, default=ASSETS_DIR / "split.csv")
    parser.add_argument("--faces", type=int, default=256, help="training faces to calibrate on (default 256)")
    parser.add_argument("--threads", type=int, help="torch threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.faces < 1:
        parser.error("--faces must be at least 1")
    try:
        model = load_model(str(args.model))
    except ModelLoadError as e:
        sys.exit(f"error: {e}")
    if hasattr(model, "members"):
        sys.exit(f"error: {args.model} is an ensemble: quantize its networks (each ships its own {RANGES_FILE})")

    records = spread(split_csv_records(args.split_csv, args.data, "train"), args.faces)
    images, records = load_images(records, model.image_size, matrices=alignment_matrices(records, CACHE_DIR))
    faces = normalize()(images)
    batches = [faces[i:i + BATCH] for i in range(0, len(faces), BATCH)]
    read = with_mirrors if model.mirror_average else (lambda batch: batch)
    body, _ = model.split_at_cam_layer()
    ranges = calibrate(body, (read(batch) for batch in batches), model.image_size)
    command = shlex.join(["python", "-m", "train.quantize"] + (sys.argv[1:] if argv is None else list(argv)))
    save_ranges(args.model / RANGES_FILE, ranges, model.arch, {
        "faces": len(faces), "mirrored": model.mirror_average, "command": command,
        "calibrated_on": "UTKFace training split rows, evenly spaced, cut as the app cuts faces"})
    if (args.model / CHECKSUM_FILE).is_file():
        write_checksums(args.model)
    print(f"{args.model / RANGES_FILE}: {len(ranges)} activation ranges from {len(faces)} training faces"
          f"{' and their mirror images' if model.mirror_average else ''}")

    model.int8_ranges = ranges
    paths = {name: FastModel(model, name) for name in ("fp32", "int8")}
    readouts = {name: [fast.predict(batch) for batch in batches] for name, fast in paths.items()}
    p_female, age = ({name: torch.cat([r[key] for r in rs]).numpy() for name, rs in readouts.items()}
                     for key in ("p_female", "age"))
    agree = np.mean(says_female(p_female["int8"]) == says_female(p_female["fp32"]))
    moved = np.abs(age["int8"] - age["fp32"])
    print(f"int8 against fp32 on these faces: gender calls agree on {agree:.1%}, ages move {moved.mean():.2f} y "
          f"on average (at most {moved.max():.2f})")


if __name__ == "__main__":
    main()
