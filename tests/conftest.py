"""Shared test fixtures. Everything is offline; data that cannot be made here comes from ../shared."""
from __future__ import annotations

import csv
import os
from contextlib import contextmanager
from pathlib import Path

import pytest

from model.paths import PROJECT_ROOT as ROOT, SHARED_DIR as SHARED

# Never touch the network from tests, and keep Hugging Face / Gradio quiet and local.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared beside the project (also in CI). Missing means a broken setup: fail, never skip."""
    assert SHARED.is_dir(), f"{SHARED} not found: tests need ../shared beside the project root"
    return SHARED


@contextmanager
def torch_threads(count: int):
    """torch's intra-op threads set to `count` inside the block, restored after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def torch_one_thread():
    """Run a module's torch work on one thread, then restore. On the shared 2-core machines two threads
    contend with everything else and run ~10x slower on small work (scratch forward: 11 ms on 1 thread, 109 ms
    on 2). Large convolutions are the exception: see `torch_threads` in tests/test_fast_inference.py."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    """An untrained scratch model saved like a training run's output (tests never need trained weights)."""
    import torch

    from model.nets import ScratchNet

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("model")
    ScratchNet().save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def test_sample(shared_dir, tmp_path_factory):
    """200 faces spread over the shipped split's test part (every 17th row: the rows are sorted by file
    name, which starts with the age), read from ../shared's UTKFace archive. Only these 200 are extracted
    and labelled by train.data's own name parser (the whole archive, deduplicated, took ~12 s)."""
    import tarfile

    from train.data import scan_utkface
    with open(ROOT / "assets" / "models" / "split.csv") as f:
        names = [Path(row["path"]).name for row in csv.DictReader(f) if row["split"] == "test"][::17][:200]
    wanted, folder = set(names), tmp_path_factory.mktemp("test-sample")
    with tarfile.open(shared_dir / "data" / "UTKFace.tar.gz", "r:gz") as tar:
        for member in tar:  # one pass through the stream
            if member.isfile() and Path(member.name).name in wanted:
                tar.extract(member, folder, filter="data")
    records, unparsed = scan_utkface(folder)
    by_name = {Path(r.path).name: r for r in records}
    assert not unparsed and set(by_name) == wanted, "the shipped split names files the archive lacks"
    return [by_name[name] for name in names]


@pytest.fixture
def cpu(monkeypatch):
    """Pretend to run on a CPU with the given feature flags (`cpu("avx512_vnni", ...)`), with $FACE_PRECISION
    and oneDNN's ISA cap unset: how model/fast.py chooses a precision (test_fast_inference.py, test_int8.py)."""
    import model.fast as fast
    for name in (fast.PRECISION_ENV, *fast.ISA_CAP_VARIABLES):
        monkeypatch.delenv(name, raising=False)
    return lambda *flags: monkeypatch.setattr(fast, "cpu_flags", lambda: set(flags))
