"""A training run's faces packed for another machine: `python -m train --data PACK` trains on them there.

A lent GPU machine has neither ../shared's archives nor MediaPipe, and takes files in pieces of about 20 MiB
(docs/training.md, "On a lent GPU"). A pack holds what `prepare_data` gives a run (every training and validation
face already cut as --crops says, at the run's size), as WebP, with the labels, the split.csv and data_report.json
of the data it was cut from, so a run trained from the pack writes the same files (train.evaluate and
train.validate then read the original data by that split.csv on the machine that has it).

Why WebP at quality 80: the pack's size is the number of calls that carry it. Measured on 500 training faces at
160 px against the uncut crop (2026-12-06): WebP q80 1.9 KiB a face, a mean error of 2.0 / 255 per pixel; JPEG q90
5.3 KiB / 1.1, q75 3.4 KiB / 1.6; WebP q90 3.0 KiB / 1.5. Training's own augmentation compresses a share of the
faces far harder (JPEG quality 20-60). Every Pillow wheel reads WebP; AVIF (1.8 KiB / 1.7 at q60) is left out as
it is not in every one.

    python -m train.pack --data ../shared/data/UTKFace.tar.gz ~/.cache/face-age-gender/fairface \\
        --split-csv assets/models/split.csv --image-size 160 --out runs/pack160
    python -m train --model vgg16 --data runs/pack160 --image-size 160 --device cuda ...

Files: pack.json (what it holds), split.csv, data_report.json, and per split `{split}.csv` (the faces' records,
in order) and `{split}.npz` (`images`: the encoded images one after another, `offsets`: where each starts).
"""
from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from model.preprocess import to_uint8_tensor
from train.data import read_split_csv, write_split_csv

PACK_FILE = "pack.json"
SPLITS = ("train", "val")
QUALITY = 80  # WebP's
FORMAT = 2  # bumped when the files change (1: JPEG q90, the npz's array named "jpeg")


def is_pack(path) -> bool:
    return (Path(path) / PACK_FILE).is_file()


def encode(image: torch.Tensor, quality: int = QUALITY) -> bytes:
    """uint8 [3, S, S] -> WebP bytes (method 6: the smallest, 4 ms a 160 px face)."""
    buffer = io.BytesIO()
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(buffer, "WEBP", quality=quality, method=6)
    return buffer.getvalue()


def decode(data: bytes, image_size: int) -> torch.Tensor:
    """Encoded image bytes -> uint8 [3, S, S], as training reads any face (model.preprocess)."""
    with Image.open(io.BytesIO(data)) as image:
        return to_uint8_tensor(image, image_size)


def write_pack(sets: dict, out: Path, image_size: int, crops: str, split_csv: Path, report_json: Path,
               quality: int = QUALITY, workers: int = 2) -> dict:
    """`sets`: train.train.prepare_data's {split: SplitData}; split_csv, report_json: the files it wrote."""
    out.mkdir(parents=True, exist_ok=True)
    about = {"format": FORMAT, "image_size": image_size, "crops": crops, "codec": "webp", "quality": quality,
             "faces": {}}
    for split in SPLITS:
        data = sets[split]
        with ThreadPoolExecutor(workers) as pool:  # PIL releases the GIL while encoding
            blobs = list(pool.map(lambda image: encode(image, quality), data.images))
        offsets = np.cumsum([0] + [len(b) for b in blobs], dtype=np.int64)
        np.savez(out / f"{split}.npz", images=np.frombuffer(b"".join(blobs), np.uint8), offsets=offsets)
        write_split_csv(data.records, out / f"{split}.csv")  # the records' own paths: labels and ids only
        about["faces"][split] = len(blobs)
    shutil.copyfile(split_csv, out / "split.csv")
    shutil.copyfile(report_json, out / "data_report.json")
    (out / PACK_FILE).write_text(json.dumps(about, indent=1) + "\n")
    return about


def read_pack(folder: Path, workers: int = 8) -> tuple[dict, dict[str, tuple[torch.Tensor, list]]]:
    """-> (pack.json, {split: (uint8 images [N, 3, S, S], records)})."""
    folder = Path(folder)
    about = json.loads((folder / PACK_FILE).read_text())
    if about.get("format") != FORMAT:
        raise ValueError(f"{folder} is a pack of format {about.get('format')}; this code reads format {FORMAT}")
    sets = {}
    for split in SPLITS:
        stored = np.load(folder / f"{split}.npz")
        encoded, offsets = stored["images"], stored["offsets"]
        records = read_split_csv(folder / f"{split}.csv")
        if len(records) != len(offsets) - 1 or len(records) != about["faces"][split]:
            raise ValueError(f"{folder}: {split}.csv lists {len(records)} faces, {split}.npz holds "
                             f"{len(offsets) - 1} (an incomplete copy?)")
        size = about["image_size"]
        with ThreadPoolExecutor(workers) as pool:
            faces = list(pool.map(lambda i: decode(encoded[offsets[i]:offsets[i + 1]].tobytes(), size),
                                  range(len(records))))
        images = torch.stack(faces) if faces else torch.empty(0, 3, size, size, dtype=torch.uint8)
        sets[split] = images, records
    return about, sets


def main(argv=None) -> None:
    from train.train import parse_args, prepare_data
    parser = argparse.ArgumentParser(prog="python -m train.pack", description=__doc__.split("\n")[0],
                                     epilog="Every other option is python -m train's (--data, --split-csv, "
                                            "--crops, --limit, --max-per-source, --seed, --cache-dir).")
    parser.add_argument("--out", required=True, help="the pack's folder")
    parser.add_argument("--image-size", type=int, required=True, help="the size the run will train at (px)")
    parser.add_argument("--quality", type=int, default=QUALITY, help="WebP quality")
    args, rest = parser.parse_known_args(argv)
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"{out} is not empty: choose another --out or delete it")
    cfg = parse_args(rest + ["--image-size", str(args.image_size), "--out", str(out / "run")])
    if is_pack(cfg.data[0]):
        raise SystemExit("--data is a pack already")
    run = out / "run"
    run.mkdir(parents=True)
    sets = prepare_data(cfg, run)  # writes run/split.csv and run/data_report.json
    about = write_pack(sets, out, cfg.image_size, cfg.crops, run / "split.csv", run / "data_report.json",
                       args.quality)
    shutil.rmtree(run)
    size = sum(p.stat().st_size for p in out.iterdir())
    print(f"{out}: {about['faces']['train']} training and {about['faces']['val']} validation faces at "
          f"{cfg.image_size} px, {size / 2**20:.0f} MiB", file=sys.stderr)


if __name__ == "__main__":
    main()
