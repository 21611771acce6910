"""Knowledge distillation (train/teacher.py, train.losses.distill_loss, python -m train --teacher)."""
from __future__ import annotations

import csv
import math

import pytest
import torch

from model.age import AGE_BINS
from model.hub import load_model, write_bundle
from model.nets import ScratchNet
from model.preprocess import normalize
from synthetic import make_utkface_folder
from train import teacher as teacher_module
from train.losses import distill_loss
from train.teacher import read_faces
from train.train import parse_args, train


def tiny(tmp_path, data, out: str, **overrides):
    """A run of a few seconds on synthetic faces (colour = gender), their stored crops, on the CPU."""
    args = ["--data", str(data), "--out", str(tmp_path / out), "--image-size", "32", "--epochs", "4",
            "--batch-size", "32", "--lr", "3e-3", "--cache-dir", str(tmp_path / "cache"), "--crops", "files",
            "--device", "cpu"]
    for key, value in overrides.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    return parse_args(args)


def last_val_gender_acc(run) -> float:
    with open(run / "history.csv") as f:
        return float(list(csv.DictReader(f))[-1]["val_gender_acc"])


@pytest.fixture(scope="module")
def utk(tmp_path_factory):
    return make_utkface_folder(tmp_path_factory.mktemp("data"), n=240)


@pytest.fixture(scope="module")
def liar(tmp_path_factory, utk):
    """A teacher that reads the synthetic faces well at 48 px and then says the opposite gender: its gender
    temperature is negative, so every probability is mirrored (p -> 1 - p). Only a student that learns from the
    teacher rather than the labels can take on the lie."""
    tmp = tmp_path_factory.mktemp("teacher")
    run = train(tiny(tmp, utk, "teacher", image_size=48, epochs=5))
    assert last_val_gender_acc(run) >= 0.8  # it reads the task before it is made to lie about it
    model = load_model(str(run / "model"))
    model.gender_temperature.neg_()
    return write_bundle(model, tmp / "liar")


def test_distill_loss_is_lowest_at_the_teachers_reading():
    torch.manual_seed(0)
    p_female = torch.tensor([0.9, 0.2, 0.5])
    age_probs = torch.randn(3, AGE_BINS).softmax(-1)
    exact = torch.cat([torch.logit(p_female).unsqueeze(1), age_probs.log()], dim=1).requires_grad_()
    best = distill_loss(exact, p_female, age_probs, gender_weight=1.0, age_weight=0.3)
    best.backward()
    assert exact.grad.abs().max() < 1e-6  # a minimum: nothing left to learn
    # its value is the teacher's own entropy: gender's mean binary entropy + 0.3 x the age distributions'
    entropy = -(p_female * p_female.log() + (1 - p_female) * (1 - p_female).log()).mean()
    entropy += 0.3 * -(age_probs * age_probs.log()).sum(-1).mean()
    assert best.item() == pytest.approx(entropy.item(), rel=1e-5)
    for moved in (exact.detach() + 0.3 * torch.randn_like(exact), exact.detach().roll(1, 0)):
        assert distill_loss(moved, p_female, age_probs).item() > best.item() + 1e-3


def test_readings_are_the_teachers_predictions_in_order(liar):
    """What the student learns from is what the teacher shows in the app: predict's calibrated readouts."""
    teacher = load_model(str(liar))
    images = torch.randint(0, 256, (10, 3, 48, 48), dtype=torch.uint8)
    read = read_faces(teacher, images, batch_size=4)  # batches of 4, 4, 2: order kept across batches
    expected = teacher.predict(normalize()(images))
    assert torch.allclose(read.p_female, expected["p_female"], atol=1e-5)
    assert torch.allclose(read.age_probs, expected["age_probs"], atol=1e-5)
    assert torch.allclose(read.age_probs.sum(-1), torch.ones(10), atol=1e-5)


def test_a_student_learns_the_teachers_readings_not_only_the_labels(tmp_path, utk, liar):
    """--distill 1 trains on the teacher alone: taught by the liar, the student reads the synthetic faces'
    gender backwards; without a teacher, the same run reads them right."""
    honest = last_val_gender_acc(train(tiny(tmp_path, utk, "plain")))
    lied_to = last_val_gender_acc(train(tiny(tmp_path, utk, "taught", teacher=liar, distill=1.0)))
    assert honest >= 0.8
    assert lied_to <= 0.2


def test_the_teachers_readings_are_cached_and_reused(tmp_path, utk, liar, monkeypatch):
    run = train(tiny(tmp_path, utk, "first", teacher=liar, epochs=1))
    cached = list((tmp_path / "cache").glob("teacher-*.npz"))
    assert len(cached) == 1
    with open(run / "history.csv") as f:
        row = list(csv.DictReader(f))[0]
    assert math.isfinite(float(row["train_loss_teacher"])) and math.isfinite(float(row["train_loss"]))

    def no_reading(*args, **kwargs):
        raise AssertionError("the teacher read the faces again")

    monkeypatch.setattr(teacher_module, "read_faces", no_reading)
    train(tiny(tmp_path, utk, "second", teacher=liar, epochs=1))
    # another teacher is another set of readings
    other = ScratchNet(image_size=48)
    write_bundle(other, tmp_path / "other")
    monkeypatch.undo()
    train(tiny(tmp_path, utk, "third", teacher=tmp_path / "other", epochs=1))
    assert len(list((tmp_path / "cache").glob("teacher-*.npz"))) == 2


def test_bad_teacher_options_stop_with_a_clear_message(tmp_path, utk, liar):
    with pytest.raises(SystemExit, match="between 0 and 1"):
        train(tiny(tmp_path, utk, "a", teacher=liar, distill=1.5))
    with pytest.raises(SystemExit, match="--teacher .*nowhere"):
        train(tiny(tmp_path, utk, "b", teacher=tmp_path / "nowhere"))
