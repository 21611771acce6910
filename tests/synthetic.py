"""Synthetic UTKFace-style data made by the tests: learnable, tiny, and with the real set's quirks."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def face_image(age: int, gender: int, seed: int, size: int = 48) -> Image.Image:
    """A "face" whose gender is its colour and whose age is its brightness, plus noise: easy to learn."""
    rng = np.random.default_rng(seed)
    base = np.array([200, 60, 60] if gender else [60, 60, 200], dtype=np.float32)
    image = base * (0.4 + 0.6 * age / 100) + rng.normal(0, 12, (size, size, 3))
    return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))


def make_utkface_folder(root: Path, n: int = 120, seed: int = 0) -> Path:
    """`root/UTKFace/` with n well-formed chips named like the real set."""
    folder = root / "UTKFace"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        age, gender, race = int(rng.integers(1, 90)), int(rng.integers(0, 2)), int(rng.integers(0, 5))
        face_image(age, gender, seed * 100_000 + i).save(folder / f"{age}_{gender}_{race}_2017011{i:010d}.jpg.chip.jpg")
    return folder
