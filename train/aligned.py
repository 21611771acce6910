"""Training crops cut the way the app cuts an upload.

Every image goes once through the app's own face finder (model.faces, at the app's default detector and
threshold) and its alignment (model.align); the alignment matrix of the main face is cached per image. The
crop itself is cut when the images are decoded (train/images.py), so one detection pass serves every input
size. Where no face is found, the image keeps the crop it had before (square, per-source framing crop), and
the count per source goes into data_report.json.
"""
from __future__ import annotations

import hashlib
import logging
import multiprocessing
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps
from tqdm import tqdm

from model import align
from model.faces import (DEFAULT_DETECTOR, DEFAULT_MIN_SCORE, TIGHT_CROP_MIN_SCORE, TIGHT_CROP_PAD, TIGHT_CROP_SHARE,
                         FaceFinder, main_face)
from train.checkpoint import replaced_atomically
from train.data import file_stamp

log = logging.getLogger(__name__)

# Part of the cache key: a change to how faces are found or framed must not reuse old matrices.
FINDER_SETTINGS = f"{DEFAULT_DETECTOR}:{DEFAULT_MIN_SCORE}:{TIGHT_CROP_MIN_SCORE}:{TIGHT_CROP_PAD}:" \
                  f"{TIGHT_CROP_SHARE}:{align.EYES_CENTER}:{align.EYE_DISTANCE}:{align.EYES_TO_MOUTH}:v2"  # v2: float64

_finder: FaceFinder | None = None


def decode_rgb(path: str) -> np.ndarray:
    """An image file as RGB uint8, EXIF-rotated (as model.imageio.load_image decodes an upload)."""
    with Image.open(path) as image:
        return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))


def locate(path: str) -> np.ndarray | None:
    """The 2x3 alignment matrix of the image's main face, or None (no face found, or unreadable)."""
    global _finder
    _finder = _finder or FaceFinder()  # per process: detectors load once
    try:
        rgb = decode_rgb(path)
    except Exception as error:  # unreadable images are skipped (and counted) when the pixels are decoded
        log.debug("unreadable image %s: %s", path, error)
        return None
    face = main_face(_finder.find(rgb, DEFAULT_MIN_SCORE, DEFAULT_DETECTOR, []), rgb.shape)
    # float64, as the app's: rounded to float32, it moved 50 of the 120,000 chip values by one (AMD EPYC Zen 4)
    return None if face is None else align.alignment_matrix(face.keypoints)


def cache_key(records) -> str:
    h = hashlib.sha1(FINDER_SETTINGS.encode())
    for r in records:
        h.update(file_stamp(r.path).encode())
    return h.hexdigest()[:16]


def alignment_matrices(records, cache_dir: Path | None = None, workers: int = 2) -> np.ndarray:
    """Records -> float64 [N, 2, 3] alignment matrices, NaN where no face was found. ~10 ms per image and
    process (FairFace crops, UTKFace chips on a 2-core AVX2 EPYC), so `workers` processes share the work."""
    cache = cache_dir / f"faces-{cache_key(records)}.npy" if cache_dir else None
    if cache is not None and cache.exists():
        return np.load(cache)
    paths = [r.path for r in records]
    desc = "finding faces as the app does"
    if workers > 1 and len(paths) > 200:
        # spawn, not fork: a parent that already ran MediaPipe must not hand its detector threads to children
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            found = list(tqdm(pool.imap(locate, paths, chunksize=64), total=len(paths), desc=desc, mininterval=10))
    else:
        found = [locate(p) for p in tqdm(paths, desc=desc, leave=False, mininterval=10)]
    matrices = np.full((len(paths), 2, 3), np.nan)
    for i, m in enumerate(found):
        if m is not None:
            matrices[i] = m
    if cache is not None:
        with replaced_atomically(cache) as tmp, tmp.open("wb") as f:
            np.save(f, matrices)
    return matrices


def aligned_face(path: str, matrix: np.ndarray) -> np.ndarray:
    """The app's 200 px chip of the face `matrix` locates (model.align.warp, as demo.pipeline cuts it)."""
    return align.warp(decode_rgb(path), matrix)
