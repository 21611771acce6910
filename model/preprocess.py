"""The one preprocessing definition shared by training and inference.

Faces arrive as RGB crops framed like UTKFace's "aligned & cropped" chips (see model/align.py for how
inference reproduces that framing). Both models read them at `image_size` px, scaled to [0, 1] and
normalised with ImageNet statistics (the VGG16 weights expect exactly this; the scratch CNN does not
care, and one definition is simpler than two).
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def to_uint8_tensor(face: Image.Image | np.ndarray, image_size: int) -> torch.Tensor:
    """RGB face crop (PIL or HxWx3 uint8 array) -> uint8 tensor [3, S, S] resized with antialiasing."""
    if isinstance(face, np.ndarray):
        face = Image.fromarray(face)
    face = face.convert("RGB")
    if face.size != (image_size, image_size):
        face = face.resize((image_size, image_size), Image.Resampling.BILINEAR, reducing_gap=None)
    return torch.from_numpy(np.asarray(face, dtype=np.uint8).copy()).permute(2, 0, 1)


class Normalize:
    """uint8 [.., 3, S, S] -> float, ImageNet-normalised (float input is taken as already in [0, 1]).

    What torchvision's v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]) does,
    written out: importing torchvision costs 2.7 s at every start of the app and the CLI (2-core Zen 1), and
    inference needs nothing else from it. tests/test_preprocess.py checks it against torchvision's."""

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        x = batch.to(torch.float32)
        if not batch.is_floating_point():
            x = x / torch.iinfo(batch.dtype).max
        mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(-1, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=x.device).view(-1, 1, 1)
        return (x - mean) / std


def normalize() -> Normalize:
    """uint8 [.., 3, S, S] -> float, ImageNet-normalised."""
    return Normalize()


def batch_from_faces(faces: list, image_size: int) -> torch.Tensor:
    """A list of RGB face crops -> a normalised float batch [N, 3, S, S], as the models expect."""
    if not faces:
        return torch.empty(0, 3, image_size, image_size)
    return normalize()(torch.stack([to_uint8_tensor(f, image_size) for f in faces]))


def denormalize(batch: torch.Tensor) -> torch.Tensor:
    """Inverse of `normalize`: float batch -> [0, 1] RGB (for overlays and plots)."""
    mean = torch.tensor(IMAGENET_MEAN, device=batch.device).view(-1, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=batch.device).view(-1, 1, 1)
    return (batch * std + mean).clamp(0, 1)
