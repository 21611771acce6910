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


FAIRFACE_AGES = {"0-2": 1, "03-Sep": 6, "Oct-19": 15, "20-29": 25, "30-39": 35, "40-49": 45, "50-59": 55,
                 "60-69": 65, "more than 70": 78}  # label as in our copy (spreadsheet-mangled) -> a typical age
FAIRFACE_RACES = ("White", "Black", "Latino_Hispanic", "East Asian", "Southeast Asian", "Indian", "Middle Eastern")


EXAMPLES = Path(__file__).resolve().parents[1] / "assets" / "examples"
# Real portraits (public domain, assets/examples) for val rows that must hold a face a detector finds.
REAL_FACES = (EXAMPLES / "astronaut.jpg", EXAMPLES / "grace_hopper.jpg")


def real_face_crop(path: Path, size: int = 224) -> Image.Image:
    """A portrait's central square at FairFace's crop size: a face the app's detector finds."""
    image = Image.open(path).convert("RGB")
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    return image.crop((left, top, left + side, top + side)).resize((size, size))


def make_fairface_folder(root: Path, n: int = 120, n_val: int = 20, seed: int = 0,
                         image_dir: str = "fair_face", real_val_faces: int = 0) -> Path:
    """`root/fairface/` laid out like our copy: fairface_label_{train,val}.csv (file, age, gender, race,
    service_test; ages spreadsheet-mangled) beside `image_dir/{train,val}/N.jpg` ("." = the official zip).
    The first `real_val_faces` val images are real portraits (REAL_FACES, in turn), labelled female, 30-39."""
    folder = root / "fairface"
    rng = np.random.default_rng(seed)
    labels = list(FAIRFACE_AGES)
    for part, count in (("train", n), ("val", n_val)):
        (folder / image_dir / part).mkdir(parents=True, exist_ok=True)
        lines = ["file,age,gender,race,service_test"]
        for i in range(1, count + 1):
            age, gender = labels[int(rng.integers(len(labels)))], int(rng.integers(0, 2))
            race = FAIRFACE_RACES[int(rng.integers(len(FAIRFACE_RACES)))]
            image = face_image(FAIRFACE_AGES[age], gender, seed * 100_000 + 50_000 + i, size=56)
            if part == "val" and i <= real_val_faces:
                age, gender, image = "30-39", 1, real_face_crop(REAL_FACES[(i - 1) % len(REAL_FACES)])
            image.save(folder / image_dir / part / f"{i}.jpg")
            lines.append(f"{part}/{i}.jpg,{age},{'Female' if gender else 'Male'},{race},{'TRUE' if i % 2 else 'FALSE'}")
        (folder / f"fairface_label_{part}.csv").write_text("\n".join(lines) + "\n")
    return folder
