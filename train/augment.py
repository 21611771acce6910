"""Batched training augmentation: torchvision v2's recipe, vectorised over the batch.

Why not a torchvision v2 `Compose` applied one image at a time? On this 2-core CPU it
costs ~3-10 ms per 64 px image, more than the scratch CNN's whole training step (~3.5 ms/image), so the
loop would be augmentation-bound. Here every image still gets its own random parameters, but all images
go through one `affine_grid`/`grid_sample` and a few broadcast ops: measured 0.1-0.2 ms per image.
tests/test_augment.py checks that each operation agrees with torchvision's functional version.

The domain operations make training chips look like what the demo gets from uploads and webcams: grey-scale
photos, soft focus, JPEG artefacts, dim rooms with sensor noise, small faces enlarged by the alignment. Each
hits 10-15% of the images, so the two that need one call per image (resize: torchvision; JPEG: PIL) stay cheap:
together they add ~0.1 ms per 64 px image and ~0.25 ms per 128 px image (one thread, batch of 64).
"""
from __future__ import annotations

import io
import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

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


def to_grey(images: torch.Tensor) -> torch.Tensor:
    """Float [N, 3, H, W] -> the same, every channel the luma (a black-and-white photo)."""
    return TF.rgb_to_grayscale(images, num_output_channels=3)


def blur(images: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Gaussian blur (soft focus, a cheap lens), sigma in pixels per image. torchvision's gaussian_blur
    (reflect padding, kernel out to 3 sigma of the largest) made separable and batched: one grouped conv per
    axis for all images, 2-4x faster than torchvision one image at a time (its 2-D kernel, one sigma a call)."""
    n, c, h, w = images.shape
    radius = math.ceil(3 * float(sigma.max()))
    taps = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    kernel = torch.exp(-0.5 * (taps / sigma.view(-1, 1)) ** 2)
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(c, 0)  # [n * c, taps]
    x = F.pad(images.reshape(1, n * c, h, w), [radius] * 4, mode="reflect")
    x = F.conv2d(x, kernel.view(n * c, 1, 1, -1), groups=n * c)
    return F.conv2d(x, kernel.view(n * c, 1, -1, 1), groups=n * c).view(n, c, h, w)


def jpeg(images: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """Re-encode float images as JPEG at a per-image quality (1-100): blocking and ringing like an upload.
    PIL, not torchvision's JPEG: same libjpeg output (bit for bit), but torchvision.io's encoders are
    deprecated since 0.29; ~0.2 ms per 64 px image."""
    pixels = (images * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    out = []
    for image, q in zip(pixels, quality.tolist()):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, "JPEG", quality=q)
        out.append(np.asarray(Image.open(buffer).convert("RGB")))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).to(images.device).float() / 255


def low_light(images: torch.Tensor, gamma: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """A dim room: darken with a per-image gamma (> 1; torchvision's adjust_gamma, batched) and add the
    sensor noise a webcam's raised gain brings (Gaussian, per-image std in 0-1 units)."""
    dark = images.clamp(0, 1).pow(gamma.view(-1, 1, 1, 1))
    return (dark + noise.view(-1, 1, 1, 1) * torch.randn_like(dark)).clamp(0, 1)


def shrink(images: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
    """A small face in the photo: down to `sizes` px per image (antialiased, as a camera samples) and back up
    bilinearly, as the alignment enlarges it. Sizes at or above the image's own leave it unchanged."""
    side = images.shape[-1]
    return torch.stack([TF.resize(TF.resize(image, [s, s], antialias=True), [side, side], antialias=False)
                        if s < side else image for image, s in zip(images, sizes.tolist())])


class BatchAugment:
    """uint8 [N, 3, S, S] -> augmented, normalised float batch. The recipe: flip,
    rotation <= 10 deg, scale 0.92-1.08, translation <= 5%, brightness/contrast +-25%, then the domain
    operations, each on a random share `*_p` of the images (0 turns one off): small face (down to 20-40 px and
    back up), blur (sigma 0.5-1.5 px at 64 px, scaled with the size so it blurs the face alike at any size),
    low light (gamma 1.5-2.5, noise std 0.01-0.04), grey-scale, JPEG (quality 20-60); last, random erasing.
    The order follows a camera: optics and sensor first, the file's compression last."""

    def __init__(self, degrees=10.0, translate=0.05, scale=(0.92, 1.08), brightness=0.25, contrast=0.25,
                 erase_p=0.25, small_p=0.15, small_size=(20, 40), blur_p=0.15, blur_sigma=(0.5, 1.5),
                 dark_p=0.15, dark_gamma=(1.5, 2.5), dark_noise=(0.01, 0.04), grey_p=0.1, jpeg_p=0.15,
                 jpeg_quality=(20, 60), flip_p=0.5):
        self.flip_p = flip_p  # share of images mirrored (0 for frames as a camera gives them)
        self.degrees, self.translate, self.scale = degrees, translate, scale
        self.brightness, self.contrast = brightness, contrast
        self.small_p, self.small_size = small_p, small_size
        self.blur_p, self.blur_sigma = blur_p, blur_sigma
        self.dark_p, self.dark_gamma, self.dark_noise = dark_p, dark_gamma, dark_noise
        self.grey_p, self.jpeg_p, self.jpeg_quality = grey_p, jpeg_p, jpeg_quality
        self.mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        self.erase = v2.RandomErasing(p=erase_p, scale=(0.02, 0.12), value=0)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        n, device = len(images), images.device  # on a GPU, every op and random draw stays on it
        x = images.float() / 255
        flip = torch.rand(n, device=device) < self.flip_p
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)

        t = self.translate
        shift = torch.stack([uniform(n, -t, t, device), uniform(n, -t, t, device)], -1)
        theta = affine_theta(uniform(n, -self.degrees, self.degrees, device), shift, uniform(n, *self.scale, device))
        x = warp(x, theta)
        x = adjust_brightness_contrast(x, uniform(n, 1 - self.brightness, 1 + self.brightness, device),
                                       uniform(n, 1 - self.contrast, 1 + self.contrast, device))
        x = self.domain(x)
        x = (x - self.mean.to(device)) / self.std.to(device)
        return torch.stack([self.erase(im) for im in x])  # ~0.03 ms/image: no need to vectorise

    def domain(self, x: torch.Tensor) -> torch.Tensor:
        """The upload/webcam operations on float [N, 3, S, S] in [0, 1] (in place), each on its own images."""
        side = x.shape[-1]
        x = on_some(x, self.small_p, lambda b: shrink(b, randint(len(b), *self.small_size)))
        x = on_some(x, self.blur_p, lambda b: blur(b, uniform(len(b), *self.blur_sigma, b.device) * side / 64))
        x = on_some(x, self.dark_p, lambda b: low_light(b, uniform(len(b), *self.dark_gamma, b.device),
                                                        uniform(len(b), *self.dark_noise, b.device)))
        x = on_some(x, self.grey_p, to_grey)
        return on_some(x, self.jpeg_p, lambda b: jpeg(b, randint(len(b), *self.jpeg_quality)))


def augmented_copy(images: torch.Tensor, seed: int, batch_size: int = 256) -> torch.Tensor:
    """uint8 [N, 3, S, S] -> the same images as BatchAugment changes them once, back in uint8, seeded.

    Why: on a CPU, VGG16 trains on cached frozen-block features, computed once from the clean images, so the
    tuned block never sees a blurred, dark, compressed or shifted face. The features of such a copy can be
    cached like the clean ones (train.train --augmented-copies). Seeded, so the copy and its cache's key are
    the same in every run; the global random state is left as it was."""
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    augment, out = BatchAugment(), torch.empty_like(images)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for start in range(0, len(images), batch_size):
            x = augment(images[start:start + batch_size]) * std + mean
            out[start:start + len(x)] = (x * 255).round().clamp(0, 255).to(torch.uint8)
    return out


def on_some(images: torch.Tensor, p: float, op) -> torch.Tensor:
    """Replace each image, with probability p, by `op`'s version (op: batch -> batch, drawing its own
    per-image parameters). In place: the callers own the batch, and a copy per operation would cost more."""
    chosen = torch.rand(len(images), device=images.device) < p
    if chosen.any():
        images[chosen] = op(images[chosen]).to(images.dtype)  # (ops may come back in another float type)
    return images


def uniform(n: int, low: float, high: float, device=None) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, device=device)


def randint(n: int, low: int, high: int) -> torch.Tensor:
    """n integers in [low, high], both ends included."""
    return torch.randint(low, high + 1, (n,))
