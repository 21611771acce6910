"""Cache VGG16's frozen-part output so CPU fine-tuning only runs the tuned block and the heads.

Blocks 1-4 of VGG16 never change while block 5 is tuned, so their output for each (un-augmented) image is
computed once and stored as float16. The cache file name is a hash of the images and the frozen weights,
so it is reused across runs and invalidated when either changes.
"""
from __future__ import annotations

import hashlib
import logging
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from model.nets import VGGNet
from model.preprocess import normalize
from train.checkpoint import replaced_atomically

log = logging.getLogger(__name__)


def frozen_fingerprint(model: VGGNet, images: torch.Tensor) -> str:
    h = hashlib.sha1()
    for name, tensor in model.frozen.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    h.update(str(tuple(images.shape)).encode())
    h.update(images.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


@torch.no_grad()
def frozen_features(model: VGGNet, images: torch.Tensor, cache_dir: Path | None, batch_size: int = 64,
                    device: str = "cpu", bf16: bool = False) -> torch.Tensor:
    """uint8 images [N, 3, S, S] -> float16 frozen-part features [N, C, h, w], from the cache if present.

    bf16: compute under bfloat16 autocast (measured 1.8x faster on this CPU, 0.6% relative difference)."""
    tag = "-bf16" if bf16 else ""
    cache = cache_dir / f"vgg-frozen-{frozen_fingerprint(model, images)}{tag}.npy" if cache_dir else None
    if cache is not None and cache.exists():
        log.info("using cached VGG16 features %s", cache)
        return _mapped(cache)
    if not len(images):
        return torch.empty(0)
    model.frozen.eval().to(device)
    norm = normalize()
    # written straight to a memory-mapped file and read back mapped: the block-2 output of 52k FairFace +
    # UTKFace training faces is 13.7 GB per copy, and a clean and an augmented copy do not fit in 24 GB of
    # memory together (the page cache keeps what fits; a batch reads ~17 MB, little for a disk)
    with (replaced_atomically(cache) if cache is not None else nullcontext()) as tmp:
        features = None
        for start in tqdm(range(0, len(images), batch_size), desc="caching VGG16 frozen features", leave=False):
            # channels_last input (the weights keep their layout): 53 -> 122 images/s for blocks 1-3 in bf16 on
            # the 2-core AMX Xeon (batch 64, 128 px); the cache itself is stored in the default layout
            batch = norm(images[start:start + batch_size]).to(device).contiguous(memory_format=torch.channels_last)
            with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
                out = model.forward_frozen(batch).half().cpu()
            if features is None:
                shape = (len(images), *out.shape[1:])
                features = np.empty(shape, dtype=np.float16) if tmp is None else \
                    np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=shape)
            features[start:start + len(out)] = out.numpy()
        if tmp is None:
            return torch.from_numpy(features)
        features.flush()
        del features
    return _mapped(cache)


def _mapped(cache: Path) -> torch.Tensor:
    """The cached features, mapped from disk rather than read into memory (copy-on-write: torch wants a
    writable array, and nothing writes to it)."""
    return torch.from_numpy(np.load(cache, mmap_mode="c"))
