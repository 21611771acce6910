"""The batched augmentation must agree with torchvision's functional ops it replaces for speed."""
from __future__ import annotations

import pytest
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from train.augment import BatchAugment, adjust_brightness_contrast, affine_theta, warp


def smooth_image(size: int = 64) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    return torch.stack([xx, yy, xx * yy])


@pytest.mark.parametrize("angle, translate, scale", [(10.0, (0.0, 0.0), 1.0), (-7.0, (0.03, -0.02), 0.95),
                                                      (0.0, (0.05, 0.05), 1.08), (4.0, (-0.05, 0.01), 0.92)])
def test_affine_matches_torchvision(angle, translate, scale):
    image = smooth_image()
    expected = TF.affine(image, angle=angle, translate=[translate[0] * 64, translate[1] * 64], scale=scale,
                         shear=[0.0, 0.0], interpolation=v2.InterpolationMode.BILINEAR)
    ours = warp(image[None], affine_theta(torch.tensor([angle]), torch.tensor([translate]), torch.tensor([scale])))[0]
    assert torch.allclose(ours, expected, atol=1e-5)


def test_brightness_contrast_match_torchvision():
    image = smooth_image()
    for b, c in [(1.2, 0.8), (0.75, 1.25), (1.0, 1.0)]:
        expected = TF.adjust_contrast(TF.adjust_brightness(image, b), c)
        ours = adjust_brightness_contrast(image[None], torch.tensor([b]), torch.tensor([c]))[0]
        assert torch.allclose(ours, expected, atol=1e-6)


def test_each_image_gets_its_own_parameters():
    torch.manual_seed(0)
    images = (smooth_image() * 255).to(torch.uint8).expand(16, -1, -1, -1).contiguous()
    out = BatchAugment(erase_p=0.0)(images)
    assert out.shape == (16, 3, 64, 64) and out.dtype == torch.float32
    distinct = {tuple(o.flatten()[::97].round(decimals=3).tolist()) for o in out}
    assert len(distinct) == 16
    assert -2.5 < out.mean() < 2.5  # normalised, not 0..255
