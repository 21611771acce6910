"""Decode every image once into a uint8 array at training size, cached on disk.

A CPU epoch cannot afford to decode 16k JPEGs again each time; 23k faces at 128 px are 1.2 GB of uint8,
which fits in memory. Unreadable or corrupt images are skipped with a count and a warning, here, before
training starts, so nothing can crash mid-epoch.
"""
from __future__ import annotations

import hashlib
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from tqdm import tqdm

from model.preprocess import to_uint8_tensor
from train.checkpoint import replaced_atomically
from train.data import FRAMING_CROP, Record, file_stamp

log = logging.getLogger(__name__)


def square_crop(image: Image.Image) -> Image.Image:
    """Centre square crop: UTKFace chips are square already; CelebA's 178x218 are not."""
    w, h = image.size
    if w == h:
        return image
    side = min(w, h)
    return image.crop(((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side))


def centre_crop(image: Image.Image, fraction: float) -> Image.Image:
    """Keep the central `fraction` of each side (0.8 keeps the central 80%)."""
    w, h = image.size
    cw, ch = max(1, round(w * fraction)), max(1, round(h * fraction))
    left, top = (w - cw) // 2, (h - ch) // 2
    return image.crop((left, top, left + cw, top + ch))


def read_face(path: str, image_size: int, crop: float | None = None,
              matrix: np.ndarray | None = None) -> torch.Tensor | None:
    """One training image -> uint8 [3, S, S], or None if it cannot be decoded. `matrix`: the app's alignment
    of the face found in it (train/aligned.py), cut and resized as the app does; without one (or NaN: no face
    found), `crop`: an optional fractional centre crop (per source, train.data.FRAMING_CROP) so differently
    framed sets match."""
    try:
        if matrix is not None and np.isfinite(matrix).all():
            from train.aligned import aligned_face  # OpenCV: not needed to train from a pack (train/pack.py)
            return to_uint8_tensor(aligned_face(path, matrix), image_size)
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)
            image.load()
            image = square_crop(image.convert("RGB"))
            return to_uint8_tensor(centre_crop(image, crop) if crop else image, image_size)
    except Exception as error:  # any decoder failure means "unusable image", whatever PIL raises
        log.debug("unreadable image %s: %s", path, error)
        return None


def cache_key(records: list[Record], image_size: int, matrices: np.ndarray | None = None) -> str:
    h = hashlib.sha1(str(image_size).encode())
    if matrices is not None:
        h.update(b"aligned:" + np.ascontiguousarray(matrices).tobytes())
    for r in records:
        h.update(file_stamp(r.path).encode())
        if FRAMING_CROP.get(r.source):  # only when set, so caches made before per-source crops stay valid
            h.update(f"crop={FRAMING_CROP[r.source]}\n".encode())
    return h.hexdigest()[:16]


def load_images(records: list[Record], image_size: int, cache_dir: Path | None = None, workers: int = 2,
                matrices: np.ndarray | None = None) -> tuple[torch.Tensor, list[Record]]:
    """Records -> (uint8 images [N, 3, S, S], the records that decoded), skipping unreadable files.
    `matrices` [N, 2, 3] (train.aligned.alignment_matrices): cut each face as the app does."""
    cache = cache_dir / f"images-{cache_key(records, image_size, matrices)}.npz" if cache_dir else None
    if cache is not None and cache.exists():
        stored = np.load(cache)
        keep = stored["keep"]
        return torch.from_numpy(stored["images"]), [r for r, k in zip(records, keep) if k]
    crops = [FRAMING_CROP.get(r.source) for r in records]
    aligned = matrices if matrices is not None else [None] * len(records)
    with ThreadPoolExecutor(workers) as pool:  # PIL releases the GIL while decoding
        faces = list(tqdm(pool.map(lambda r, c, m: read_face(r.path, image_size, c, m), records, crops, aligned),
                          total=len(records), desc=f"decoding images at {image_size}px", leave=False))
    keep = np.array([f is not None for f in faces], dtype=bool)
    skipped = [r.path for r, k in zip(records, keep) if not k]
    if skipped:
        log.warning("skipped %d unreadable or corrupt images, e.g. %s", len(skipped), skipped[:3])
    images = torch.stack([f for f in faces if f is not None]) if keep.any() else \
        torch.empty(0, 3, image_size, image_size, dtype=torch.uint8)
    if cache is not None:
        with replaced_atomically(cache) as tmp, tmp.open("wb") as f:
            np.savez(f, images=images.numpy(), keep=keep)
    return images, [r for r, k in zip(records, keep) if k]
