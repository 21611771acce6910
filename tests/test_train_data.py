"""UTKFace and FairFace labels, deduplication before splitting, the split, other layouts, corrupt images,
the range-label loss and the balanced sampler."""
from __future__ import annotations

import logging
import os
import shutil
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from model.age import AGE_BINS, MAX_AGE
from synthetic import face_image, make_fairface_folder, make_utkface_folder
from train.data import (RACES, UNKNOWN, Record, age_band, cap_per_source, dedupe, detect_layout, in_age_range,
                        load_records, parse_age_range, parse_utkface_name, read_split_csv, scan_celeba, scan_fairface,
                        scan_utkface, split_records, write_split_csv)
from train.images import load_images, read_face
from train.losses import interval_nll, multitask_loss, range_spread_loss
from train.sampler import BalancedSampler, cell_weights


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
    # a fresh copy of the same archive (another path, a new time: a new machine) reuses the extraction,
    # so the image caches keyed by the extracted files' stamps stay valid
    copy = tmp_path / "elsewhere" / "UTKFace.tar.gz"
    copy.parent.mkdir()
    shutil.copy(archive, copy)
    assert [r.path for r in load_records([copy], tmp_path / "cache")[0]] == [r.path for r in records]
    assert len(list((tmp_path / "cache").glob("*/.extracted"))) == 1
    with tarfile.open(copy, "w:gz") as tar:  # other contents: extracted apart
        tar.add(tmp_path / "src" / "UTKFace" / Path(records[0].path).name, arcname="UTKFace/one.jpg")
    load_records([copy], tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("*/.extracted"))) == 2


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


# ---------------------------------------------------------------------------------------------- FairFace

SHIPPED_SPLIT = Path(__file__).resolve().parents[1] / "assets" / "models" / "split.csv"


@pytest.mark.parametrize("text, expected", [
    ("0-2", (0, 2)), ("03-Sep", (3, 9)), ("3-9", (3, 9)), ("Oct-19", (10, 19)), ("10-19", (10, 19)),
    ("60-69", (60, 69)), ("more than 70", (70, MAX_AGE)), ("70+", (70, MAX_AGE)), (" 20-29 ", (20, 29)),
    ("", None), (None, None), ("adult", None), ("29-20", None), ("20-29-39", None), ("Foo-19", None),
])
def test_fairface_age_labels(text, expected):
    assert parse_age_range(text) == expected


def test_race_indices_keep_utkface_and_add_fairface_groups():
    assert RACES[:5] == ("White", "Black", "Asian", "Indian", "Others")
    assert RACES[5:] == ("Latino_Hispanic", "East Asian", "Southeast Asian", "Middle Eastern")
    assert parse_utkface_name("30_0_5_2017.jpg.chip.jpg") is None  # UTKFace still has five groups only


def test_scan_fairface_reads_ranges_and_counts_bad_rows_by_reason(tmp_path):
    folder = make_fairface_folder(tmp_path, n=30, n_val=5)
    csv_path = folder / "fairface_label_train.csv"
    lines = csv_path.read_text().splitlines()
    lines[1] = "train/1.jpg,03-Sep,Female,Indian,TRUE"  # a known row to check the labels of
    lines[2] = "train/2.jpg,more than 70,Male,Middle Eastern,FALSE"
    lines += ["train/3.jpg,adult,Male,White,TRUE", "train/4.jpg,,Male,White,TRUE",  # bad age x2
              "train/5.jpg,20-29,X,White,TRUE",  # bad gender
              "train/6.jpg,20-29,Female,Martian,TRUE", "train/7.jpg,20-29,Female,Asian,TRUE",  # bad race x2
              "train/999.jpg,20-29,Female,White,TRUE",  # missing file
              "train/8.jpg,20-29"]  # short row: no gender
    csv_path.write_text("\n".join(lines) + "\n")
    records, report = scan_fairface(folder)
    assert report["skipped"] == {"bad_age": 2, "bad_gender": 2, "bad_race": 2, "missing_file": 1}
    assert report["rows"] == 37 and report["kept"] == len(records) == 30
    first, second = records[0], records[1]
    assert (first.age, first.age_low, first.age_high, first.gender, first.race) == (UNKNOWN, 3, 9, 1, 3)
    assert (first.band, first.has_range, first.source, first.split) == ("3-9", True, "fairface", "")
    assert Path(first.path) == folder / "fair_face" / "train" / "1.jpg"
    assert (second.age_low, second.age_high, second.band) == (70, MAX_AGE, "70+")
    assert second.race == RACES.index("Middle Eastern")
    val, _ = scan_fairface(folder, "val")
    assert len(val) == 5 and {r.split for r in val} == {"test"}  # FairFace val: evaluation only


@pytest.mark.parametrize("image_dir", [".", "fairface-img-margin025-trainval"])
def test_fairface_official_layouts(tmp_path, image_dir):
    folder = make_fairface_folder(tmp_path, n=6, n_val=2, image_dir=image_dir)
    records, report = scan_fairface(folder)
    assert len(records) == 6 and report["skipped"]["missing_file"] == 0
    assert all(Path(r.path).is_file() for r in records)


def test_load_records_reads_the_fairface_train_csv_only(tmp_path):
    folder = make_fairface_folder(tmp_path, n=12, n_val=8)
    assert detect_layout(folder) == "fairface"
    records, report = load_records([folder], tmp_path / "cache")
    assert len(records) == 12 and all("/train/" in r.path for r in records)
    entry = report["sources"][0]
    assert entry["layout"] == "fairface" and entry["records"] == 12 and entry["root"] == str(folder / "fair_face")


def test_unreadable_fairface_images_are_skipped(tmp_path):
    folder = make_fairface_folder(tmp_path, n=8, n_val=1)
    (folder / "fair_face" / "train" / "2.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    records, _ = scan_fairface(folder)
    images, kept = load_images(records, 32)
    assert len(records) == 8 and len(kept) == 7 and images.shape == (7, 3, 32, 32)


def test_range_records_have_their_band_and_exact_ones_their_age():
    exact = Record("a.jpg", 34, 0, 0)
    assert (exact.age_low, exact.age_high, exact.band, exact.has_range) == (34, 34, "30-39", False)
    unknown = Record("b.jpg", UNKNOWN, 1, source="celeba")
    assert (unknown.age_low, unknown.age_high, unknown.band) == (UNKNOWN, UNKNOWN, "unknown")
    assert [age_band(low, high) for low, high in ((0, 2), (3, 9), (70, MAX_AGE), (25, 34))] == \
        ["0-2", "3-9", "70+", "unknown"]


def test_split_keeps_fairface_out_of_test_and_leaves_utkface_alone(tmp_path):
    utk, _ = scan_utkface(make_utkface_folder(tmp_path, n=300))
    ff, _ = scan_fairface(make_fairface_folder(tmp_path, n=400, n_val=1))
    alone = {r.path: r.split for r in split_records([Record(**vars(r)) for r in utk], seed=4)}
    mixed = split_records([Record(**vars(r)) for r in utk + ff], seed=4)
    assert {r.path: r.split for r in mixed if r.source == "utkface"} == alone  # adding a source changes nothing
    ff_counts = Counter(r.split for r in mixed if r.source == "fairface")
    assert ff_counts["test"] == 0 and abs(ff_counts["val"] / 400 - 0.10) < 0.03


def test_cap_per_source_cuts_only_the_bigger_sources_training_split(tmp_path):
    utk, _ = scan_utkface(make_utkface_folder(tmp_path, n=300))
    ff, _ = scan_fairface(make_fairface_folder(tmp_path, n=400, n_val=1))
    records = split_records(utk + ff, seed=4)
    before = Counter((r.source, r.split) for r in records)
    assert before[("utkface", "train")] < 250 < before[("fairface", "train")]
    capped = cap_per_source(records, 250, "train", seed=1)
    after = Counter((r.source, r.split) for r in capped)
    assert after[("fairface", "train")] == 250  # cut to the cap
    others = Counter({("fairface", "train"): 250})
    assert after - others == before - Counter({("fairface", "train"): before[("fairface", "train")]})  # rest kept
    assert [r for r in records if r in capped] == capped  # a subset, in the input order
    again = cap_per_source(records, 250, "train", seed=1)
    other = cap_per_source(records, 250, "train", seed=2)
    assert [r.path for r in again] == [r.path for r in capped] != [r.path for r in other]


def test_old_split_csv_reads_with_ranges_from_age(tmp_path):
    old = "path,age,gender,race,source,split\r\n30_0_0_a.jpg,30,0,0,utkface,train\r\n4_1_2_b.jpg,4,1,2,utkface,test\r\n"
    (tmp_path / "old.csv").write_bytes(old.encode())  # the format published before range labels
    records = read_split_csv(tmp_path / "old.csv")
    assert [(r.age_low, r.age_high) for r in records] == [(30, 30), (4, 4)]
    write_split_csv(records, tmp_path / "split.csv")
    assert (tmp_path / "split.csv").read_bytes() == old.encode()  # exact ages only: still the same format


def test_shipped_split_reads_and_writes_back_unchanged(tmp_path):
    records = read_split_csv(SHIPPED_SPLIT)
    utk = [r for r in records if r.source == "utkface"]
    assert len(utk) == 23059 and all(r.age_low == r.age_high == r.age for r in utk)
    write_split_csv(records, tmp_path / "split.csv")
    assert (tmp_path / "split.csv").read_bytes() == SHIPPED_SPLIT.read_bytes()


def test_split_csv_round_trip_with_ranges(tmp_path):
    folder = make_fairface_folder(tmp_path, n=20, n_val=1)
    records = split_records(scan_fairface(folder)[0] + [Record(str(folder / "x.jpg"), 30, 1, 0)], seed=0)
    write_split_csv(records, tmp_path / "split.csv", root=folder)
    assert (tmp_path / "split.csv").read_text().splitlines()[0].endswith("age_low,age_high")
    back = read_split_csv(tmp_path / "split.csv", root=folder)
    assert [vars(r) for r in back] == [vars(r) for r in records]


def test_read_face_centre_crop(tmp_path):
    image = np.zeros((100, 100, 3), dtype=np.uint8)
    image[20:80, 20:80] = 255  # white square on the central 60%
    Image.fromarray(image).save(tmp_path / "square.png")
    whole, cropped = read_face(str(tmp_path / "square.png"), 50), read_face(str(tmp_path / "square.png"), 50, crop=0.6)
    assert whole.float().mean() / 255 == pytest.approx(0.36, abs=0.02)
    assert cropped.float().mean() / 255 > 0.97


# ---------------------------------------------------------------------------------------------- losses

def age_output(peak: float, n: int = 1, width: float = 3.0) -> torch.Tensor:
    """Network outputs [n, 1 + AGE_BINS]: gender logit 0 and an age distribution peaked at `peak`."""
    years = torch.arange(AGE_BINS, dtype=torch.float32)
    return torch.cat([torch.zeros(n, 1), (-0.5 * ((years - peak) / width) ** 2).expand(n, -1)], 1)


def test_range_loss_falls_as_mass_moves_inside_the_range():
    low, high = torch.tensor([20]), torch.tensor([29])
    gender, age = torch.tensor([0]), torch.tensor([UNKNOWN])
    losses = [multitask_loss(age_output(peak), gender, age, age_low=low, age_high=high)[1]["loss_age"]
              for peak in (60, 45, 35, 30, 25)]
    assert all(a > b for a, b in zip(losses, losses[1:]))
    assert losses[-1] < 0.15 and losses[0] > 10  # ~90% of the mass inside vs almost none
    inside = age_output(25)[:, 1:].softmax(-1)[0, 20:30].sum()
    assert float(interval_nll(age_output(25)[:, 1:], low, high)) == pytest.approx(-float(inside.log()), rel=1e-5)
    # 70+ up to MAX_AGE (and beyond, clamped): mass at 85 is inside
    assert float(interval_nll(age_output(85)[:, 1:], torch.tensor([70]), torch.tensor([MAX_AGE + 20]))) < 0.01


def test_range_spread_prefers_mass_over_the_range_to_mass_piled_at_one_end():
    """The interval likelihood cannot tell a 10-19 face predicted at 19 from one predicted at 14.5; the spread
    term can, and its values are the cross-entropy against a uniform 10..19 (worked by hand below)."""
    low, high = torch.tensor([10]), torch.tensor([19])
    flat = torch.zeros(1, AGE_BINS)  # uniform over 0..100: -log(1/101) on every year of the range
    assert float(range_spread_loss(flat, low, high)) == pytest.approx(np.log(AGE_BINS), rel=1e-6)
    over_range = torch.full((1, AGE_BINS), -1e4)
    over_range[0, 10:20] = 0  # uniform over 10..19 exactly: log(10), the least possible value
    assert float(range_spread_loss(over_range, low, high)) == pytest.approx(np.log(10), rel=1e-6)
    edge, centre = age_output(18.5, width=0.5), age_output(14.5, width=2.0)  # both ~99% inside the range
    gender, age = torch.tensor([0]), torch.tensor([UNKNOWN])
    plain = [multitask_loss(o, gender, age, age_low=low, age_high=high)[1]["loss_age"] for o in (edge, centre)]
    spread = [multitask_loss(o, gender, age, age_low=low, age_high=high, range_spread=1.0)[1]["loss_age"]
              for o in (edge, centre)]
    assert abs(plain[0] - plain[1]) < 0.01  # the interval likelihood: no preference (both ~0.003)
    assert spread[0] > spread[1] + 1.0  # the spread term: the centred prediction is clearly better
    # exact ages are untouched by it
    exact = torch.tensor([30])
    assert multitask_loss(centre, gender, exact, range_spread=1.0)[1] == multitask_loss(centre, gender, exact)[1]


def test_exact_age_loss_is_unchanged_by_range_support():
    torch.manual_seed(0)
    out = torch.randn(6, 1 + AGE_BINS)
    gender, age = torch.tensor([0, 1, 0, 1, 1, 0]), torch.tensor([3, 25, 40, 61, 88, UNKNOWN])
    plain, parts = multitask_loss(out, gender, age)
    with_bounds, _ = multitask_loss(out, gender, age, age_low=age, age_high=age)
    # today's formula, written out: Gaussian-target cross-entropy + 0.05 x L1 of the expected age, x 0.3
    from model.age import expected_age, soft_age_targets
    logits, known = out[:5, 1:], age[:5]
    ce = -(soft_age_targets(known) * logits.log_softmax(-1)).sum(-1).mean()
    l1 = (expected_age(logits) - known.float()).abs().mean()
    bce = torch.nn.functional.binary_cross_entropy_with_logits(out[:, 0], gender.float())
    assert float(plain) == pytest.approx(float(bce + 0.3 * (ce + 0.05 * l1)), rel=1e-6)
    assert float(with_bounds) == float(plain)


def test_mixed_batch_averages_exact_and_range_faces():
    out = torch.cat([age_output(30), age_output(50)])
    gender, age = torch.tensor([0, 1]), torch.tensor([30, UNKNOWN])
    low, high = torch.tensor([30, 40]), torch.tensor([30, 49])
    _, mixed = multitask_loss(out, gender, age, age_low=low, age_high=high)
    _, exact = multitask_loss(out[:1], gender[:1], age[:1])
    ranged = float(interval_nll(out[1:, 1:], low[1:], high[1:]))
    assert mixed["loss_age"] == pytest.approx((exact["loss_age"] + ranged) / 2, rel=1e-5)


def test_age_range_hits_count_whole_years():
    pred = torch.tensor([19.4, 19.6, 29.4, 29.6, 85.0])
    low, high = torch.tensor([20, 20, 20, 20, 70]), torch.tensor([29, 29, 29, 29, MAX_AGE])
    assert in_age_range(pred, low, high).tolist() == [False, True, True, False, True]


# ---------------------------------------------------------------------------------------------- sampler

def test_balanced_sampler_flattens_cells_and_is_seeded():
    cells = ["big"] * 900 + ["mid"] * 90 + ["rare"] * 10  # input shares 90% / 9% / 1%
    sampler = BalancedSampler(cells, power=0.5, seed=3)
    order = sampler.epoch_order(0)
    assert len(order) == 1000 and order.min() >= 0 and order.max() < 1000
    share = Counter(cells[i] for i in order.tolist())
    # expected with power 0.5: 30 : 9.5 : 3.2 -> 70% / 22% / 7.4%; the max/min ratio falls from 90 to ~9.5
    assert abs(share["big"] / 1000 - 0.70) < 0.05 and abs(share["rare"] / 1000 - 0.074) < 0.025
    assert share["big"] / share["rare"] < 16
    assert torch.equal(order, BalancedSampler(cells, power=0.5, seed=3).epoch_order(0))  # same seed, same order
    assert not torch.equal(order, sampler.epoch_order(1))  # a new order each epoch
    assert not torch.equal(order, BalancedSampler(cells, power=0.5, seed=4).epoch_order(0))
    flat = Counter(cells[i] for i in BalancedSampler(cells, power=1.0).epoch_order(0).tolist())
    assert all(abs(flat[c] / 1000 - 1 / 3) < 0.05 for c in ("big", "mid", "rare"))  # full inverse frequency
    assert torch.allclose(cell_weights(cells, 0.0), torch.ones(1000, dtype=torch.float64))


def test_female_weight_per_face_weighs_each_womans_gender_loss():
    """A weight per face scales that face's term if she is a woman and leaves men's alone (pos_weight)."""
    torch.manual_seed(0)
    out = torch.randn(4, 1 + AGE_BINS)
    gender, age = torch.tensor([1, 1, 0, 0]), torch.tensor([30, 40, 50, 60])
    weight = torch.tensor([2.0, 1.0, 3.0, 1.0])
    got = multitask_loss(out, gender, age, female_weight=weight)[1]["loss_gender"]
    per_face = torch.nn.functional.binary_cross_entropy_with_logits(out[:, 0], gender.float(), reduction="none")
    assert got == pytest.approx(float((per_face * torch.tensor([2.0, 1.0, 1.0, 1.0])).mean()), rel=1e-6)
    assert got != pytest.approx(multitask_loss(out, gender, age)[1]["loss_gender"], rel=1e-3)


def test_shared_data_defaults_follow_face_shared_dir(tmp_path):
    """../shared (or $FACE_SHARED_DIR, as this process has it) is the home of data and weights; another
    $FACE_SHARED_DIR moves all of them at once: train's data and VGG16 weights, the bench photo, the annotated
    photos (read at import, like every default)."""
    import subprocess
    import sys

    import demo.bench
    import demo.detect_eval
    import train.train
    from model.paths import PROJECT_ROOT, SHARED_DIR
    default = [train.train.DEFAULT_DATA, train.train.DEFAULT_VGG_WEIGHTS, demo.bench.FACE_PHOTO, demo.detect_eval.WILD]
    code = ("import train.train as t, demo.bench as b, demo.detect_eval as d; "
            "print(t.DEFAULT_DATA, t.DEFAULT_VGG_WEIGHTS, b.FACE_PHOTO, d.WILD, sep='\\n')")
    moved = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True,
                           env={**os.environ, "FACE_SHARED_DIR": str(tmp_path)}).stdout.split()
    assert all(path.exists() for path in default)  # what CI has beside the project
    assert [Path(p).relative_to(tmp_path) for p in moved] == [p.relative_to(SHARED_DIR) for p in default]
