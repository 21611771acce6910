"""The batched augmentation must agree with torchvision's functional ops it replaces for speed."""
from __future__ import annotations

import pytest
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from train.augment import (BatchAugment, adjust_brightness_contrast, affine_theta, blur, jpeg, low_light, on_some,
                           shrink, to_grey, warp)


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


def textured_image(size: int = 64, seed: int = 0) -> torch.Tensor:
    """Smooth gradients plus fine detail (stripes and noise), in [0, 1]: something to blur and compress."""
    noise = torch.rand(3, size, size, generator=torch.Generator().manual_seed(seed))
    stripes = torch.sin(torch.arange(size) * 1.3).view(1, 1, -1) * 0.5 + 0.5
    return (0.5 * smooth_image(size) + 0.25 * stripes + 0.25 * noise).clamp(0, 1)


def high_frequency_energy(images: torch.Tensor) -> float:
    """Mean squared difference between neighbouring pixels: what blur removes."""
    return float((images.diff(dim=-1) ** 2).mean() + (images.diff(dim=-2) ** 2).mean())


def test_grey_makes_the_channels_equal_luma():
    image = textured_image()[None]
    grey = to_grey(image)
    assert grey.shape == image.shape
    assert torch.equal(grey[:, 0], grey[:, 1]) and torch.equal(grey[:, 1], grey[:, 2])
    luma = 0.2989 * image[:, 0] + 0.587 * image[:, 1] + 0.114 * image[:, 2]
    assert torch.allclose(grey[:, 0], luma, atol=1e-6)


def test_blur_removes_high_frequencies_per_image_sigma():
    images = textured_image().expand(3, -1, -1, -1)
    blurred = blur(images, torch.tensor([0.5, 1.0, 1.5]))
    energy = [high_frequency_energy(b) for b in blurred]
    assert energy[0] < 0.6 * high_frequency_energy(images[0])  # even the mildest blur is clear
    assert energy[0] > energy[1] > energy[2]  # each image got its own sigma
    assert torch.allclose(blurred.mean((1, 2, 3)), images.mean((1, 2, 3)), atol=0.01)  # brightness kept
    for image, out, sigma in zip(images, blurred, (0.5, 1.0, 1.5)):  # the kernel reaches 3 x the largest sigma
        assert torch.allclose(out, TF.gaussian_blur(image, [11, 11], [sigma, sigma]), atol=1e-6)


def test_jpeg_changes_the_image_a_little_more_at_low_quality():
    images = textured_image().expand(2, -1, -1, -1)
    out = jpeg(images, torch.tensor([60, 20]))
    assert out.shape == images.shape and out.dtype == torch.float32
    error = (out - images).abs().mean((1, 2, 3))
    assert 0.005 < error[0] < error[1] < 0.1  # visibly changed, still the same picture


def test_low_light_darkens_like_adjust_gamma_and_adds_noise():
    images = textured_image().expand(2, -1, -1, -1)
    torch.manual_seed(0)
    dark = low_light(images, torch.tensor([2.0, 2.0]), torch.tensor([0.0, 0.03]))
    assert dark.mean() < 0.75 * images.mean() and dark.min() >= 0 and dark.max() <= 1
    assert torch.allclose(dark[0], TF.adjust_gamma(images[0], 2.0), atol=1e-6)
    assert 0.02 < float((dark[1] - dark[0]).std()) < 0.035  # the noise std asked for (a little clipped)


def test_shrink_matches_a_down_up_resize():
    images = textured_image(128).expand(2, -1, -1, -1)
    out = shrink(images, torch.tensor([24, 128]))
    expected = TF.resize(TF.resize(images[0], [24, 24], antialias=True), [128, 128], antialias=False)
    assert torch.allclose(out[0], expected)
    assert torch.equal(out[1], images[1])  # not smaller than the image: unchanged
    assert high_frequency_energy(out[0]) < 0.2 * high_frequency_energy(images[0])


def test_on_some_changes_about_p_of_the_images():
    torch.manual_seed(0)
    images = torch.zeros(1000, 3, 4, 4)
    out = on_some(images, 0.15, lambda b: b + 1)
    changed = int((out.flatten(1) == 1).all(1).sum())
    assert 110 < changed < 190 and int((out.flatten(1) == 0).all(1).sum()) == 1000 - changed
    assert torch.equal(on_some(torch.zeros(8, 3, 4, 4), 0.0, lambda b: b + 1), torch.zeros(8, 3, 4, 4))


@pytest.mark.parametrize("size", [64, 128])
def test_domain_probabilities_reach_the_operations(size):
    """grey_p=1 with everything else off: every output is grey once un-normalised; grey_p=0: none is."""
    torch.manual_seed(0)
    images = (textured_image(size) * 255).to(torch.uint8).expand(8, -1, -1, -1).contiguous()
    off = dict(erase_p=0.0, small_p=0.0, blur_p=0.0, dark_p=0.0, jpeg_p=0.0)
    for grey_p, expect_grey in ((1.0, True), (0.0, False)):
        augment = BatchAugment(grey_p=grey_p, **off)
        out = augment(images) * augment.std + augment.mean
        spread = (out.max(1).values - out.min(1).values).amax((1, 2))
        assert bool((spread < 1e-5).all()) == expect_grey and bool((spread > 0.05).all()) != expect_grey


def test_default_augmentation_keeps_shape_range_and_variety():
    torch.manual_seed(0)
    images = (textured_image() * 255).to(torch.uint8).expand(64, -1, -1, -1).contiguous()
    out = BatchAugment()(images)
    assert out.shape == (64, 3, 64, 64) and torch.isfinite(out).all()
    assert -2.5 < out.min() and out.max() < 2.7  # normalised [0, 1] images, nothing out of range


def test_flip_p_is_the_share_of_mirrored_images():
    """Everything else off: flip_p=0 gives the images as they are (frames as a camera gives them), 1 mirrors
    every image, and the default 0.5 about half."""
    torch.manual_seed(0)
    images = (textured_image() * 255).to(torch.uint8).expand(200, -1, -1, -1).contiguous()
    off = dict(degrees=0.0, translate=0.0, scale=(1.0, 1.0), brightness=0.0, contrast=0.0, erase_p=0.0,
               small_p=0.0, blur_p=0.0, dark_p=0.0, grey_p=0.0, jpeg_p=0.0)
    as_is, mirrored = BatchAugment(**off, flip_p=0.0)(images[:1]), BatchAugment(**off, flip_p=1.0)(images[:1])
    torch.testing.assert_close(mirrored, as_is.flip(-1), atol=1e-4, rtol=0)
    assert not torch.allclose(as_is, mirrored, atol=1e-2)
    for p, expected in ((0.0, 0), (1.0, 200)):
        out = BatchAugment(**off, flip_p=p)(images)
        assert int(((out - mirrored).abs().amax((1, 2, 3)) < 1e-4).sum()) == expected
    halves = ((BatchAugment(**off)(images) - mirrored).abs().amax((1, 2, 3)) < 1e-4).sum()
    assert 70 < int(halves) < 130
