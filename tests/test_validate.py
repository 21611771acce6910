"""train.validate: models scored on a run's validation rows, per source, the way training scored them."""
from __future__ import annotations

import json
import shutil

import pytest

from synthetic import make_fairface_folder, make_utkface_folder
from train.train import parse_args, train
from train.validate import main, validate


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("validate")
    utk, fairface = make_utkface_folder(tmp / "utk", n=240), make_fairface_folder(tmp / "ff", n=200, n_val=30)
    return train(parse_args(["--data", str(utk), str(fairface), "--out", str(tmp / "run"), "--image-size", "32",
                             "--epochs", "2", "--batch-size", "32", "--lr", "3e-3", "--cache-dir", str(tmp / "cache")]))


def test_each_source_is_scored_on_the_runs_validation_rows(run):
    spec = str(run / "model")
    results = validate(run, [spec])[spec]
    counts = json.loads((run / "data_report.json").read_text())["counts"]["val"]["by_source"]
    assert {source: r["n"] for source, r in results.items()} == {source: c["n"] for source, c in counts.items()}
    assert "age_mae" in results["utkface"] and "age_range_accuracy" not in results["utkface"]  # exact ages
    assert "age_range_accuracy" in results["fairface"] and "age_mae" not in results["fairface"]  # ranges
    # the same faces and the same model as training's own validation of its best epoch
    best = json.loads((run / "metrics.json").read_text())["val_at_best"]["gender_acc"]
    combined = sum(r["gender_accuracy"] * r["n"] for r in results.values()) / sum(r["n"] for r in results.values())
    assert combined == pytest.approx(best, abs=1e-6)


def test_the_command_prints_a_line_per_model_and_source(run, capsys, tmp_path):
    shutil.copytree(run / "model", tmp_path / "other")
    main(["--run", str(run), "--model", str(run / "model"), "--model", str(tmp_path / "other")])
    lines = [line for line in capsys.readouterr().out.splitlines() if not line.startswith("{")]
    assert len(lines) == 4 and sum("utkface" in line and "age MAE" in line for line in lines) == 2
    assert sum("fairface" in line and "age range" in line for line in lines) == 2


def test_missing_validation_images_are_one_clear_message(run, tmp_path):
    copy = tmp_path / "run"
    copy.mkdir()
    for name in ("data_report.json", "split.csv"):
        text = (run / name).read_text()
        (copy / name).write_text(text.replace(str(run.parent), str(tmp_path / "gone")))
    with pytest.raises(SystemExit, match="validation images of .* are missing"):
        validate(copy, [str(run / "model")])
