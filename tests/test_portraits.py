"""python -m train.portraits: the real-photo check a shipping rule runs before any evaluation set."""
from __future__ import annotations

import torch

from model.hub import load_model
from model.nets import ScratchNet
from train.portraits import PORTRAITS, main, read_portraits, reads_as_expected


def test_expectations_fail_the_wrong_gender_a_wrong_age_or_an_age_outside_its_interval():
    woman, man = PORTRAITS[0], PORTRAITS[2]
    assert reads_as_expected(woman, 0.9, 40, 30, 50)
    assert not reads_as_expected(woman, 0.55, 40, 30, 50)  # female, but not firmly
    assert not reads_as_expected(woman, 0.9, 70, 60, 80)  # older than she can be
    assert not reads_as_expected(woman, 0.9, 40, 41, 50)  # the age outside its own interval
    assert reads_as_expected(man, 0.3, 50, 40, 60) and not reads_as_expected(man, 0.55, 50, 40, 60)


def test_a_model_that_misreads_a_portrait_stops_a_script(tmp_path, shared_dir, capsys):
    torch.manual_seed(0)
    ScratchNet(image_size=48).save_pretrained(tmp_path / "random")  # untrained: no portrait read firmly
    assert main(["--model", "scratch", "--model", str(tmp_path / "random")]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert sum("as expected" in line for line in lines if line.startswith("scratch ")) == len(PORTRAITS)
    assert "misread:" in lines[-1] and "scratch:" not in lines[-1] and str(tmp_path / "random") in lines[-1]


def test_the_shipped_scratch_cnn_reads_every_portrait_as_expected(shared_dir):
    readings = read_portraits(load_model("scratch"))
    assert [r["who"] for r in readings] == [p.who for p in PORTRAITS] and all(r["ok"] for r in readings)
    assert main(["--model", "scratch"]) == 0


def test_an_unloadable_model_says_why(tmp_path, capsys):
    assert main(["--model", str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().out.startswith("error: ")
