"""Training and evaluation options that change what a run does: early stopping, the plateau schedule, the class
weight, gradual unfreezing with the backbone's learning rate, publishing when training ends, and the
evaluation command's own exits and switches. Tiny synthetic runs (tests/synthetic.py), seconds each."""
from __future__ import annotations

import csv
import json
from collections import Counter

import pytest
import torch

import train.train as train_module
from test_hub import REPO, hub  # noqa: F401  (fixture: a local Hub with the client pointed at it)
from test_train_loop import fairface, read_history, tiny_args, tiny_config, utk  # noqa: F401  (fixtures: synthetic UTKFace / FairFace)
from train import evaluate
from train.checkpoint import load_checkpoint
from train.train import train


# VGG16 with its blocks frozen (cached features) and no BatchNorm in the heads: at lr 0 validation is the same
# every epoch, and at lr 1e-6 it moves by far less than the plateau scheduler's 1e-4 threshold
FROZEN_VGG = dict(model="vgg16", vgg_weights="random", head_epochs=99)


@pytest.fixture(scope="module")
def vgg_cache(tmp_path_factory):
    """One cache folder for this module's VGG16 runs: the same seeded random VGG16 on the same faces, so its
    block-3 features are computed once and read by the others (train/features.py keys them by both)."""
    return tmp_path_factory.mktemp("vgg-cache")


def test_early_stopping_ends_the_run_after_patience_epochs_without_progress(tmp_path, utk, vgg_cache):  # noqa: F811
    run = train(tiny_config(tmp_path, utk, epochs=8, lr=0, patience=2, cache_dir=vgg_cache, **FROZEN_VGG))
    epochs = [int(row["epoch"]) for row in read_history(run)]
    metrics = json.loads((run / "metrics.json").read_text())
    assert epochs == [1, 2, 3]  # the best (the first), then exactly 2 without progress
    assert int(metrics["best_epoch"]["epoch"]) == 1 and metrics["epochs_run"] == 3


def test_plateau_schedule_holds_the_rate_then_cuts_it(tmp_path, utk, vgg_cache):  # noqa: F811
    # no progress after epoch 1: its patience is 2, so after epoch 4 the rate drops to 0.3x (cosine would
    # have lowered it from epoch 2 on)
    run = train(tiny_config(tmp_path, utk, epochs=5, lr=1e-6, schedule="plateau", patience=10, cache_dir=vgg_cache,
                            **FROZEN_VGG))
    rates = [float(row["lr"]) for row in read_history(run)]
    assert rates[:4] == [1e-6] * 4
    assert rates[4] == pytest.approx(3e-7)


@pytest.fixture
def female_weights_used(monkeypatch) -> list:
    """The female_weight each training step passes to the loss (validation leaves it at its default)."""
    weights = []
    real_loss = train_module.multitask_loss

    def spy(*args, **kwargs):
        if "female_weight" in kwargs:
            weights.append(kwargs["female_weight"])
        return real_loss(*args, **kwargs)
    monkeypatch.setattr(train_module, "multitask_loss", spy)
    return weights


@pytest.mark.parametrize("class_weight", [False, True])
def test_class_weight_scales_the_female_loss_by_the_gender_ratio(tmp_path, utk, female_weights_used,  # noqa: F811
                                                                 class_weight):
    weights = female_weights_used
    run = train(tiny_config(tmp_path, utk, epochs=1, class_weight=class_weight))
    with open(run / "split.csv") as f:
        genders = [int(row["gender"]) for row in csv.DictReader(f) if row["split"] == "train"]
    expected = genders.count(0) / genders.count(1) if class_weight else 1.0
    assert weights and all(torch.allclose(w, torch.full_like(w, expected)) for w in weights)
    assert not class_weight or expected != 1.0  # the synthetic split is not balanced, so the option shows


def test_female_weight_per_source_reaches_each_face_of_that_source(tmp_path, utk, fairface,  # noqa: F811
                                                                   female_weights_used):
    weights = female_weights_used
    args = tiny_args(tmp_path, utk, epochs=1, balance="none", female_weight="fairface=2.5")
    args.insert(args.index(str(utk)) + 1, str(fairface))
    run = train(train_module.parse_args(args))
    with open(run / "split.csv") as f:
        sources = Counter(row["source"] for row in csv.DictReader(f) if row["split"] == "train")
    seen = torch.cat(weights)  # one epoch, every training face once (--balance none)
    assert len(seen) == sum(sources.values())
    assert int((seen == 2.5).sum()) == sources["fairface"] > 0
    assert int((seen == 1.0).sum()) == sources["utkface"] > 0


@pytest.mark.parametrize("text, message", [("fairfce=1.3", "not a source of this run"),
                                           ("fairface=much", "is not SOURCE=NUMBER"),
                                           ("fairface=0", "must be positive")])
def test_female_weight_that_cannot_apply_stops_with_a_clear_message(tmp_path, utk, text, message):  # noqa: F811
    with pytest.raises(SystemExit, match=message):
        train(tiny_config(tmp_path, utk, epochs=1, female_weight=text))


def test_heads_train_alone_first_then_the_tuned_block_at_the_backbone_rate(tmp_path, utk, vgg_cache):  # noqa: F811
    config = dict(model="vgg16", vgg_weights="random", head_epochs=1, backbone_lr_scale=0.25, lr=2e-3,
                  cache_dir=vgg_cache)
    run = train(tiny_config(tmp_path, utk, epochs=1, **config))

    def optimizer_state(run):
        state = load_checkpoint(run / "checkpoint.pt")["optimizer"]
        heads, tuned = state["param_groups"]
        trained = set(state["state"])  # AdamW keeps moments only for parameters that had a gradient
        return heads, tuned, trained

    heads, tuned, trained = optimizer_state(run)
    assert tuned["initial_lr"] == pytest.approx(2e-3 * 0.25) and heads["initial_lr"] == pytest.approx(2e-3)
    assert trained and trained <= set(heads["params"])           # epoch 1: the heads only
    train(tiny_config(tmp_path, utk, epochs=2, **config))        # resumed: epoch 2 unfreezes block 5
    heads, tuned, trained = optimizer_state(run)
    assert set(tuned["params"]) <= trained and set(heads["params"]) <= trained


def test_push_to_hub_evaluates_and_publishes_when_training_ends(tmp_path, utk, hub, capsys):  # noqa: F811
    train_module.main(tiny_args(tmp_path, utk, epochs=1, push_to_hub=REPO))
    run = tmp_path / "run"
    assert (run / "eval" / "metrics.json").exists()  # evaluated before publishing, so the card has figures
    files = hub.files(REPO)
    assert {"config.json", "model.safetensors", "README.md", "split.csv", "eval/metrics.json"} <= set(files)
    assert files["model.safetensors"] == (run / "model" / "model.safetensors").read_bytes()
    assert files["eval/metrics.json"] == (run / "eval" / "metrics.json").read_bytes()
    assert f"done: {run}" in capsys.readouterr().out


# ------------------------------------------------------------------------------------ python -m train.evaluate

def test_evaluate_refuses_a_model_folder_without_its_split_and_data(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        evaluate.main(["--model", str(tmp_path)])
    assert exit_.value.code == 2 and "--model needs --split-csv, --data and --out" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        evaluate.main([])  # neither --run nor --model
    assert exit_.value.code == 2 and "one of the arguments --run --model is required" in capsys.readouterr().err


def test_evaluate_without_end_to_end_scores_the_crops_only(tmp_path, utk, fairface):  # noqa: F811
    run = train(tiny_config(tmp_path, utk, epochs=1))
    evaluate.main(["--run", str(run), "--fairface", str(fairface), "--limit", "10", "--no-end-to-end"])
    ff = json.loads((run / "eval" / "fairface" / "metrics.json").read_text())
    assert ff["n"] == 10 and "end_to_end" not in ff
    assert not (run / "eval" / "fairface" / "end_to_end_by_race.png").exists()
    with open(run / "eval" / "fairface" / "predictions.csv") as f:
        assert not any(name.startswith("detection_on") for name in next(csv.reader(f)))
    assert torch.isfinite(torch.tensor(ff["gender"]["accuracy"]))


def test_every_training_option_says_what_it_does_and_its_default(capsys):
    """`python -m train --help` explains each option (from TrainConfig's field notes) and shows its default."""
    with pytest.raises(SystemExit):
        train_module.parse_args(["--help"])
    text = capsys.readouterr().out
    options = {"--" + f.name.replace("_", "-") for f in train_module.dataclasses.fields(train_module.TrainConfig)}
    for option in options:
        line = next(line for line in text.split("\n  --") if line.split()[0] == option[2:])
        assert "(default:" in " ".join(line.split()), f"{option} has no help text: {line!r}"
    assert "gender error (%) + age MAE" in " ".join(text.split())  # argparse's % escaped, not an error or a lost sign
