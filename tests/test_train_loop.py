"""Fast smoke tests of the training and evaluation entry points on tiny synthetic data."""
from __future__ import annotations

import csv
import fnmatch
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from model.age import AGE_BINS
from model.fast import bf16_features
from model.nets import ScratchNet, VGGNet, build_model
from model.preprocess import normalize
from synthetic import make_fairface_folder, make_utkface_folder
from train import calibrate, checkpoint
from train.augment import augmented_copy
from train.evaluate import evaluate_run
from train.features import frozen_features, frozen_fingerprint
from train.train import Inputs, parse_args, selection_key, train


def tiny_config(tmp_path, data, **overrides):
    """A run of a few seconds. The synthetic faces hold nothing a detector finds, so they train on their stored
    crops (--crops files); tests/test_aligned.py and tests/test_validate.py cover the app's crops. The CPU path
    (feature caches, exact figures) is what these tests mean, also on a machine with a GPU: --device cpu."""
    return parse_args(tiny_args(tmp_path, data, **overrides))


def tiny_args(tmp_path, data, **overrides) -> list[str]:
    """tiny_config's command line (for `python -m train`'s main). A flag is given as True (present) or False."""
    overrides = {"crops": "files", "device": "cpu", **overrides}
    args = ["--data", str(data), "--out", str(tmp_path / "run"), "--image-size", "32", "--epochs", "2",
            "--batch-size", "32", "--lr", "3e-3", "--cache-dir", str(tmp_path / "cache")]
    for key, value in overrides.items():
        flag = f"--{key.replace('_', '-')}"
        args += ([flag] if value else []) if isinstance(value, bool) else [flag, str(value)]
    return args


@pytest.fixture(scope="module")
def utk(tmp_path_factory):
    return make_utkface_folder(tmp_path_factory.mktemp("data"), n=240)


def read_history(run):
    with open(run / "history.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("arch, size", [("scratch", 64), ("vgg16", 128)])
def test_forward_shapes(arch, size):
    torch.manual_seed(0)  # torch's own start seed differs per process: alone, this test drew other weights each run
    model = build_model(arch, image_size=size).eval()
    out = model(torch.randn(3, 3, size, size))
    assert out.shape == (3, 1 + AGE_BINS)
    pred = model.predict(torch.randn(2, 3, size, size))
    assert pred["p_female"].shape == (2,) and pred["age_probs"].shape == (2, AGE_BINS)
    assert ((0 <= pred["p_female"]) & (pred["p_female"] <= 1)).all()
    assert (pred["age_low"] <= pred["age"]).all() and (pred["age"] <= pred["age_high"]).all()


def test_vgg16_features_are_torchvisions_built_without_its_classifier():
    """model.nets.vgg16_features replaces vgg16(weights=None).features[:30] for speed: same layers, same
    parameter names and shapes, and torchvision's initialisation (conv weights with std sqrt(2 / fan_out))."""
    from torchvision.models import vgg16

    from model.nets import vgg16_features
    ours, theirs = vgg16_features(), vgg16(weights=None).features[:30]
    assert str(ours) == str(theirs)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs.state_dict().items()}
    for a, b in zip(ours.state_dict().values(), theirs.state_dict().values()):
        assert a.std() == pytest.approx(b.std(), rel=0.05) and a.mean() == pytest.approx(b.mean(), abs=0.01)
    conv5_3 = ours[28]
    assert float(conv5_3.weight.detach().std()) == pytest.approx((2 / (512 * 9)) ** 0.5, rel=0.05)


def test_vgg_loads_the_local_imagenet_file(shared_dir):
    path = shared_dir / "weights" / "vgg16_imagenet_features.safetensors"
    model = VGGNet()
    model.load_imagenet(str(path))
    state = load_file(path)
    assert torch.equal(model.frozen[0].weight, state["0.weight"])
    assert torch.equal(model.tuned[4].weight, state["28.weight"])  # conv5_3
    assert not any(p.requires_grad for p in model.frozen.parameters())


def test_two_epochs_lower_the_loss_and_write_the_run(tmp_path, utk, monkeypatch):
    fitted = {}  # what the loop hands to calibration (fit_temperature itself: tests/test_metrics.py)

    def spy(name):
        real = getattr(calibrate, name)

        def fit(*args):
            fitted[name] = [a.clone() for a in args], real(*args)
            return fitted[name][1]
        return fit
    for name in ("fit_temperature", "fit_age_temperature"):
        monkeypatch.setattr(calibrate, name, spy(name))
    run = train(tiny_config(tmp_path, utk))
    history = read_history(run)
    assert len(history) == 2
    assert float(history[1]["train_loss"]) < float(history[0]["train_loss"])
    for name in ("model/config.json", "model/model.safetensors", "split.csv", "train_config.json",
                 "data_report.json", "curves.png", "metrics.json", "checkpoint.pt"):
        assert (run / name).exists(), name
    metrics = json.loads((run / "metrics.json").read_text())
    # calibrated on the validation split (its size and labels), and what was fitted is what was stored
    with open(run / "split.csv") as f:
        val = [row for row in csv.DictReader(f) if row["split"] == "val"]
    (logits, genders), gender_t = fitted["fit_temperature"]
    (age_logits, ages, _, _), age_t = fitted["fit_age_temperature"]
    assert len(logits) == len(age_logits) == len(val) > 0
    assert sorted(genders.tolist()) == sorted(int(row["gender"]) for row in val)
    assert sorted(ages.tolist()) == sorted(int(row["age"]) for row in val)
    assert (metrics["gender_temperature"], metrics["age_temperature"]) == (gender_t, age_t)
    # the saved model carries its calibration and reloads to the same outputs
    model = ScratchNet.from_pretrained(run / "model").eval()
    assert float(model.gender_temperature) == pytest.approx(metrics["gender_temperature"], rel=1e-5)
    assert float(model.age_temperature) == pytest.approx(metrics["age_temperature"], rel=1e-5)
    assert float(model.gender_offset) == pytest.approx(metrics["gender_offset"], abs=1e-6)


def test_learns_the_synthetic_task(tmp_path, utk):
    """Colour = gender on the synthetic faces: a few epochs must beat chance clearly."""
    run = train(tiny_config(tmp_path, utk, epochs=5))
    assert float(read_history(run)[-1]["val_gender_acc"]) >= 0.8


def test_resume_continues_where_it_stopped(tmp_path, utk, monkeypatch):
    """Killed after epoch 1 and rerun with the same options, a run ends with the weights and optimizer state of
    a run that was never stopped: same order, same augmentation and dropout draws, same schedule."""
    from train import train as train_module

    def killed(*args):  # the process dies right after epoch 1's checkpoint
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(train_module, "write_history", killed)
        with pytest.raises(KeyboardInterrupt):
            train(tiny_config(tmp_path / "a", utk, epochs=2))
    resumed = train(tiny_config(tmp_path / "a", utk, epochs=2))  # the same command again: resumes at epoch 2
    straight = train(tiny_config(tmp_path / "b", utk, epochs=2))
    assert [row["epoch"] for row in read_history(resumed)] == ["1", "2"]
    a, b = checkpoint.load_checkpoint(resumed / "checkpoint.pt"), checkpoint.load_checkpoint(straight / "checkpoint.pt")
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    moments = [(sa["exp_avg"], sb["exp_avg"]) for sa, sb in zip(a["optimizer"]["state"].values(),
                                                               b["optimizer"]["state"].values())]
    assert len(moments) > 0 and all(torch.equal(x, y) for x, y in moments)
    assert read_history(resumed)[1]["train_loss"] == read_history(straight)[1]["train_loss"]


def test_more_epochs_resume_a_finished_run(tmp_path, utk):
    train(tiny_config(tmp_path, utk, epochs=1))
    first = read_history(tmp_path / "run")
    run = train(tiny_config(tmp_path, utk, epochs=2))  # same options, more epochs: resumes at epoch 2
    history = read_history(run)
    assert [row["epoch"] for row in history] == ["1", "2"] and history[0] == first[0]


def test_resume_refuses_other_options(tmp_path, utk):
    train(tiny_config(tmp_path, utk, epochs=1))
    with pytest.raises(SystemExit, match="other options"):
        train(tiny_config(tmp_path, utk, epochs=2, lr=0.1))


def test_vgg_cached_features_train_and_are_reused(tmp_path, utk):
    # the precision a real run on this CPU uses: bf16 where it has bf16 units (emulated elsewhere, 5x slower)
    precision = "bf16" if bf16_features() else "fp32"
    config = tiny_config(tmp_path, utk, model="vgg16", vgg_weights="random", head_epochs=1, precision=precision)
    run = train(config)
    caches = [c for c in (tmp_path / "cache").glob("vgg-frozen-*.npy")
              if c.stem.endswith("-bf16") == (precision == "bf16")]  # the file name says its precision
    assert len(caches) == 2  # train and val
    stamps = {c: c.stat().st_mtime_ns for c in caches}
    history = read_history(run)
    assert len(history) == 2 and all(np.isfinite(float(r["val_loss"])) for r in history)
    (run / "checkpoint.pt").unlink()
    again = tiny_config(tmp_path, utk, model="vgg16", vgg_weights="random", head_epochs=1, precision=precision,
                        epochs=1)  # the caches are read before the first epoch: one is enough to see them reused
    train(again, resume=False)
    assert {c: c.stat().st_mtime_ns for c in (tmp_path / "cache").glob("vgg-frozen-*.npy")} == stamps


def test_feature_cache_is_read_mapped_from_disk_and_equals_the_features(tmp_path):
    """The cached features are the frozen blocks' output, written whole (no temporary file left) and read back
    memory-mapped: a clean and an augmented copy of block-2 output (13.7 GB each) must not both sit in memory."""
    model = VGGNet(image_size=32, tuned_blocks=3).eval()
    images = torch.randint(0, 256, (10, 3, 32, 32), dtype=torch.uint8)
    in_memory = frozen_features(model, images, None, batch_size=4)
    written = frozen_features(model, images, tmp_path, batch_size=4)
    read = frozen_features(model, images, tmp_path, batch_size=4)
    with torch.no_grad():
        expected = model.forward_frozen(normalize()(images)).half()
    assert in_memory.shape == (10, 128, 8, 8) and torch.allclose(in_memory.float(), expected.float(), atol=1e-3)
    assert torch.equal(written, in_memory) and torch.equal(read, in_memory)
    cache = tmp_path / f"vgg-frozen-{frozen_fingerprint(model, images)}.npy"
    assert sorted(tmp_path.iterdir()) == [cache]
    mapped = [line for line in Path("/proc/self/maps").read_text().splitlines() if line.endswith(str(cache))]
    start, end = (int(a, 16) for a in mapped[0].split()[0].split("-"))
    assert start <= read.data_ptr() < end  # the tensor is the mapped file, not a copy in memory


def test_flip_cache_feeds_the_flipped_images_features(tmp_path):
    """--flip-cache: a flipped training sample gets the features of the flipped image, not mirrored maps."""
    cfg = parse_args(["--model", "vgg16", "--image-size", "32", "--flip-cache", "--cache-dir", str(tmp_path)])
    model = VGGNet(image_size=32, tuned_blocks=2).eval()
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    sets = {"train": (images, None, None), "val": (images[:2], None, None)}
    inputs = Inputs(cfg, model, sets, torch.device("cpu"))
    captured = []
    model.forward_tuned = lambda x: captured.append(x) or torch.zeros(len(x), 1 + AGE_BINS)
    torch.manual_seed(0)
    idx = torch.arange(6)
    inputs.forward("train", idx, train=True)
    flipped = (inputs.data["train"][idx].float() != captured[0]).flatten(1).any(1)
    assert 0 < flipped.sum() < 6  # about half the batch
    with torch.no_grad():
        true_flip = model.forward_frozen(normalize()(images.flip(-1))).half().float()
    assert torch.allclose(captured[0][flipped], true_flip[flipped], atol=1e-2)
    assert not torch.allclose(true_flip, inputs.data["train"].float().flip(-1), atol=1e-2)  # mirroring differs


def test_augmented_copies_feed_the_augmented_images_features(tmp_path):
    """--augmented-copies 1: a training face is drawn from its clean features or its augmented copy's, and the
    copy (seeded, so its cache is reused) is BatchAugment's image, not the clean one."""
    cfg = parse_args(["--model", "vgg16", "--image-size", "32", "--augmented-copies", "1",
                      "--cache-dir", str(tmp_path)])
    model = VGGNet(image_size=32, tuned_blocks=2).eval()
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    sets = {"train": (images, None, None), "val": (images[:2], None, None)}
    inputs = Inputs(cfg, model, sets, torch.device("cpu"))
    copy = augmented_copy(images, seed=cfg.seed + 1)
    assert copy.dtype == torch.uint8 and torch.equal(copy, augmented_copy(images, seed=cfg.seed + 1))
    assert (copy != images).flatten(1).any(1).float().mean() > 0.9  # nearly every face is changed
    with torch.no_grad():
        copy_features = model.forward_frozen(normalize()(copy)).half().float()
    assert torch.allclose(inputs.variants[0].float(), copy_features, atol=1e-2)
    captured = []
    model.forward_tuned = lambda x: captured.append(x) or torch.zeros(len(x), 1 + AGE_BINS)
    torch.manual_seed(0)
    idx = torch.arange(64)
    inputs.forward("train", idx, train=True)
    clean = inputs.data["train"].float()
    from_copy = torch.isclose(captured[0], copy_features, atol=1e-2).flatten(1).all(1)
    from_clean = (torch.isclose(captured[0], clean, atol=1e-2) | torch.isclose(captured[0], clean.flip(-1), atol=1e-2)
                  ).flatten(1).all(1)
    assert 16 < from_copy.sum() < 48 and torch.all(from_copy | from_clean)  # about half from the copy
    assert len(list(tmp_path.glob("vgg-frozen-*.npy"))) == 3  # train, val and the copy's features, cached


def test_selection_by_score_weighs_gender_points_like_years():
    by_loss, by_score = parse_args([]), parse_args(["--select", "score"])
    worse_loss = {"val_loss": 1.30, "val_gender_acc": 0.93, "val_age_mae": 5.4}  # history rows
    better_loss = {"val_loss": 1.27, "val_gender_acc": 0.92, "val_age_mae": 5.6}
    assert selection_key(by_loss, better_loss) < selection_key(by_loss, worse_loss)
    assert selection_key(by_score, worse_loss) == pytest.approx(7 + 5.4)
    assert selection_key(by_score, worse_loss) < selection_key(by_score, better_loss)


def test_checkpoint_round_trip_and_atomic_save(tmp_path, monkeypatch):
    state = {"model": ScratchNet(image_size=32).state_dict(), "epoch": 3, "history": [{"loss": 1.5}]}
    path = tmp_path / "checkpoint.pt"
    checkpoint.save_checkpoint(path, state)
    loaded = checkpoint.load_checkpoint(path)
    assert loaded["epoch"] == 3 and all(torch.equal(loaded["model"][k], v) for k, v in state["model"].items())

    def killed_mid_save(obj, f, *args, **kwargs):
        with open(f, "wb") as handle:
            handle.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", killed_mid_save)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save_checkpoint(path, {"epoch": 4})
    assert checkpoint.load_checkpoint(path)["epoch"] == 3  # the previous checkpoint is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]  # and no half-written file is left


def test_caches_are_replaced_atomically(tmp_path):
    """The caches (images, alignment, features, teacher readings) and run files all write through
    replaced_atomically: its temp file matches no pattern for the real ones (a leftover is never published or
    read as a cache), a failed write keeps the previous file and leaves no temp file."""
    cache = tmp_path / "images-abc.npz"
    with checkpoint.replaced_atomically(cache) as tmp, tmp.open("wb") as f:
        assert not fnmatch.fnmatch(tmp.name, "*.npz")
        np.savez(f, images=np.arange(3))
    assert np.load(cache)["images"].tolist() == [0, 1, 2]
    with pytest.raises(MemoryError):
        with checkpoint.replaced_atomically(cache) as tmp, tmp.open("wb") as f:
            np.savez(f, images=np.arange(5))
            raise MemoryError
    assert np.load(cache)["images"].tolist() == [0, 1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images-abc.npz"]


def test_model_dir_round_trip(tmp_path):
    model = ScratchNet(image_size=32).eval()
    model.gender_temperature.fill_(1.7)
    checkpoint.save_model_dir(model, tmp_path / "model")
    checkpoint.save_model_dir(model, tmp_path / "model")  # replacing an existing dir works too
    back = ScratchNet.from_pretrained(tmp_path / "model").eval()
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(back(x), model(x)) and float(back.gender_temperature) == pytest.approx(1.7)


def test_model_files_from_before_the_age_temperature_load_with_one(tmp_path):
    """Weights saved without `age_temperature` (every model file older than it) load, and behave as then."""
    model = ScratchNet(image_size=32).eval()
    model.age_temperature.fill_(0.5)
    checkpoint.save_model_dir(model, tmp_path / "model")
    weights = tmp_path / "model" / "model.safetensors"
    old = {k: v for k, v in load_file(weights).items() if k != "age_temperature"}
    save_file(old, weights)
    back = ScratchNet.from_pretrained(tmp_path / "model").eval()
    assert float(back.age_temperature) == 1.0
    x = torch.randn(2, 3, 32, 32)
    model.age_temperature.fill_(1.0)
    assert torch.equal(back.predict(x)["age_probs"], model.predict(x)["age_probs"])


def test_evaluate_writes_report_and_consistent_metrics(tmp_path, utk):
    run = train(tiny_config(tmp_path, utk))
    metrics = evaluate_run(run)
    for name in ("metrics.json", "report.md", "predictions.csv", "confusion.png", "reliability.png",
                 "age_scatter.png", "by_race.png", "by_age_band.png"):
        assert (run / "eval" / name).exists(), name
    with open(run / "eval" / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == metrics["n"] == sum(1 for r in csv.DictReader(open(run / "split.csv")) if r["split"] == "test")
    accuracy = np.mean([(float(r["p_female"]) >= 0.5) == (r["gender"] == "1") for r in rows])
    mae = np.mean([abs(float(r["pred_age"]) - int(r["age"])) for r in rows])
    assert metrics["gender"]["accuracy"] == pytest.approx(accuracy)
    assert metrics["age"]["mae"] == pytest.approx(mae, abs=0.01)
    report = (run / "eval" / "report.md").read_text()
    assert "## Fairness" in report and f"{metrics['gender']['accuracy']:.4f}" in report


def test_flip_average_is_the_mean_of_both_views_and_keeps_the_test_report(tmp_path, utk):
    from train.evaluate import predict_images
    run = train(tiny_config(tmp_path, utk, epochs=1))
    evaluate_run(run)
    shipped = (run / "eval" / "metrics.json").read_text()
    metrics = evaluate_run(run, split="val", flip_average=True)
    assert (run / "eval" / "metrics.json").read_text() == shipped  # the test report is not replaced
    assert json.loads((run / "eval-val-flip" / "metrics.json").read_text())["flip_average"] is True
    n_val = sum(1 for r in csv.DictReader(open(run / "split.csv")) if r["split"] == "val")
    assert metrics["split"] == "val" and metrics["n"] == n_val
    assert "mirror image" in (run / "eval-val-flip" / "report.md").read_text()
    model = ScratchNet.from_pretrained(run / "model").eval()
    images = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    both = predict_images(model, images, flip_average=True)
    plain, mirrored = predict_images(model, images), predict_images(model, images.flip(-1))
    np.testing.assert_allclose(both["logit"], (plain["logit"] + mirrored["logit"]) / 2, atol=1e-5)
    assert not np.allclose(plain["logit"], mirrored["logit"])


def test_evaluate_at_the_apps_precision_writes_its_own_report(tmp_path, utk):
    """--precision scores the fast path into eval-<precision>/; in fp32 it gives the reference figures."""
    from train.evaluate import predict_images
    run = train(tiny_config(tmp_path, utk, epochs=1))
    reference = evaluate_run(run)
    shipped = (run / "eval" / "metrics.json").read_text()
    fast = evaluate_run(run, precision="fp32")
    assert (run / "eval" / "metrics.json").read_text() == shipped
    assert json.loads((run / "eval-fp32" / "metrics.json").read_text())["precision"] == "fp32"
    assert reference["precision"] == "fp32 (reference)"
    assert fast["gender"]["accuracy"] == reference["gender"]["accuracy"]
    assert fast["age"]["mae"] == pytest.approx(reference["age"]["mae"], abs=1e-3)
    model = ScratchNet.from_pretrained(run / "model").eval()
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    bf16, fp32 = predict_images(model, images, precision="bf16"), predict_images(model, images)
    np.testing.assert_allclose(bf16["p_female"], fp32["p_female"], atol=0.05)
    assert not np.array_equal(bf16["logit"], fp32["logit"])  # it did run in bf16


def test_split_csv_is_portable_and_reusable(tmp_path, utk):
    from train.train import prepare_data
    first = tiny_config(tmp_path, utk, out=tmp_path / "a")
    prepare_data(first, tmp_path / "a")
    text = (tmp_path / "a" / "split.csv").read_text()
    assert str(utk) not in text  # paths relative to the data folder
    reused = tiny_config(tmp_path, utk, out=tmp_path / "b", split_csv=tmp_path / "a" / "split.csv", seed=99)
    prepare_data(reused, tmp_path / "b")
    assert (tmp_path / "b" / "split.csv").read_text() == text  # same split although the seed differs


def test_training_defaults_to_the_size_the_bundled_model_reads(tmp_path):
    """`python -m train` and `python -m train.bench` without --image-size use the bundle's size (its config.json),
    so a bare run trains what ships; another bundle's size moves the default with it."""
    from model.hub import ASSETS_DIR, bundled_image_size
    for arch in ("scratch", "vgg16"):
        shipped = json.loads((ASSETS_DIR / arch / "config.json").read_text())["image_size"]
        assert parse_args(["--model", arch]).image_size == bundled_image_size(arch) == shipped
    assert parse_args(["--model", "vgg16", "--image-size", "96"]).image_size == 96
    (tmp_path / "scratch").mkdir()
    (tmp_path / "scratch" / "config.json").write_text(json.dumps({"arch": "scratch", "image_size": 48}))
    assert bundled_image_size("scratch", tmp_path) == 48


def test_training_benchmark_runs(capsys):
    from model.hub import bundled_image_size
    from train.bench import main as bench_main
    bench_main(["--model", "scratch", "--batch-size", "4", "--steps", "1"])
    out = capsys.readouterr().out
    assert bundled_image_size("scratch") == 80  # by default it times the size the bundled model reads
    assert "scratch 80px fp32" in out and "train images/s" in out
    rate = float(out.split(":")[1].split()[0])
    assert rate > 0
    bench_main(["--model", "vgg16", "--tuned-blocks", "2", "--image-size", "96", "--batch-size", "2", "--steps", "1"])
    lines = capsys.readouterr().out.splitlines()
    assert all("vgg16 96px" in line for line in lines)
    assert "block-3 feature caching" in lines[0] and "train images/s (blocks 4-5 + heads" in lines[1]


def test_bundle_ships_weights_report_and_one_split(tmp_path, utk, monkeypatch):
    from model.hub import load_model, verify_bundle
    from train.bundle import bundle_run
    run = train(tiny_config(tmp_path, utk, epochs=1))
    with pytest.raises(SystemExit, match="no evaluation"):
        bundle_run(run, tmp_path / "assets" / "scratch")
    evaluate_run(run)
    dest = bundle_run(run, tmp_path / "assets" / "scratch", half=True)
    verify_bundle(dest)
    assert (dest / "eval" / "report.md").exists() and (tmp_path / "assets" / "split.csv").exists()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    model = load_model("scratch", assets_dir=tmp_path / "assets")
    assert model.source.kind == "bundled"
    x = torch.randn(2, 3, 32, 32)
    original = ScratchNet.from_pretrained(run / "model").eval()
    torch.testing.assert_close(model.predict(x)["age"], original.predict(x)["age"], atol=0.3, rtol=0)
    # another run with another split cannot overwrite the shared split
    other = train(tiny_config(tmp_path, utk, epochs=1, seed=5, out=tmp_path / "other"))
    evaluate_run(other)
    with pytest.raises(SystemExit, match="must share one split"):
        bundle_run(other, tmp_path / "assets" / "vgg16")


# ------------------------------------------------------------------------------------ several sources

@pytest.fixture(scope="module")
def fairface(tmp_path_factory):
    # two real portraits among the val rows: the end-to-end evaluation's found-face branch runs on them
    return make_fairface_folder(tmp_path_factory.mktemp("ff"), n=200, n_val=30, real_val_faces=2)


def read_split(run):
    with open(run / "split.csv") as f:
        return list(csv.DictReader(f))


def test_utkface_and_fairface_train_together_with_a_per_source_report(tmp_path, utk, fairface):
    broken = make_fairface_folder(tmp_path / "data", n=120, n_val=5, seed=1)
    (broken / "fair_face" / "train" / "7.jpg").write_bytes(b"not a jpeg")  # unreadable: skipped and counted
    config = tiny_config(tmp_path, utk)
    config.data = [str(utk), str(broken)]
    run = train(config)
    report = json.loads((run / "data_report.json").read_text())
    counts = report["counts"]
    for split in ("train", "val"):
        sources = counts[split]["by_source"]
        assert set(sources) == {"utkface", "fairface"}
        assert sum(t["n"] for t in sources.values()) == counts[split]["n"] == report[f"{split}_images"]
        assert sum(counts[split]["gender"].values()) == counts[split]["n"]
        assert sources["utkface"]["skipped_unreadable"] == 0
    assert sum(counts[s]["by_source"]["fairface"]["skipped_unreadable"] for s in ("train", "val")) == 1
    assert counts["train"]["by_source"]["fairface"]["n"] + counts["val"]["by_source"]["fairface"]["n"] == 119
    assert "East Asian" in counts["train"]["race"] and "3-9" in counts["train"]["age_band"]
    assert report["sources"][1]["fairface"]["skipped"] == {"bad_age": 0, "bad_gender": 0, "bad_race": 0,
                                                            "missing_file": 0}
    rows = read_split(run)
    assert {r["split"] for r in rows if r["source"] == "fairface"} == {"train", "val"}  # never test
    assert all(int(r["age_low"]) < int(r["age_high"]) for r in rows if r["source"] == "fairface")
    history = read_history(run)
    assert len(history) == 2
    for row in history:
        assert np.isfinite(float(row["val_age_mae"])) and 0 <= float(row["val_age_range_acc"]) <= 1


def test_split_csv_reproduces_utkface_and_splits_fairface_apart(tmp_path, utk, fairface):
    from train.train import prepare_data
    first = tiny_config(tmp_path, utk, out=tmp_path / "a")
    prepare_data(first, tmp_path / "a")
    published = {r["path"]: r["split"] for r in read_split(tmp_path / "a")}
    mixed = tiny_config(tmp_path, utk, out=tmp_path / "b", split_csv=tmp_path / "a" / "split.csv", seed=5)
    mixed.data = [str(utk), str(fairface)]
    sets = prepare_data(mixed, tmp_path / "b")
    rows = read_split(tmp_path / "b")
    utk_rows = {r["path"].split("/")[-1]: r["split"] for r in rows if r["source"] == "utkface"}
    assert utk_rows == published  # the UTKFace split exactly, although FairFace was added and the seed differs
    ff_splits = Counter(r["split"] for r in rows if r["source"] == "fairface")
    assert set(ff_splits) == {"train", "val"} and sum(ff_splits.values()) == 200
    assert len(sets["train"].labels["age_low"]) == len(sets["train"].records) == len(sets["train"].images)


def test_limit_samples_every_source_in_proportion(tmp_path, utk, fairface):
    from train.data import load_records
    from train.train import limit_records
    records, _ = load_records([utk, fairface], tmp_path / "cache")
    chosen = limit_records(records, 100, seed=0)
    assert Counter(r.source for r in chosen) == {"utkface": 55, "fairface": 45}  # 240 : 200
    assert [r.path for r in limit_records(records, 100, seed=0)] == [r.path for r in chosen]


def test_limit_also_cuts_a_reused_split_and_keeps_each_faces_split(tmp_path, utk):
    from train.train import prepare_data
    prepare_data(tiny_config(tmp_path, utk, out=tmp_path / "a"), tmp_path / "a")
    published = {r["path"]: r["split"] for r in read_split(tmp_path / "a")}
    prepare_data(tiny_config(tmp_path, utk, out=tmp_path / "b", split_csv=tmp_path / "a" / "split.csv", limit=60),
                 tmp_path / "b")
    rows = read_split(tmp_path / "b")
    assert len(rows) == 60 < len(published)  # --limit was ignored with --split-csv before
    assert all(published[r["path"]] == r["split"] for r in rows)


def test_balance_option_and_score_without_exact_ages():
    assert parse_args([]).balance == "cells" and parse_args([]).balance_power == 0.5
    assert parse_args(["--balance", "none", "--balance-power", "0.7"]).balance_power == 0.7
    by_score = parse_args(["--select", "score"])
    range_only = {"val_loss": 1.0, "val_gender_acc": 0.9, "val_age_mae": float("nan"), "val_age_range_acc": 0.6}
    assert selection_key(by_score, range_only) == pytest.approx(10 + 4)


# ------------------------------------------------------------------------------------ evaluation on FairFace

FAIRFACE_PLOTS = ("confusion.png", "reliability.png", "age_by_range.png", "by_race.png", "by_age_band.png",
                  "end_to_end_by_race.png")


def test_evaluate_reports_utkface_test_and_fairface_val_end_to_end(tmp_path, utk, fairface, monkeypatch):
    from train import evaluate
    run = train(tiny_config(tmp_path, utk, epochs=1))
    evaluate.main(["--run", str(run), "--fairface", str(fairface), "--limit", "21"])
    utk_metrics = json.loads((run / "eval" / "metrics.json").read_text())
    assert utk_metrics["age"]["ages_0_12"]["n"] >= 1 and {"gender", "age", "by_race", "by_age_band"} <= set(utk_metrics)
    ff = json.loads((run / "eval" / "fairface" / "metrics.json").read_text())
    for name in ("report.md", "predictions.csv") + FAIRFACE_PLOTS:
        assert (run / "eval" / "fairface" / name).exists(), name
    # a race-stratified subset: 21 of 30, every race within one image of its share
    listed = Counter(r["race"] for r in csv.DictReader(open(fairface / "fairface_label_val.csv")))
    assert ff["n"] == 21 and sum(t["n"] for t in ff["by_race"].values()) == 21
    assert all(abs(ff["by_race"][race]["n"] - 21 * count / 30) < 1 for race, count in listed.items())
    assert set(ff["by_age_band"]) <= {"0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70+"}
    assert "age" not in ff and set(ff["by_gender"]) <= {"male", "female"}
    r = ff["age_range"]
    assert r["n"] == 21 and 0 <= r["range_accuracy"] <= r["interval_overlap"] + 1e-9 <= 1
    assert all(0 <= ff["gender"][k] <= 1 for k in ("accuracy", "f1_weighted", "ece", "ece_uncalibrated"))
    with open(run / "eval" / "fairface" / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    inside = [int(row["true_age_low"]) <= round(float(row["pred_age"])) <= int(row["true_age_high"]) for row in rows]
    assert len(rows) == 21 and r["range_accuracy"] == pytest.approx(np.mean(inside))
    on, off = ff["end_to_end"]["detection_on"], ff["end_to_end"]["detection_off"]
    assert off["face_found"] == 1.0 and off["n"] == on["n"] == 21
    assert 0 <= on["gender_accuracy"] <= on["face_found"] and on["age_range_accuracy"] <= on["face_found"]
    found_on = [row["detection_on_found"] == "1" for row in rows]
    assert on["face_found"] == pytest.approx(np.mean(found_on))
    # the real portraits are found, and scored from the face found (its readouts are in the row)
    real = [row for row in rows if row["file"] in ("1.jpg", "2.jpg")]
    assert len(real) == 2 and all(row["detection_on_found"] == "1" for row in real)
    assert all(0 <= float(row["detection_on_p_female"]) <= 1 and float(row["detection_on_age"]) > 0 for row in real)
    assert on["face_found"] >= 2 / 21
    off_right = [(float(row["detection_off_p_female"]) >= 0.5) == (row["gender"] == "1") for row in rows]
    assert off["gender_accuracy"] == pytest.approx(np.mean(off_right))
    assert utk_metrics["fairface_val"]["detection_off"]["gender_accuracy"] == off["gender_accuracy"]
    report = (run / "eval" / "fairface" / "report.md").read_text()
    assert "n = 21 faces" in report and "--limit 21" in report and "| detection off | 1.000 |" in report
    assert "| worst age band, 3-9 to 60-69" in report
    assert "## FairFace validation set" in (run / "eval" / "report.md").read_text()

    # a model folder + published split gives the run's UTKFace figures; FairFace missing is said in the report
    monkeypatch.delenv("FACE_FAIRFACE_DIR", raising=False)
    monkeypatch.setattr(evaluate, "DEFAULT_FAIRFACE", tmp_path / "no-fairface")
    evaluate.main(["--model", str(run / "model"), "--split-csv", str(run / "split.csv"), "--data", str(utk),
                   "--out", str(tmp_path / "eval-model")])
    again = json.loads((tmp_path / "eval-model" / "metrics.json").read_text())
    assert (again["n"], again["gender"], again["by_race"]) == (utk_metrics["n"], utk_metrics["gender"],
                                                               utk_metrics["by_race"])
    assert "FairFace validation set: not evaluated (not found" in (tmp_path / "eval-model" / "report.md").read_text()
    assert not (tmp_path / "eval-model" / "fairface").exists()
