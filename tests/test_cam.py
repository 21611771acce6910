"""Grad-CAM: the fast maps agree with pytorch-grad-cam's, have the right shape and range, explain the right thing."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from model.cam import AgeTarget, GenderTarget, explain, library_cams, targets_for
from model.nets import ScratchNet, VGGNet

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def faces_batch(size: int, n: int = 3) -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(n, 3, size, size)


@pytest.fixture(scope="module")
def scratch():
    torch.manual_seed(0)
    return ScratchNet().eval()


@pytest.fixture(scope="module")
def vgg():
    # A random VGG16 can weigh every 4x4 activation of a face negatively, so that its map is all zero (seed 0
    # does for the age head since model.nets.vgg16_features draws its weights in another order): seed 1 gives
    # maps with something to compare on all three faces.
    torch.manual_seed(1)
    return VGGNet(tuned_blocks=1, image_size=64).eval()  # 64 px: same layers, a quarter of the time


def test_readouts_match_predict(scratch):
    batch = faces_batch(64)
    scratch.gender_temperature.fill_(1.7)  # calibration must be applied the same way
    try:
        expected = scratch.predict(batch)
        got = scratch.readouts(scratch(batch))
        for key in expected:
            torch.testing.assert_close(got[key], expected[key])
        predicted, _ = explain(scratch, batch, ())
        for key in expected:
            torch.testing.assert_close(predicted[key], expected[key])
    finally:
        scratch.gender_temperature.fill_(1.0)


@pytest.mark.parametrize("which", ["scratch", "vgg"])
def test_fast_maps_agree_with_the_library(which, request):
    model = request.getfixturevalue(which)
    batch = faces_batch(model.image_size)
    predicted, cams = explain(model, batch, ("gender", "age"))
    for head in ("gender", "age"):
        maps = cams[head]
        assert maps.shape == (3, model.image_size, model.image_size) and maps.dtype == np.float32
        assert maps.min() >= 0 and maps.max() <= 1 and np.allclose(maps.max(axis=(1, 2)), 1, atol=1e-4)
        reference = library_cams(model, batch, targets_for(head, predicted))
        assert np.abs(maps - reference).max() < 1e-4, head
    assert not np.allclose(cams["gender"], cams["age"])  # two heads, two explanations


def test_frozen_trunk_still_gets_maps():
    torch.manual_seed(0)
    model = VGGNet(tuned_blocks=0, image_size=64).eval()  # the CAM layer sits in the frozen part (no requires_grad)
    batch = faces_batch(model.image_size, 1)
    predicted, cams = explain(model, batch, ("gender",))
    model.requires_grad_(True)  # pytorch-grad-cam gets no gradient at a frozen layer: unfreeze for it
    reference = library_cams(model, batch, targets_for("gender", predicted))
    assert np.abs(cams["gender"] - reference).max() < 1e-4


def test_targets_score_what_was_predicted():
    row = torch.zeros(1 + 101)
    row[0] = 2.0
    assert GenderTarget(True)(row) == 2.0 and GenderTarget(False)(row) == -2.0
    # uniform age logits: P(20 <= age <= 29) = 10/101
    assert torch.isclose(AgeTarget(20, 29)(row), torch.log(torch.tensor(10 / 101)))
    predicted = {"p_female": torch.tensor([0.9, 0.2]), "age_low": torch.tensor([20., 5.]),
                 "age_high": torch.tensor([30., 12.])}
    gender = targets_for("gender", predicted)
    assert [t.sign for t in gender] == [1.0, -1.0]
    assert [(t.low, t.high) for t in targets_for("age", predicted)] == [(20, 30), (5, 12)]
    with pytest.raises(ValueError):
        targets_for("race", predicted)


@pytest.mark.parametrize("which", ["scratch", "vgg"])
def test_split_at_cam_layer_is_the_whole_model(which, request):
    model = request.getfixturevalue(which)
    body, tail = model.split_at_cam_layer()
    last = body[-1][-1] if isinstance(body[-1], torch.nn.Sequential) else body[-1]
    assert last is model.cam_layer
    batch = faces_batch(model.image_size, 2)
    torch.testing.assert_close(tail(body(batch)), model(batch), rtol=0, atol=0)
    explain(model, batch)
    assert not model.cam_layer._forward_hooks and model.training is False
