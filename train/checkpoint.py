"""Atomic writes for checkpoints, run files and the training caches: write to a temp file, then rename.

A kill mid-save leaves the previous file intact, never a truncated one. Resume checkpoints are our own
files, loaded with `weights_only=True` (tensors and plain containers only: no code execution).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch


@contextmanager
def replaced_atomically(path: Path) -> Iterator[Path]:
    """A temp path beside `path` for the block to write, renamed onto `path` when the block ends and removed if
    it raises: a run killed mid-write leaves the previous file, never a truncated one. The temp name is fixed,
    NAME.tmp, so what a killed run left (a feature cache is 10 GB) is overwritten by the next write rather than
    kept, and no pattern for the real files (push's "*.json", a cache's "*.npz") picks it up; one process writes
    each file (under DDP, process 0). np.save / np.savez would add their suffix to it: give them the open file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    with replaced_atomically(path) as tmp:
        tmp.write_text(text)


def atomic_write_json(path: Path, data) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def save_checkpoint(path: Path, state: dict) -> None:
    with replaced_atomically(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def save_model_dir(model, directory: Path) -> None:
    """`save_pretrained` into a temp dir beside `directory`, then swap it in."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}."))
    model.save_pretrained(tmp)
    old = directory.with_name(f".{directory.name}.old")
    if directory.exists():
        os.replace(directory, old)
    os.replace(tmp, directory)
    shutil.rmtree(old, ignore_errors=True)
