"""train.bundle's shared split: bundled models agree on every source they both list; a new source is added."""
from __future__ import annotations

import pytest

import json

from train.bundle import merged_split, portable_split
from train.data import Record, read_split_csv, write_split_csv


def utk(name: str, split: str) -> Record:
    return Record(f"{name}.jpg.chip.jpg", 30, 0, 0, source="utkface", split=split)


def fairface(name: str, split: str) -> Record:
    return Record(f"train/{name}.jpg", -1, 1, 5, source="fairface", split=split, age_low=20, age_high=29)


UTK = [utk("30_0_0_a", "train"), utk("31_0_0_b", "val"), utk("32_0_0_c", "test")]


def test_a_run_with_the_same_utkface_rows_adds_its_fairface_rows(tmp_path):
    write_split_csv(UTK, tmp_path / "shared.csv")
    run = list(reversed(UTK)) + [fairface("1", "train"), fairface("2", "val")]
    merged = merged_split(tmp_path / "shared.csv", run)
    assert [(r.source, r.path, r.split) for r in merged] == \
        [(r.source, r.path, r.split) for r in UTK] + [("fairface", "train/1.jpg", "train"),
                                                      ("fairface", "train/2.jpg", "val")]
    assert (merged[-1].age_low, merged[-1].age_high) == (20, 29)


def test_a_utkface_only_run_keeps_the_shared_fairface_rows(tmp_path):
    both = UTK + [fairface("1", "train")]
    write_split_csv(both, tmp_path / "shared.csv")
    assert len(merged_split(tmp_path / "shared.csv", UTK)) == 4


@pytest.mark.parametrize("change", ["split", "row"])
def test_a_run_with_other_utkface_rows_is_refused(tmp_path, change):
    write_split_csv(UTK, tmp_path / "shared.csv")
    other = [utk("30_0_0_a", "val" if change == "split" else "train"), UTK[1],
             UTK[2] if change == "split" else utk("33_0_0_d", "test")]
    with pytest.raises(SystemExit, match="differs .* on utkface"):
        merged_split(tmp_path / "shared.csv", other)
    assert read_split_csv(tmp_path / "shared.csv")[0].split == "train"  # untouched


def test_the_first_bundle_takes_the_runs_split(tmp_path):
    assert len(merged_split(tmp_path / "missing.csv", UTK)) == 3


def test_a_runs_paths_become_relative_to_each_source(tmp_path):
    """A run lists paths under the folder its sources share (the machine's cache); shipped rows are relative
    to each source's own folder, so another machine's run matches them."""
    cache = tmp_path / "cache"
    run = tmp_path / "run"
    run.mkdir()
    (run / "data_report.json").write_text(json.dumps({"split_root": str(cache), "sources": [
        {"layout": "utkface", "root": str(cache / "UTKFace-1a2b" / "UTKFace")},
        {"layout": "fairface", "root": str(cache / "fairface" / "fair_face")}]}))
    write_split_csv([Record(str(cache / "UTKFace-1a2b" / "UTKFace" / "30_0_0_a.jpg.chip.jpg"), 30, 0, 0,
                            source="utkface", split="train"),
                     Record(str(cache / "fairface" / "fair_face" / "train" / "1.jpg"), -1, 1, 5, source="fairface",
                            split="val", age_low=20, age_high=29)], run / "split.csv", root=cache)
    assert (run / "split.csv").read_text().splitlines()[1].startswith("UTKFace-1a2b/UTKFace/30_0_0_a")
    assert [(r.source, r.path) for r in portable_split(run)] == [("utkface", "30_0_0_a.jpg.chip.jpg"),
                                                                ("fairface", "train/1.jpg")]


def test_new_weights_for_a_bundled_model_keep_its_training_files(tmp_path):
    """--model/--eval: a recalibrated model (here a warp of +5 y) replaces the weights and the evaluation,
    and the training files already there stay."""
    import torch

    from model.age import AGE_BINS, identity_warp
    from model.hub import load_model
    from model.nets import ScratchNet
    from train.bundle import EVAL_FILES, main

    model = ScratchNet(image_size=32, widths=(4, 8), hidden=8)
    model.age_warp.copy_((identity_warp() + 5).clamp(max=AGE_BINS - 1))
    model.save_pretrained(tmp_path / "model")
    (tmp_path / "eval").mkdir()
    for name in EVAL_FILES:
        (tmp_path / "eval" / name).write_text(f"new {name}")
    dest = tmp_path / "bundled"
    dest.mkdir()
    (dest / "train_config.json").write_text('{"epochs": 2}')
    (dest / "train_metrics.json").write_text('{"epochs_run": 2, "age_temperature": 1.2, "gender_offset": 0.0, '
                                             '"age_warp": {"knots": [0, 100]}}')
    model.age_temperature.fill_(0.75)  # refitted after training, as train.fit_age_warp does
    model.save_pretrained(tmp_path / "model")
    with pytest.raises(SystemExit):
        main(["--model", str(tmp_path / "model"), "--to", str(dest)])  # no --eval
    main(["--model", str(tmp_path / "model"), "--eval", str(tmp_path / "eval"), "--to", str(dest)])
    assert torch.equal(load_model(str(dest)).age_warp, model.age_warp)
    assert (dest / "eval" / "report.md").read_text() == "new report.md"
    assert (dest / "train_config.json").read_text() == '{"epochs": 2}'
    # how it trained stays; the calibration it states is now the shipped weights', the old one kept apart
    metrics = json.loads((dest / "train_metrics.json").read_text())
    assert metrics["epochs_run"] == 2 and metrics["age_temperature"] == 0.75 and "age_warp" not in metrics
    assert metrics["calibration_when_trained"] == {"gender_temperature": None, "gender_offset": 0.0,
                                                   "age_temperature": 1.2, "age_warp": {"knots": [0, 100]}}
    main(["--model", str(tmp_path / "model"), "--eval", str(tmp_path / "eval"), "--to", str(dest)])
    assert json.loads((dest / "train_metrics.json").read_text()) == metrics  # shipping it again changes nothing


def test_an_ensemble_ships_with_its_evaluation_and_no_training_files(tmp_path):
    """--model/--eval with an ensemble (model/ensemble.py): nothing was bundled at --to before and it has no
    training files; its config, calibration and evaluation ship, and it loads with its members."""
    from model.ensemble import Ensemble
    from model.hub import load_model
    from model.nets import ScratchNet
    from train.bundle import EVAL_FILES, main

    members = [ScratchNet(image_size=32, widths=(4, 8), hidden=8), ScratchNet(image_size=24, widths=(4, 8), hidden=8)]
    for name, net in zip(("a", "b"), members):
        net.save_pretrained(tmp_path / name)
    ensemble = Ensemble(members, specs=[str(tmp_path / "a"), str(tmp_path / "b")])
    ensemble.gender_temperature.fill_(0.8)
    ensemble.save_pretrained(tmp_path / "ens")
    (tmp_path / "eval").mkdir()
    for name in EVAL_FILES:
        (tmp_path / "eval" / name).write_text(f"new {name}")
    with pytest.raises(SystemExit):  # a network needs a bundled model at --to to keep its training files
        main(["--model", str(tmp_path / "a"), "--eval", str(tmp_path / "eval"), "--to", str(tmp_path / "net")])
    main(["--model", str(tmp_path / "ens"), "--eval", str(tmp_path / "eval"), "--to", str(tmp_path / "shipped")])
    shipped = load_model(str(tmp_path / "shipped"))
    assert isinstance(shipped, Ensemble) and float(shipped.gender_temperature) == pytest.approx(0.8)
    assert (tmp_path / "shipped" / "eval" / "report.md").read_text() == "new report.md"
    assert not (tmp_path / "shipped" / "train_metrics.json").exists()
