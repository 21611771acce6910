"""Datasets as tables of records: UTKFace (tar.gz or folder), FairFace, CelebA, and folder-per-class trees.

Labels come from file names or label files; images are read later (train/images.py). UTKFace is
deduplicated before splitting, so byte-identical copies cannot leak across train/val/test. FairFace labels
age as a range ("20-29"): such records keep age = UNKNOWN and carry the range in age_low..age_high.
"""
from __future__ import annotations

import csv
import hashlib
import logging
import os
import random
import re
import tarfile
from collections import defaultdict
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from model.age import MAX_AGE

log = logging.getLogger(__name__)

UNKNOWN = -1  # age or race not known (CelebA / folder datasets have no age; a few UTKFace names lack race)
# UTKFace's five groups first (their indices are in file names and published splits), then FairFace's others.
RACES = ("White", "Black", "Asian", "Indian", "Others",
         "Latino_Hispanic", "East Asian", "Southeast Asian", "Middle Eastern")
UTKFACE_RACES = 5
AGE_BANDS = ((0, 2), (3, 9), (10, 19), (20, 29), (30, 39), (40, 49), (50, 59), (60, 69), (70, 200))
SPLITS = ("train", "val", "test")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
# Per-source fractional centre crop applied when reading images (train/images.py), so that faces from
# differently framed sets fill the frame alike; None = the whole (square) image.
# FairFace's crops frame the face looser than UTKFace's chips (which model/align.py frames uploads like):
# `python -m train.measure_framing --fairface ~/.cache/face-age-gender/fairface --n 300` (both MediaPipe detectors,
# 300 images of each set) gives eye distance + eyes-to-mouth = 0.732 of the side on FairFace vs 0.805 on
# UTKFace -> crop 0.910, centre offset (+0.005, -0.005) of the side (~1 px: a centred crop suffices; box sizes
# give 0.930). Check on 100 other FairFace images read with 0.91: face size -1.7%, box +0.9%, eyes +0.011 x.
FRAMING_CROP: dict[str, float | None] = {"fairface": 0.91}


@dataclass
class Record:
    path: str  # absolute path of the image
    age: int  # years, or UNKNOWN
    gender: int  # 0 = male, 1 = female
    race: int = UNKNOWN  # index into RACES, or UNKNOWN
    source: str = "utkface"
    split: str = ""  # "", or one of SPLITS when the dataset's layout fixes it
    age_low: int = UNKNOWN  # inclusive age range in years: both = age for an exact age,
    age_high: int = UNKNOWN  # the range for range-labelled faces (FairFace: age stays UNKNOWN), else UNKNOWN

    def __post_init__(self):
        if self.age != UNKNOWN and self.age_low == UNKNOWN and self.age_high == UNKNOWN:
            self.age_low = self.age_high = self.age

    @property
    def has_range(self) -> bool:
        """True for a range label (age_low < age_high), False for an exact or unknown age."""
        return 0 <= self.age_low < self.age_high

    @property
    def band(self) -> str:
        return age_band(self.age_low, self.age_high)


def is_range_label(age, low, high):
    """Whether a label is an age range (age unknown, low < high), elementwise: numbers, numpy arrays or tensors."""
    return (age < 0) & (low >= 0) & (high > low)


def in_age_range(pred_age, low, high):
    """Whether the predicted age, to the nearest whole year, lies inside low..high (elementwise, as above).
    The labels count whole years, so 29.4 is inside "20-29" and 29.6 is not; a NaN prediction is outside."""
    return (pred_age >= low - 0.5) & (pred_age < high + 0.5)


def age_band(age: int, high: int | None = None) -> str:
    """The AGE_BANDS label of an age, or of the range age..high when it lies inside one band ("unknown" else)."""
    high = age if high is None else high
    if age == UNKNOWN or high < age:
        return "unknown"
    for low_edge, high_edge in AGE_BANDS:
        if low_edge <= age and high <= high_edge:
            return f"{low_edge}-{high_edge}" if high_edge < 200 else f"{low_edge}+"
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
    if not (1 <= age <= 116 and gender in (0, 1) and (race == UNKNOWN or race < UTKFACE_RACES)):
        return None
    return age, gender, race


def extract_archive(archive: Path, cache_dir: Path) -> Path:
    """Extract a UTKFace .tar.gz once into the cache (never into the repo); return the image folder.

    Keyed by the archive's bytes (file_digest: 0.2 s for UTKFace's 106 MB), not its path or time: a machine that gets a
    fresh copy of the same archive reuses the extraction, and with it (the extracted files keep the times
    the archive stores) the decoded-image and face-finding caches, 5 minutes of a training run."""
    key = file_digest(archive)[:12]
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


def file_stamp(path: str) -> str:
    """"path:size:mtime" (-1s for a missing file): what cache keys hash, so a changed file misses the cache."""
    stat = os.stat(path) if os.path.exists(path) else None
    return f"{path}:{stat.st_size if stat else -1}:{stat.st_mtime_ns if stat else -1}\n"


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


# ---------------------------------------------------------------------------------------------- FairFace

FAIRFACE_CSV = "fairface_label_{part}.csv"
# where the csv's "train/1.jpg" paths start: beside the csv (official zip), our copy, the official image folder
FAIRFACE_IMAGE_DIRS = (".", "fair_face", "fairface-img-margin025-trainval")
FAIRFACE_GENDERS = {"male": 0, "female": 1}
_MONTHS = {m: i + 1 for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct",
                                           "nov", "dec"))}


def parse_age_range(text: str | None) -> tuple[int, int] | None:
    """FairFace age label -> inclusive (low, high) years; None if malformed.

    "20-29" -> (20, 29); "more than 70" or "70+" -> (70, MAX_AGE). A spreadsheet turned "3-9" into
    "03-Sep" and "10-19" into "Oct-19": month names read as their number.
    """
    text = (text or "").strip().lower()
    open_ended = re.fullmatch(r"(?:more than\s*(\d+)|(\d+)\s*\+)", text)
    if open_ended:
        low = int(open_ended.group(1) or open_ended.group(2))
        return (low, MAX_AGE) if low <= MAX_AGE else None
    parts = text.split("-")
    if len(parts) != 2:
        return None
    numbers = [_MONTHS.get(p.strip(), int(p) if p.strip().isdigit() else None) for p in parts]
    if None in numbers or not 0 <= numbers[0] <= numbers[1]:
        return None
    return numbers[0], min(numbers[1], MAX_AGE)


def fairface_race(name: str | None) -> int:
    """FairFace race label -> RACES index (White, Black, Indian share UTKFace's); UNKNOWN if not a FairFace group."""
    name = (name or "").strip()
    return RACES.index(name) if name in RACES and name not in ("Asian", "Others") else UNKNOWN


def fairface_image_dir(root: Path, first_file: str) -> Path:
    """The folder FairFace's relative image paths start from (the first one holding the first listed file)."""
    candidates = [root / d for d in FAIRFACE_IMAGE_DIRS]
    return next((c for c in candidates if (c / first_file).exists()),
                next((c for c in candidates if (c / Path(first_file).parts[0]).is_dir()), root))


def scan_fairface(root: Path, part: str = "train") -> tuple[list[Record], dict]:
    """`root/fairface_label_{part}.csv` (columns file, age, gender, race) -> (records, report).

    Rows with a malformed age, gender or race, or whose image is missing, are skipped and counted by reason.
    The "val" part is FairFace's official validation set: its records come out with split="test", since
    training never reads it (load_records scans "train" only).
    """
    root = Path(root)
    with open(root / FAIRFACE_CSV.format(part=part), newline="") as f:
        rows = list(csv.DictReader(f))
    folder = fairface_image_dir(root, rows[0]["file"]) if rows else root
    skipped = {"bad_age": 0, "bad_gender": 0, "bad_race": 0, "missing_file": 0}
    records = []
    for row in rows:
        ages = parse_age_range(row.get("age"))
        gender = FAIRFACE_GENDERS.get((row.get("gender") or "").strip().lower())
        race = fairface_race(row.get("race"))
        path = folder / (row.get("file") or "").strip()
        reason = ("bad_age" if ages is None else "bad_gender" if gender is None else
                  "bad_race" if race == UNKNOWN else "missing_file" if not path.is_file() else None)
        if reason:
            skipped[reason] += 1
            continue
        low, high = ages
        records.append(Record(str(path), low if low == high else UNKNOWN, gender, race, source="fairface",
                              split="test" if part == "val" else "", age_low=low, age_high=high))
    report = {"rows": len(rows), "image_dir": str(folder), "skipped": skipped, "kept": len(records)}
    if sum(skipped.values()):
        log.warning("FairFace %s: skipped %s of %d rows", part, skipped, len(rows))
    return records, report


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
    if (source / FAIRFACE_CSV.format(part="train")).exists():
        return "fairface"
    if (source / "list_attr_celeba.txt").exists():
        return "celeba"
    if any(p.is_dir() and p.name.lower() in _CLASS_NAMES for p in source.rglob("*")):
        return "folder"
    return "utkface"


def load_records(sources: list[str | Path], cache_dir: Path) -> tuple[list[Record], dict]:
    """Read every data source (layout detected per source) -> (records, report). UTKFace is deduplicated.

    Each report["sources"] entry names the folder its image paths start from ("root"). FairFace: the train
    csv only; its official validation set is for evaluation and never read here.
    """
    all_records, report = [], {"sources": []}
    for source in map(Path, sources):
        if not source.exists():
            raise FileNotFoundError(f"data source not found: {source}")
        layout = detect_layout(source)
        entry = {"path": str(source), "layout": layout, "root": str(source)}
        if layout == "utkface":
            folder = extract_archive(source, cache_dir) if source.is_file() else source
            entry["root"] = str(folder)
            records, bad = scan_utkface(folder)
            records, entry["dedupe"] = dedupe(records)
            entry["unparseable_names"] = bad
        elif layout == "fairface":
            records, entry["fairface"] = scan_fairface(source, "train")
            entry["root"] = entry["fairface"]["image_dir"]
        elif layout == "celeba":
            records = scan_celeba(source)
        else:
            records = scan_class_folders(source)
        entry["records"] = len(records)
        report["sources"].append(entry)
        all_records += records
    return all_records, report


# ---------------------------------------------------------------------------------------------- split

SOURCE_FRACTIONS = {"fairface": (0.9, 0.1, 0.0)}  # FairFace's test set is its official validation set


def cap_per_source(records: list[Record], cap: int, split: str = "train", seed: int = 0) -> list[Record]:
    """The records with each source's `split` cut to a seeded random `cap` (others untouched, order kept).
    A CPU-sized run on two sources: FairFace's 36k training faces cut to UTKFace's ~16k, or both to less."""
    by_source: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        if r.split == split:
            by_source[r.source].append(i)
    dropped = set()
    for source in sorted(by_source):
        rows = by_source[source]
        if len(rows) > cap:
            kept = set(random.Random(f"{seed}-{source}").sample(rows, cap))
            dropped.update(i for i in rows if i not in kept)
    return [r for i, r in enumerate(records) if i not in dropped]


def split_records(records: list[Record], seed: int = 0, fractions=(0.7, 0.15, 0.15),
                  source_fractions: dict | None = None) -> list[Record]:
    """Assign train/val/test, stratified by source, gender and age band, deterministic for a seed.

    Records whose split is fixed by their dataset's layout keep it. Within each stratum the order is
    shuffled by a seeded RNG after sorting by path, so the result does not depend on input order. Each
    source draws from its own RNG, so adding a source never changes another's split. `source_fractions`
    overrides `fractions` per source (default SOURCE_FRACTIONS: FairFace train rows go to train/val only).
    """
    source_fractions = SOURCE_FRACTIONS if source_fractions is None else source_fractions
    strata: dict[tuple, list[Record]] = defaultdict(list)
    for r in records:
        if not r.split:
            strata[(r.source, r.gender, r.band)].append(r)
    rngs: dict[str, random.Random] = {}
    for key in sorted(strata):
        rng = rngs.setdefault(key[0], random.Random(seed))
        train, val, _ = source_fractions.get(key[0], fractions)
        group = sorted(strata[key], key=lambda r: r.path)
        rng.shuffle(group)
        n_train = round(len(group) * train)
        n_val = round(len(group) * (train + val)) - n_train
        for i, r in enumerate(group):
            r.split = "train" if i < n_train else "val" if i < n_train + n_val else "test"
    return records


CSV_FIELDS = [f.name for f in fields(Record)]
RANGE_FIELDS = ("age_low", "age_high")


def write_split_csv(records: list[Record], path: Path, root: Path | None = None) -> None:
    """The split as CSV (paths relative to `root` when given, so the file is portable).

    The age_low/age_high columns are written only when some record has a range label: a split of exact
    ages stays byte-identical to the format published before ranges existed (assets/models/split.csv)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = CSV_FIELDS if any(r.has_range for r in records) else \
        [c for c in CSV_FIELDS if c not in RANGE_FIELDS]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
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
    """split.csv -> records; files without age_low/age_high columns get them from the exact age."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))

    def resolve(p: str) -> str:
        return str(root / p) if root and not Path(p).is_absolute() else p

    return [Record(path=resolve(row["path"]), age=int(row["age"]), gender=int(row["gender"]),
                   race=int(row["race"]), source=row["source"], split=row["split"],
                   age_low=int(row.get("age_low") or UNKNOWN), age_high=int(row.get("age_high") or UNKNOWN))
            for row in rows]
