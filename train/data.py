"""Datasets as tables of records: UTKFace (tar.gz or folder), CelebA, and folder-per-class trees.

Labels come from file names or attribute files; images are read later (train/images.py). UTKFace is
deduplicated before splitting, so byte-identical copies cannot leak across train/val/test.
"""
from __future__ import annotations

import csv
import hashlib
import logging
import random
import re
import tarfile
from collections import defaultdict
from dataclasses import asdict, dataclass, fields
from pathlib import Path

log = logging.getLogger(__name__)

UNKNOWN = -1  # age or race not known (CelebA / folder datasets have no age; a few UTKFace names lack race)
RACES = ("White", "Black", "Asian", "Indian", "Others")
AGE_BANDS = ((0, 2), (3, 9), (10, 19), (20, 29), (30, 39), (40, 49), (50, 59), (60, 69), (70, 200))
SPLITS = ("train", "val", "test")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


@dataclass
class Record:
    path: str  # absolute path of the image
    age: int  # years, or UNKNOWN
    gender: int  # 0 = male, 1 = female
    race: int = UNKNOWN  # index into RACES, or UNKNOWN
    source: str = "utkface"
    split: str = ""  # "", or one of SPLITS when the dataset's layout fixes it


def age_band(age: int) -> str:
    if age == UNKNOWN:
        return "unknown"
    for low, high in AGE_BANDS:
        if low <= age <= high:
            return f"{low}-{high}" if high < 200 else f"{low}+"
    return "unknown"


def race_name(race: int) -> str:
    return RACES[race] if 0 <= race < len(RACES) else "unknown"


# ---------------------------------------------------------------------------------------------- UTKFace

_UTK_NAME = re.compile(r"^(\d+)_(\d+)_(?:(\d)_)?(\d+)")


def parse_utkface_name(name: str) -> tuple[int, int, int] | None:
    """`[age]_[gender]_[race]_[date].jpg.chip.jpg` -> (age, gender, race); None if unusable.

    Tolerates the real set's malformed names: a stray space or missing dot before "jpg", and a missing
    race field (race is then UNKNOWN). Ages outside 1..116 or genders other than 0/1 are rejected.
    """
    m = _UTK_NAME.match(name)
    if not m:
        return None
    age, gender = int(m.group(1)), int(m.group(2))
    race = int(m.group(3)) if m.group(3) is not None else UNKNOWN
    if not (1 <= age <= 116 and gender in (0, 1) and (race == UNKNOWN or race < len(RACES))):
        return None
    return age, gender, race


def extract_archive(archive: Path, cache_dir: Path) -> Path:
    """Extract a UTKFace .tar.gz once into the cache (never into the repo); return the image folder."""
    stat = archive.stat()
    key = hashlib.sha1(f"{archive.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    target = cache_dir / f"{archive.name.split('.')[0]}-{key}"
    done = target / ".extracted"
    if not done.exists():
        log.info("extracting %s into %s (once)", archive, target)
        target.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive) as tar:
            tar.extractall(target, filter="data")  # "data" refuses absolute paths, links out, devices
        done.touch()
    folders = [p for p in target.iterdir() if p.is_dir()]
    return folders[0] if len(folders) == 1 else target


def scan_utkface(folder: Path) -> tuple[list[Record], list[str]]:
    """All UTKFace images in `folder` -> (records, names that could not be parsed)."""
    records, bad = [], []
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or not path.name.lower().endswith("jpg"):
            continue
        parsed = parse_utkface_name(path.name)
        if parsed is None:
            bad.append(path.name)
            continue
        age, gender, race = parsed
        records.append(Record(str(path), age, gender, race))
    if bad:
        log.warning("UTKFace: %d file names could not be parsed and were skipped: %s", len(bad), bad[:5])
    return records, bad


def file_digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def dedupe(records: list[Record]) -> tuple[list[Record], dict]:
    """Drop byte-identical duplicates. Copies with identical labels keep one; groups whose copies disagree
    on a label are dropped whole (we cannot know which label is right)."""
    groups: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        groups[file_digest(r.path)].append(r)
    kept, conflicting_groups, conflicting_files, redundant = [], 0, 0, 0
    for group in groups.values():
        if len(group) == 1:
            kept.append(group[0])
            continue
        labels = {(r.age, r.gender, r.race) for r in group}
        if len(labels) > 1:
            conflicting_groups += 1
            conflicting_files += len(group)
        else:
            kept.append(min(group, key=lambda r: r.path))
            redundant += len(group) - 1
    kept.sort(key=lambda r: r.path)
    dup_groups = sum(len(g) > 1 for g in groups.values())
    report = {
        "files": len(records),
        "duplicate_groups": dup_groups,
        "files_in_duplicate_groups": sum(len(g) for g in groups.values() if len(g) > 1),
        "conflicting_groups": conflicting_groups,
        "dropped_conflicting_files": conflicting_files,
        "dropped_redundant_copies": redundant,
        "kept": len(kept),
    }
    log.info("dedupe: %s", report)
    return kept, report


# ---------------------------------------------------------------------------------------------- others

def scan_celeba(root: Path) -> list[Record]:
    """CelebA: `list_attr_celeba.txt` (count line, attribute names, then `file v1 v2 ...` with +-1) and
    images in `img_align_celeba/`. Gender only: Male=1 -> 0 (male), -1 -> 1 (female)."""
    lines = (root / "list_attr_celeba.txt").read_text().splitlines()
    male = lines[1].split().index("Male")
    records = []
    for line in lines[2:]:
        parts = line.split()
        if len(parts) < male + 2:
            continue
        gender = 0 if parts[male + 1] == "1" else 1
        records.append(Record(str(root / "img_align_celeba" / parts[0]), UNKNOWN, gender, source="celeba"))
    return records


_SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                "test": "test", "testing": "test"}
_CLASS_NAMES = {"male": 0, "man": 0, "men": 0, "female": 1, "woman": 1, "women": 1}


def scan_class_folders(root: Path) -> list[Record]:
    """`root/{Train,Validation,Test}/{Male,Female}/*` (split fixed by the folders) or `root/{Male,Female}/*`."""
    records = []
    for path in sorted(root.rglob("*")):
        if not (path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES):
            continue
        parts = [p.lower() for p in path.relative_to(root).parts[:-1]]
        genders = [_CLASS_NAMES[p] for p in parts if p in _CLASS_NAMES]
        if not genders:
            continue
        split = next((_SPLIT_NAMES[p] for p in parts if p in _SPLIT_NAMES), "")
        records.append(Record(str(path), UNKNOWN, genders[-1], source="folder", split=split))
    return records


def detect_layout(source: Path) -> str:
    if source.is_file() and source.name.endswith((".tar.gz", ".tgz", ".tar")):
        return "utkface"
    if (source / "list_attr_celeba.txt").exists():
        return "celeba"
    if any(p.is_dir() and p.name.lower() in _CLASS_NAMES for p in source.rglob("*")):
        return "folder"
    return "utkface"


def load_records(sources: list[str | Path], cache_dir: Path) -> tuple[list[Record], dict]:
    """Read every data source (layout detected per source) -> (records, report). UTKFace is deduplicated."""
    all_records, report = [], {"sources": []}
    for source in map(Path, sources):
        if not source.exists():
            raise FileNotFoundError(f"data source not found: {source}")
        layout = detect_layout(source)
        entry = {"path": str(source), "layout": layout}
        if layout == "utkface":
            folder = extract_archive(source, cache_dir) if source.is_file() else source
            records, bad = scan_utkface(folder)
            records, entry["dedupe"] = dedupe(records)
            entry["unparseable_names"] = bad
        elif layout == "celeba":
            records = scan_celeba(source)
        else:
            records = scan_class_folders(source)
        entry["records"] = len(records)
        report["sources"].append(entry)
        all_records += records
    return all_records, report


# ---------------------------------------------------------------------------------------------- split

def split_records(records: list[Record], seed: int = 0, fractions=(0.7, 0.15, 0.15)) -> list[Record]:
    """Assign train/val/test, stratified by gender and age band, deterministic for a seed.

    Records whose split is fixed by their dataset's layout keep it. Within each stratum the order is
    shuffled by a seeded RNG after sorting by path, so the result does not depend on input order.
    """
    strata: dict[tuple, list[Record]] = defaultdict(list)
    for r in records:
        if not r.split:
            strata[(r.source, r.gender, age_band(r.age))].append(r)
    rng = random.Random(seed)
    for key in sorted(strata):
        group = sorted(strata[key], key=lambda r: r.path)
        rng.shuffle(group)
        n_train = round(len(group) * fractions[0])
        n_val = round(len(group) * (fractions[0] + fractions[1])) - n_train
        for i, r in enumerate(group):
            r.split = "train" if i < n_train else "val" if i < n_train + n_val else "test"
    return records


CSV_FIELDS = [f.name for f in fields(Record)]


def write_split_csv(records: list[Record], path: Path, root: Path | None = None) -> None:
    """The split as CSV (paths relative to `root` when given, so the file is portable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for r in records:
            row = asdict(r)
            if root is not None:
                try:
                    row["path"] = str(Path(r.path).relative_to(root))
                except ValueError:
                    pass
            writer.writerow(row)


def read_split_csv(path: Path, root: Path | None = None) -> list[Record]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [Record(path=str(root / row["path"]) if root and not Path(row["path"]).is_absolute() else row["path"],
                   age=int(row["age"]), gender=int(row["gender"]), race=int(row["race"]),
                   source=row["source"], split=row["split"]) for row in rows]
