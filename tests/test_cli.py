"""python -m demo.cli on files and folders, bad files included."""
from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from demo import cli
from model.fast import float_precision

pytestmark = pytest.mark.usefixtures("torch_one_thread")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def folder(shared_dir, tmp_path):
    """Two photos, a negative, and two broken 'images'."""
    wild = shared_dir / "data" / "wild-faces"
    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    shutil.copy(wild / "2008_001322.jpg", images / "group.jpg")  # 3 faces
    shutil.copy(wild / "2008_001009.jpg", images / "sub" / "two.jpg")  # 2 faces
    shutil.copy(wild / "dogs.jpg", images / "dogs.jpg")  # none
    (images / "truncated.jpg").write_bytes((wild / "2008_001009.jpg").read_bytes()[:3000])
    (images / "empty.png").write_bytes(b"")
    (images / "readme.txt").write_text("not an image, and not picked up from a folder")
    return images


def test_folder_with_bad_files_json(folder, model_dir, capsys):
    code = cli.main([str(folder), "--model", str(model_dir)])
    out, err = capsys.readouterr()
    assert code == 1  # some files failed
    rows = json.loads(out)
    assert [(Path(r["file"]).name, r["face"]) for r in rows] == [
        ("group.jpg", 0), ("group.jpg", 1), ("group.jpg", 2), ("two.jpg", 0), ("two.jpg", 1)]
    for row in rows:
        assert {"file", "face", "x", "y", "w", "h", "p_female", "age", "age_low", "age_high", "det_score"} <= set(row)
        assert 0 <= row["p_female"] <= 1 and row["age_low"] <= row["age"] <= row["age_high"]
    assert "truncated.jpg: The image file is damaged or truncated" in err
    assert "empty.png: The file is empty" in err
    assert "dogs.jpg: No face found" in err
    assert "3 of 5 files processed, 2 failed" in err and "Traceback" not in err
    assert f"(scratch in {float_precision()})" in err  # what it ran in: the scratch CNN ships no int8 ranges


def test_csv_and_output_file(folder, model_dir, tmp_path, capsys):
    out_file = tmp_path / "faces.csv"
    code = cli.main([str(folder / "group.jpg"), "--format", "csv", "-o", str(out_file), "--model", str(model_dir)])
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out_file.read_text())))
    assert len(rows) == 3 and list(rows[0]) == cli.COLUMNS
    assert float(rows[0]["det_score"]) >= 0.5 and int(rows[0]["w"]) > 50


def test_age_distributions_in_json_and_csv(folder, model_dir, tmp_path, capsys):
    """--age-probs: each face's P(age) for 0-100 y, a list in JSON and columns age_p0 ... age_p100 in CSV; the
    same numbers both ways, summing to 1, their mean the age given."""
    photo = str(folder / "group.jpg")
    assert cli.main([photo, "--model", str(model_dir), "--age-probs"]) == 0
    faces = json.loads(capsys.readouterr().out)
    assert cli.main([photo, "--model", str(model_dir), "--age-probs", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(faces) == len(rows) == 3
    assert list(rows[0]) == cli.COLUMNS + [f"age_p{age}" for age in range(101)]
    for face, row in zip(faces, rows):
        probs = np.array(face["age_probs"])
        assert len(probs) == 101 and abs(probs.sum() - 1) < 1e-3 and abs(probs @ np.arange(101) - face["age"]) < 0.1
        assert np.allclose([float(row[f"age_p{age}"]) for age in range(101)], probs)
    assert cli.main([photo, "--model", str(model_dir)]) == 0
    assert "age_probs" not in json.loads(capsys.readouterr().out)[0]  # only when asked: 101 numbers a face


def test_no_detect_and_cam_images(folder, model_dir, tmp_path, capsys):
    cams = tmp_path / "cams"
    code = cli.main([str(folder / "dogs.jpg"), "--no-detect", "--cam", str(cams), "--model", str(model_dir)])
    rows = json.loads(capsys.readouterr().out)
    assert code == 0 and len(rows) == 1 and rows[0]["det_score"] is None
    assert sorted(p.name for p in cams.iterdir()) == [
        "dogs.annotated.jpg", "dogs.face0.age.jpg", "dogs.face0.gender.jpg"]


def test_missing_file_and_bad_model(model_dir, tmp_path, capsys):
    assert cli.main([str(tmp_path / "nope.jpg"), "--model", str(model_dir)]) == 1
    assert "nope.jpg: File not found" in capsys.readouterr().err
    empty = tmp_path / "no-weights"
    empty.mkdir()
    assert cli.main([str(tmp_path / "nope.jpg"), "--model", str(empty)]) == 2
    assert "cannot load model" in capsys.readouterr().err


def test_as_a_program(folder, model_dir):
    """The real command: exit code, rows on stdout, errors on stderr, no traceback."""
    done = subprocess.run([sys.executable, "-m", "demo.cli", str(folder), "--model", str(model_dir),
                           "--format", "csv"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert len(done.stdout.strip().splitlines()) == 1 + 5  # header + 5 faces
    assert "truncated.jpg" in done.stderr and "Traceback" not in done.stderr


def test_the_app_the_api_and_the_cli_share_one_default_model(monkeypatch):
    import inspect

    from demo import ui
    from model import hub
    assert hub.DEFAULT_ARCH == "vgg16"  # better than the scratch CNN on both evaluation sets (docs/results.md)
    assert inspect.signature(ui.build).parameters["default_model"].default == hub.DEFAULT_ARCH
    monkeypatch.delenv("FACE_MODEL", raising=False)
    asked = []
    from types import SimpleNamespace
    monkeypatch.setattr(hub, "_from_hub_or_bundle",
                        lambda repo_id, *args, **kwargs: asked.append(repo_id) or SimpleNamespace(source=repo_id))
    hub.load_model(None)  # what the CLI does without --model
    assert asked == [hub.DEFAULT_REPOS["vgg16"]]


# ---------------------------------------------------------------- options and exits (issue 25)

THREE_PORTRAITS = ROOT / "assets" / "examples" / "three_portraits.jpg"
ASTRONAUT = ROOT / "assets" / "examples" / "astronaut.jpg"  # one face


def faces_found(model_dir, capsys, *options) -> list[dict]:
    assert cli.main([str(THREE_PORTRAITS), "--model", str(model_dir), *options]) == 0
    return json.loads(capsys.readouterr().out)


def test_detector_and_min_score_are_honoured(model_dir, capsys):
    auto = faces_found(model_dir, capsys)
    assert len(auto) == 3  # the auto detector finds all three portraits
    assert len(faces_found(model_dir, capsys, "--detector", "short")) == 1  # short-range finds only one
    weak = [row for row in auto if row["det_score"] < 0.9]
    assert weak, "needs a face under the threshold, else --min-score would not be tested"
    strong = faces_found(model_dir, capsys, "--min-score", "0.9")
    assert [row["det_score"] for row in strong] == [row["det_score"] for row in auto if row["det_score"] >= 0.9]


def test_threads_sets_torch_threads_and_bad_counts_are_refused(model_dir, tmp_path, capsys):
    import torch

    try:
        cli.main([str(tmp_path / "nope.jpg"), "--model", str(model_dir), "--threads", "2"])
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)  # this module's setting (torch_one_thread)
    capsys.readouterr()
    for bad in ("0", "-1"):  # -1 was a torch RuntimeError traceback, 0 silently ignored
        with pytest.raises(SystemExit) as exit_:
            cli.main([str(THREE_PORTRAITS), "--threads", bad])
        assert exit_.value.code == 2
        assert "--threads must be at least 1" in capsys.readouterr().err


def test_json_rows_go_to_the_output_file_only(model_dir, tmp_path, capsys):
    out_file = tmp_path / "faces.json"
    assert cli.main([str(ASTRONAUT), "-o", str(out_file), "--model", str(model_dir)]) == 0
    out, err = capsys.readouterr()
    assert out == "" and "1 of 1 files processed" in err
    assert [(row["file"], row["face"]) for row in json.loads(out_file.read_text())] == [(str(ASTRONAUT), 0)]

    missing_folder = tmp_path / "no-such-folder" / "faces.json"  # was a FileNotFoundError traceback
    assert cli.main([str(ASTRONAUT), "-o", str(missing_folder), "--model", str(model_dir)]) == 2
    assert f"error: cannot write {missing_folder}: No such file or directory" in capsys.readouterr().err


def test_folders_without_image_files_exit_with_a_message(tmp_path, capsys):
    empty, text_only = tmp_path / "empty", tmp_path / "text-only"
    empty.mkdir()
    text_only.mkdir()
    (text_only / "notes.txt").write_text("not an image")
    assert cli.main([str(empty), str(text_only)]) == 1  # before any model is loaded: no --model needed
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"error: no image or video files found in {empty}, {text_only}\n"


def test_an_unexpected_error_on_one_file_is_reported_and_the_others_go_on(model_dir, tmp_path, monkeypatch,
                                                                         capsys):
    shutil.copy(THREE_PORTRAITS, tmp_path / "bad.jpg")
    shutil.copy(ASTRONAUT, tmp_path / "good.jpg")

    class BuggyPipeline(cli.Pipeline):  # a bug that only shows on one file
        def __call__(self, image, **options):
            if Path(image).name == "bad.jpg":
                raise KeyError("boom")
            return super().__call__(image, **options)

    monkeypatch.setattr(cli, "Pipeline", BuggyPipeline)
    code = cli.main([str(tmp_path / "bad.jpg"), str(tmp_path / "good.jpg"), "--model", str(model_dir)])
    out, err = capsys.readouterr()
    assert code == 1
    assert [Path(row["file"]).name for row in json.loads(out)] == ["good.jpg"]
    assert f"error: {tmp_path / 'bad.jpg'}: unexpected KeyError: 'boom'" in err
    assert "1 of 2 files processed, 1 failed" in err and "Traceback" not in err
