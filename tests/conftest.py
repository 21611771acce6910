"""Shared test fixtures. Everything is offline; data that cannot be made here comes from ../shared."""
from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACE_SHARED_DIR", ROOT.parent / "shared"))

# Never touch the network from tests, and keep Hugging Face / Gradio quiet and local.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared beside the project (also in CI). Missing means a broken setup: fail, never skip."""
    assert SHARED.is_dir(), f"{SHARED} not found: tests need ../shared beside the project root"
    return SHARED


@pytest.fixture(scope="module")
def torch_one_thread():
    """Run a module's torch work on one thread, then restore. On the shared 2-core machines two threads
    contend with everything else and run ~10x slower (scratch forward: 11 ms on 1 thread, 109 ms on 2)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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
    name, which starts with the age), read from ../shared's UTKFace archive (extracted once per session:
    ~12 s)."""
    from train.data import load_records
    records, _ = load_records([shared_dir / "data" / "UTKFace.tar.gz"], tmp_path_factory.mktemp("cache"))
    by_name = {Path(r.path).name: r for r in records}
    with open(ROOT / "assets" / "models" / "split.csv") as f:
        names = [row["path"] for row in csv.DictReader(f) if row["split"] == "test"][::17][:200]
    return [by_name[Path(name).name] for name in names]
