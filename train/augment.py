"""Batched training augmentation: torchvision v2's recipe, vectorised over the batch.

Why not a torchvision v2 `Compose` applied one image at a time? On this 2-core CPU it
costs ~3-10 ms per 64 px image, more than the scratch CNN's whole training step (~3.5 ms/image), so the
loop would be augmentation-bound. Here every image still gets its own random parameters, but all images
go through one `affine_grid`/`grid_sample` and a few broadcast ops: measured 0.1-0.2 ms per image.
tests/test_augment.py checks that each operation agrees with torchvision's functional version.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.transforms import v2

from model.preprocess import IMAGENET_MEAN, IMAGENET_STD

GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale


def affine_theta(angle_deg: torch.Tensor, translate: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Per-image affine (rotate by angle about the centre, scale, translate by a fraction of the size) as
    the [N, 2, 3] inverse matrices `affine_grid` wants (output pixel -> input pixel, normalised coords)."""
    a = torch.deg2rad(angle_deg)
    cos, sin = torch.cos(a) / scale, torch.sin(a) / scale
    # torchvision rotates counter-clockwise on screen for positive angles (y axis pointing down)
    rot = torch.stack([torch.stack([cos, sin], -1), torch.stack([-sin, cos], -1)], -2)
    shift = -(rot @ (2 * translate).unsqueeze(-1)).squeeze(-1)
    return torch.cat([rot, shift.unsqueeze(-1)], -1)


def warp(images: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def adjust_brightness_contrast(images: torch.Tensor, brightness: torch.Tensor, contrast: torch.Tensor) -> torch.Tensor:
    """Float [N, 3, H, W] in [0, 1]; per-image factors, applied like torchvision (brightness, then contrast)."""
    images = (images * brightness.view(-1, 1, 1, 1)).clamp(0, 1)
    weights = torch.tensor(GRAY_WEIGHTS, device=images.device).view(1, 3, 1, 1)
    mean = (images * weights).sum(1, keepdim=True).mean((2, 3), keepdim=True)
    return (contrast.view(-1, 1, 1, 1) * images + (1 - contrast.view(-1, 1, 1, 1)) * mean).clamp(0, 1)


class BatchAugment:
    """uint8 [N, 3, S, S] -> augmented, normalised float batch. The recipe: flip,
    rotation <= 10 deg, scale 0.92-1.08, translation <= 5%, brightness/contrast +-25%, random erasing."""

    def __init__(self, degrees=10.0, translate=0.05, scale=(0.92, 1.08), brightness=0.25, contrast=0.25,
                 erase_p=0.25):
        self.degrees, self.translate, self.scale = degrees, translate, scale
        self.brightness, self.contrast = brightness, contrast
        self.mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        self.erase = v2.RandomErasing(p=erase_p, scale=(0.02, 0.12), value=0)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        n = len(images)
        x = images.float() / 255
        flip = torch.rand(n) < 0.5
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)

        def uniform(low, high):
            return low + (high - low) * torch.rand(n)

        shift = torch.stack([uniform(-self.translate, self.translate), uniform(-self.translate, self.translate)], -1)
        theta = affine_theta(uniform(-self.degrees, self.degrees), shift, uniform(*self.scale))
        x = warp(x, theta)
        x = adjust_brightness_contrast(x, uniform(1 - self.brightness, 1 + self.brightness),
                                       uniform(1 - self.contrast, 1 + self.contrast))
        x = (x - self.mean) / self.std
        return torch.stack([self.erase(im) for im in x])  # ~0.03 ms/image: no need to vectorise
