"""UTKFace labels, deduplication before splitting, the split, other layouts, corrupt images."""
from __future__ import annotations

import logging
import shutil
import tarfile
from collections import Counter

import pytest

from synthetic import face_image, make_utkface_folder
from train.data import (UNKNOWN, Record, age_band, dedupe, load_records, parse_utkface_name, read_split_csv,
                        scan_celeba, scan_utkface, split_records, write_split_csv)
from train.images import load_images


@pytest.mark.parametrize("name, expected", [
    ("100_0_0_20170112213500903.jpg.chip.jpg", (100, 0, 0)),
    ("1_1_4_20161221193016140.jpg.chip.jpg", (1, 1, 4)),
    # the real set's malformed names, from ../shared/README.md
    ("24_0_1_20170116220224657 .jpg.chip.jpg", (24, 0, 1)),
    ("55_0_0_20170116232725357jpg.chip.jpg", (55, 0, 0)),
    ("39_1_20170116174525125.jpg.chip.jpg", (39, 1, UNKNOWN)),
    ("61_1_20170109142408075.jpg.chip.jpg", (61, 1, UNKNOWN)),
    ("61_1_20170109150557335.jpg.chip.jpg", (61, 1, UNKNOWN)),
])
def test_parse_utkface_names(name, expected):
    assert parse_utkface_name(name) == expected


@pytest.mark.parametrize("name", ["readme.txt.jpg", "x_0_0_2017.jpg", "0_0_0_2017.jpg.chip.jpg",
                                  "30_2_0_2017.jpg.chip.jpg", "30_0_7_2017.jpg.chip.jpg", "200_0_0_1.jpg"])
def test_unusable_names_are_rejected(name):
    assert parse_utkface_name(name) is None


def test_scan_reports_unparseable_names(tmp_path, caplog):
    folder = make_utkface_folder(tmp_path, n=5)
    face_image(30, 0, 1).save(folder / "not_a_label.jpg")
    with caplog.at_level(logging.WARNING):
        records, bad = scan_utkface(folder)
    assert len(records) == 5 and bad == ["not_a_label.jpg"]
    assert "could not be parsed" in caplog.text


def test_dedupe_keeps_one_copy_and_drops_conflicts(tmp_path):
    folder = make_utkface_folder(tmp_path, n=10)
    originals = sorted(folder.iterdir())
    # same bytes, same labels (another timestamp): one copy must go
    shutil.copy(originals[0], folder / (originals[0].name.replace("_2017", "_2018")))
    # same bytes, conflicting labels: the whole group must go
    age, gender, race = parse_utkface_name(originals[1].name)
    shutil.copy(originals[1], folder / f"{age + 7}_{gender}_{race}_20990101000000000.jpg.chip.jpg")
    records, _ = scan_utkface(folder)
    kept, report = dedupe(records)
    assert len(records) == 12 and len(kept) == 9
    assert report["duplicate_groups"] == 2 and report["conflicting_groups"] == 1
    assert report["dropped_conflicting_files"] == 2 and report["dropped_redundant_copies"] == 1
    assert not any(originals[1].name in r.path for r in kept)


def test_duplicates_cannot_leak_across_splits(tmp_path):
    folder = make_utkface_folder(tmp_path, n=60)
    for i, path in enumerate(sorted(folder.iterdir())[:20]):  # 20 exact copies under new names
        shutil.copy(path, folder / path.name.replace("_2017", "_2019"))
    records, _ = load_records([folder], tmp_path / "cache")
    split_records(records, seed=3)
    from train.data import file_digest
    splits_per_image = Counter(file_digest(r.path) for r in records)
    assert len(records) == 60 and max(splits_per_image.values()) == 1


def test_split_is_deterministic_stratified_and_order_free(tmp_path):
    records, _ = scan_utkface(make_utkface_folder(tmp_path, n=400))
    first = {r.path: r.split for r in split_records([Record(**vars(r)) for r in records], seed=7)}
    again = {r.path: r.split for r in split_records([Record(**vars(r)) for r in reversed(records)], seed=7)}
    other = {r.path: r.split for r in split_records([Record(**vars(r)) for r in records], seed=8)}
    assert first == again and first != other
    counts = Counter(first.values())
    assert abs(counts["train"] / 400 - 0.70) < 0.03 and abs(counts["test"] / 400 - 0.15) < 0.03
    # stratified: each split has about the same share of women
    women = {s: sum(r.gender for r in records if first[r.path] == s) / counts[s] for s in counts}
    overall = sum(r.gender for r in records) / 400
    assert all(abs(share - overall) < 0.06 for share in women.values())


def test_split_csv_round_trip(tmp_path):
    folder = make_utkface_folder(tmp_path, n=20)
    records = split_records(scan_utkface(folder)[0], seed=0)
    write_split_csv(records, tmp_path / "split.csv", root=folder)
    assert "UTKFace" not in (tmp_path / "split.csv").read_text()  # portable: relative to the data folder
    back = read_split_csv(tmp_path / "split.csv", root=folder)
    assert [vars(r) for r in back] == [vars(r) for r in records]


def test_archive_is_extracted_once_into_the_cache(tmp_path):
    make_utkface_folder(tmp_path / "src", n=8)
    archive = tmp_path / "UTKFace.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / "UTKFace", arcname="UTKFace")
    records, report = load_records([archive], tmp_path / "cache")
    assert len(records) == 8 and report["sources"][0]["dedupe"]["kept"] == 8
    marker = next((tmp_path / "cache").glob("*/.extracted"))
    mtime = marker.stat().st_mtime_ns
    load_records([archive], tmp_path / "cache")
    assert marker.stat().st_mtime_ns == mtime


def test_celeba_layout(tmp_path):
    (tmp_path / "img_align_celeba").mkdir()
    (tmp_path / "list_attr_celeba.txt").write_text(
        "2\n5_o_Clock_Shadow Bald Male Young\n000001.jpg -1 -1 -1 1\n000002.jpg 1 -1 1 1\n")
    records = scan_celeba(tmp_path)
    assert [(r.gender, r.age, r.source) for r in records] == [(1, UNKNOWN, "celeba"), (0, UNKNOWN, "celeba")]
    assert records[0].path.endswith("img_align_celeba/000001.jpg")


def test_class_folder_layout_keeps_its_splits(tmp_path):
    for split, cls in [("Train", "Male"), ("Train", "Female"), ("Validation", "Female"), ("Test", "Male")]:
        (tmp_path / "Dataset" / split / cls).mkdir(parents=True)
        face_image(30, cls == "Female", 0).save(tmp_path / "Dataset" / split / cls / "a.jpg")
    records, report = load_records([tmp_path / "Dataset"], tmp_path / "cache")
    assert report["sources"][0]["layout"] == "folder"
    got = sorted((r.split, r.gender, r.age) for r in records)
    assert got == [("test", 0, UNKNOWN), ("train", 0, UNKNOWN), ("train", 1, UNKNOWN), ("val", 1, UNKNOWN)]
    split_records(records)
    assert sorted(r.split for r in records) == ["test", "train", "train", "val"]


def test_corrupt_images_are_skipped_with_a_count(tmp_path, caplog):
    folder = make_utkface_folder(tmp_path, n=6)
    (folder / "30_0_0_20170101000000001.jpg.chip.jpg").write_bytes(b"")  # zero bytes
    good = sorted(folder.iterdir())[0].read_bytes()
    (folder / "31_1_0_20170101000000002.jpg.chip.jpg").write_bytes(good[: len(good) // 3])  # truncated
    (folder / "32_1_0_20170101000000003.jpg.chip.jpg").write_text("not an image")
    records, _ = scan_utkface(folder)
    with caplog.at_level(logging.WARNING):
        images, kept = load_images(records, 32, cache_dir=tmp_path / "cache")
    assert len(records) == 9 and len(kept) == 6 and images.shape == (6, 3, 32, 32)
    assert "skipped 3 unreadable" in caplog.text
    cached, kept_again = load_images(records, 32, cache_dir=tmp_path / "cache")  # from the cache now
    assert (cached == images).all() and [r.path for r in kept_again] == [r.path for r in kept]


def test_age_bands():
    assert [age_band(a) for a in (1, 5, 19, 20, 69, 70, 116, UNKNOWN)] == \
        ["0-2", "3-9", "10-19", "20-29", "60-69", "70+", "70+", "unknown"]
