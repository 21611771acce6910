"""The loop on several processes (`torchrun -m train`, 2 CPU processes over gloo) and the GPU-first choices."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from model.age import AGE_BINS
from model.nets import ScratchNet, VGGNet
from synthetic import make_utkface_folder
from train.distributed import DEBUG_ENV, Processes, start
from train.train import Inputs, parse_args, prepare_data, run_eval, uses_feature_cache

ROOT = Path(__file__).resolve().parents[1]


def test_shares_are_equal_cover_the_epoch_and_split_each_batch():
    order = torch.randperm(11, generator=torch.Generator().manual_seed(0))
    shares = [Processes(rank=r, world=3).shard(order) for r in range(3)]
    assert [len(s) for s in shares] == [4, 4, 4]  # padded with the order's first index: as many steps each
    assert sorted(torch.cat(shares).tolist()) == sorted(order.tolist() + order[:1].tolist())
    # batch 6 over 3 processes = 2 each: step k of the three together is the one-process run's batch k
    for k, batch in enumerate(torch.cat([order, order[:1]]).split(6)):
        together = torch.cat([s.split(2)[k] for s in shares])
        assert sorted(together.tolist()) == sorted(batch.tolist())


def test_one_process_needs_no_process_group(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    procs = start(torch.device("cpu"))
    assert procs.main and procs.world == 1 and not dist.is_initialized()
    module = torch.nn.Linear(2, 1)
    assert procs.wrap(module) is module
    assert procs.all_sum([3, 0.5]) == [3, 0.5] and procs.broadcast({"a": 1}) == {"a": 1}
    assert procs.shard(torch.arange(5)).tolist() == list(range(5))


@pytest.mark.filterwarnings("ignore:This DataLoader will create")  # 4 workers on this 2-core machine
def test_gpu_trains_every_vgg_block_on_images_and_the_cpu_keeps_its_cache():
    """--tuned-blocks 5 leaves nothing frozen: images feed the whole network, augmented on the device, with
    DataLoader workers on a GPU. On a CPU, a block-5 run still trains on cached block-4 features."""
    gpu_run = parse_args(["--model", "vgg16", "--tuned-blocks", "5", "--precision", "bf16", "--image-size", "32"])
    every_block = VGGNet(image_size=32, tuned_blocks=5)
    assert len(every_block.frozen) == 0
    cuda, cpu = torch.device("cuda"), torch.device("cpu")  # a device name only: nothing runs on it here
    assert not uses_feature_cache(gpu_run, every_block, cuda) and not uses_feature_cache(gpu_run, every_block, cpu)
    block5 = VGGNet(image_size=32, tuned_blocks=1)
    assert uses_feature_cache(gpu_run, block5, cpu) and not uses_feature_cache(gpu_run, block5, cuda)
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    inputs = Inputs(gpu_run, every_block, {"train": (images, None, None), "val": (images, None, None)}, cuda)
    assert not inputs.cached and inputs.data["train"] is images  # uint8 stays in memory until each batch
    assert inputs.workers == 4 and inputs.batches("train", torch.arange(4), 2).pin_memory
    on_cpu = Inputs(gpu_run, every_block, {"train": (images, None, None), "val": (images, None, None)}, cpu)
    assert on_cpu.workers == 0 and not on_cpu.batches("train", torch.arange(4), 2).pin_memory


def test_bf16_autocasts_the_network_not_the_augmentation():
    """uint8 goes to the device and is augmented there in float32; only the network runs under autocast."""
    cfg = parse_args(["--image-size", "32", "--precision", "bf16"])
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    inputs = Inputs(cfg, ScratchNet(image_size=32), {"train": (images, None, None), "val": (images, None, None)},
                    torch.device("cpu"))
    torch.manual_seed(0)
    out = inputs.forward("train", torch.arange(64), train=True)  # every augmentation op drawn for some image
    assert out.dtype == torch.float32 and out.shape == (64, 1 + AGE_BINS) and out.isfinite().all()
    calls, augment = [], inputs.augment
    inputs.augment = lambda x: calls.append(("augment", x.dtype, torch.is_autocast_enabled("cpu"))) or augment(x)
    inputs.net = lambda x: calls.append(("net", x.dtype, torch.is_autocast_enabled("cpu"))) or out
    inputs.forward("train", torch.arange(4), train=True)
    assert calls == [("augment", torch.uint8, False), ("net", torch.float32, True)]


def test_worker_processes_gather_the_same_batches():
    cfg = parse_args(["--image-size", "8", "--workers", "2"])
    images = torch.randint(0, 256, (10, 3, 8, 8), dtype=torch.uint8)
    inputs = Inputs(cfg, ScratchNet(image_size=8), {"train": (images, None, None), "val": (images, None, None)},
                    torch.device("cpu"))
    order = torch.randperm(10)
    batches = list(inputs.batches("train", order, 4))
    assert inputs.workers == 2 and [len(idx) for idx, _ in batches] == [4, 4, 2]
    for (idx, rows), expected in zip(batches, order.split(4)):
        assert torch.equal(idx, expected) and torch.equal(rows, images[expected])


def test_a_batch_size_that_does_not_split_over_the_processes_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr("train.train.distributed.start", lambda device: Processes(rank=0, world=3, device=device))
    with pytest.raises(SystemExit, match="--batch-size 64 does not split evenly over 3 processes"):
        from train.train import train
        train(parse_args(["--out", str(tmp_path / "run"), "--batch-size", "64"]))


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_two_processes_share_each_epoch_and_process_0_alone_reports(tmp_path):
    data = make_utkface_folder(tmp_path / "data", n=120)
    run, debug = tmp_path / "run", tmp_path / "debug"
    args = ["--data", str(data), "--out", str(run), "--device", "cpu", "--epochs", "2", "--image-size", "32",
            "--batch-size", "16", "--balance", "none", "--cache-dir", str(tmp_path / "cache")]
    env = {**os.environ, DEBUG_ENV: str(debug), "OMP_NUM_THREADS": "1"}
    launched = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                               "-m", "train", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert launched.returncode == 0, launched.stderr[-3000:]

    with open(run / "split.csv") as f:
        n_train = sum(row["split"] == "train" for row in csv.DictReader(f))
    ranks = [read_jsonl(debug / f"rank{r}.jsonl") for r in (0, 1)]
    with open(run / "history.csv") as f:
        history = list(csv.DictReader(f))
    assert [len(r) for r in ranks] == [2, 2] and len(history) == 2
    for epoch, row in enumerate(history):
        first, second = (r[epoch] for r in ranks)
        # each process trained on its own half of the epoch (one index twice if the count is odd)
        assert len(first["indices"]) == len(second["indices"]) == (n_train + 1) // 2
        assert set(first["indices"]) | set(second["indices"]) == set(range(n_train))
        assert len(set(first["indices"]) & set(second["indices"])) == n_train % 2
        # DDP averaged the gradients: both hold the same weights after each epoch
        assert first["param_sum"] == pytest.approx(second["param_sum"], rel=1e-9)
        # the reported train loss is over both halves
        both = (first["sums"]["loss"] + second["sums"]["loss"]) / (first["seen"] + second["seen"])
        assert float(row["train_loss"]) == pytest.approx(both, rel=1e-9)
        assert first["sums"]["loss"] / first["seen"] != pytest.approx(both, rel=1e-6)

    # process 0 evaluated the whole validation split: its numbers are a one-process evaluation of the saved model
    metrics = json.loads((run / "metrics.json").read_text())
    cfg = parse_args(args + ["--split-csv", str(run / "split.csv")])
    sets = prepare_data(cfg, tmp_path / "check")
    val, _ = run_eval(Inputs(cfg, ScratchNet.from_pretrained(run / "model"), sets, torch.device("cpu")),
                      "val", sets["val"].labels, cfg)
    best = min(history, key=lambda row: float(row["val_loss"]))
    for name in ("loss", "gender_acc", "age_mae"):
        assert metrics["val_at_best"][name] == pytest.approx(val[name], rel=1e-5)
        assert float(best[f"val_{name}"]) == pytest.approx(val[name], rel=1e-5)

    # one process wrote and reported: the run files once, each epoch logged once, no half-written files
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.pt", "curves.png", "data_report.json",
                                                     "history.csv", "metrics.json", "model", "split.csv",
                                                     "train_config.json"]
    assert launched.stderr.count("epoch 1: train loss") == 1 and launched.stderr.count("best epoch") == 1
    assert "training on cpu x 2 processes" in launched.stderr
