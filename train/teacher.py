"""Knowledge distillation: a stronger model's readings of each training face, as soft targets for another.

Why: the scratch CNN reads faces at 80 px in a few milliseconds but is the weaker model; the VGG16 (and the
ensemble of both) reads them better at several times the cost. Labels say only "female" or "20-29"; the
teacher's reading says how female and which ages within and around the range, which a small network learns
from more easily (Hinton et al. 2015, "Distilling the knowledge in a neural network").

The teacher reads each training face once, un-augmented, at its own input size and as it reads faces in the
app (mirrored where its config says so, then calibrated: temperature, gender offset, age warp). The readings
are cached on disk under a hash of the teacher's weights and the images, like the feature cache
(train/features.py). The student then trains on a mix of the labels' loss and these readings'
(train/losses.distill_loss), the share set by --distill.
"""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import torch
from tqdm import tqdm

from model.fast import fast_model
from model.nets import AgeGenderNet
from model.preprocess import normalize
from train.checkpoint import replaced_atomically

log = logging.getLogger(__name__)


class Readings(NamedTuple):
    p_female: torch.Tensor  # [N] float32
    age_probs: torch.Tensor  # [N, AGE_BINS] float32, each row sums to 1


def fingerprint(teacher: AgeGenderNet, images: torch.Tensor) -> str:
    """A hash of everything the readings depend on: the teacher's weights and buffers (its members' too, for an
    ensemble), how it reads (size, mirroring, members' weights) and the images."""
    h = hashlib.sha1()
    for name, tensor in teacher.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().float().contiguous().numpy().tobytes())
    h.update(repr((type(teacher).__name__, teacher.image_size, teacher.mirror_average,
                   getattr(teacher, "weights", None), getattr(teacher, "age_pool", None))).encode())
    h.update(str(tuple(images.shape)).encode())
    h.update(images.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


@torch.no_grad()
def read_faces(teacher: AgeGenderNet, images: torch.Tensor, device: torch.device | str = "cpu", bf16: bool = False,
               batch_size: int = 64) -> Readings:
    """uint8 faces [N, 3, S, S] at the teacher's size -> its calibrated readings, as predict gives them. On a
    CPU through the app's fast path (model/fast.py; the ensemble at 160 px in bf16 on the 2-core AMX Xeon: 12
    faces/s under autocast, 28 this way, so 52k training faces take 31 minutes); elsewhere under autocast."""
    teacher = teacher.eval().to(device)
    on_cpu = torch.device(device).type == "cpu"
    reader = fast_model(teacher, "bf16" if bf16 else "fp32") if on_cpu else teacher
    norm = normalize()
    p_female, age_probs = [], []
    for start in tqdm(range(0, len(images), batch_size), desc="teacher reading the training faces", leave=False):
        batch = norm(images[start:start + batch_size]).to(device)
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16 and not on_cpu):
            read = reader.predict(batch)
        p_female.append(read["p_female"].cpu())
        age_probs.append(read["age_probs"].cpu())
    if not p_female:
        return Readings(torch.empty(0), torch.empty(0, 0))
    return Readings(torch.cat(p_female), torch.cat(age_probs))


def teacher_readings(teacher: AgeGenderNet, images_at: Callable[[int], torch.Tensor], cache_dir: Path | None,
                     device: torch.device | str = "cpu", bf16: bool = False) -> Readings:
    """The teacher's readings of the faces `images_at(teacher.image_size)` returns (uint8, in training order),
    from the cache when the same teacher read the same images before."""
    images = images_at(teacher.image_size)
    tag = "-bf16" if bf16 else ""
    cache = cache_dir / f"teacher-{fingerprint(teacher, images)}{tag}.npz" if cache_dir else None
    if cache is not None and cache.exists():
        log.info("using the teacher's cached readings %s", cache)
        stored = np.load(cache)
        return Readings(torch.from_numpy(stored["p_female"]), torch.from_numpy(stored["age_probs"]))
    readings = read_faces(teacher, images, device, bf16)
    if cache is not None:
        with replaced_atomically(cache) as tmp, tmp.open("wb") as f:
            np.savez(f, p_female=readings.p_female.numpy(), age_probs=readings.age_probs.numpy())
    return readings
