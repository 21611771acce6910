"""The age warp (model/age.py, train/calibrate.py): undoing ages pulled to the middle, fitted on validation."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from model.age import AGE_BINS, age_interval, identity_warp, mean_age, warp_ages
from model.nets import ScratchNet
from train.calibrate import fit_age_warp
from train.data import age_band
from train.metrics import FLOOR_BANDS


def point_masses(ages) -> torch.Tensor:
    probs = torch.zeros(len(ages), AGE_BINS)
    probs[torch.arange(len(ages)), torch.tensor(ages)] = 1.0
    return probs


def test_identity_warp_changes_nothing_and_a_warp_moves_mean_and_quantiles_with_it():
    probs = torch.rand(5, AGE_BINS).softmax(-1)
    assert torch.equal(warp_ages(probs, identity_warp()), probs)
    warp = identity_warp().clone()
    warp[30] = 40.5  # a point mass at 30 y moves to 40.5 y: half at 40, half at 41
    moved = warp_ages(point_masses([30]), warp)
    assert moved[0, 40].item() == pytest.approx(0.5) and moved[0, 41].item() == pytest.approx(0.5)
    assert moved.sum().item() == pytest.approx(1.0)
    doubled = (identity_warp() * 2).clamp(max=AGE_BINS - 1)  # monotone: mean and quantiles double, up to 100
    probs = torch.zeros(1, AGE_BINS)
    probs[0, 10:31] = 1 / 21  # uniform 10..30 y
    warped = warp_ages(probs, doubled)
    assert mean_age(warped).item() == pytest.approx(40.0, abs=1e-4)
    low, high = age_interval(probs)
    warped_low, warped_high = age_interval(warped)
    assert (warped_low.item(), warped_high.item()) == (2 * low.item(), 2 * high.item())


def shrunk_faces(n: int, seed: int = 0):
    """Faces whose predicted distributions are centred at 12 + 0.6 * true age (sd 6 y): the young come out
    too old, the old too young. Two sources that behave alike; one labelled with decade ranges."""
    rng = np.random.default_rng(seed)
    true = rng.uniform(1, 85, n)
    centre = 12 + 0.6 * true + rng.normal(0, 3, n)
    logits = -0.5 * ((torch.arange(AGE_BINS).float()[None] - torch.tensor(centre, dtype=torch.float32)[:, None]) / 6) ** 2
    sources = np.where(np.arange(n) % 2 == 0, "exact", "ranged")
    target = np.where(sources == "exact", np.round(true), (true // 10) * 10 + 4.5)
    bands = [age_band(int(t), int(t)) for t in target]
    return logits.softmax(-1), target, bands, sources


def band_signed_errors(age: np.ndarray, target: np.ndarray, bands) -> dict[str, float]:
    bands = np.asarray(bands)
    return {b: float((age[bands == b] - target[bands == b]).mean()) for b in FLOOR_BANDS if (bands == b).sum() >= 50}


def test_fitted_warp_removes_a_known_pull_to_the_middle_on_faces_it_was_not_fitted_on():
    probs, target, bands, sources = shrunk_faces(6000, seed=0)
    warp, knots = fit_age_warp(probs, target, bands, sources)
    assert knots["predicted_at_knots"][0] == pytest.approx(12, abs=2.0)  # the pull, recovered: 12 + 0.6 * age
    assert knots["predicted_at_knots"][-1] == pytest.approx(72, abs=3.0)
    probs, target, bands, sources = shrunk_faces(6000, seed=1)  # new faces
    before = band_signed_errors(mean_age(probs).numpy(), target, bands)
    after = band_signed_errors(mean_age(warp_ages(probs, warp)).numpy(), target, bands)
    assert before["3-9"] > 6 and before["60-69"] < -8  # the fault is there ...
    assert max(abs(e) for b, e in after.items() if b != "3-9") < 1.0  # ... and gone
    assert abs(after["3-9"]) < 3.0  # mass warped below 0 y is held at 0 y, which keeps the youngest a little old
    assert torch.all(warp[1:] >= warp[:-1])  # monotone


def test_fit_refuses_a_model_whose_ages_do_not_follow_the_truth():
    probs = point_masses([40] * 200)  # every face 40 y, whatever its age
    target = np.repeat([5.0, 15.0, 25.0, 35.0, 45.0, 55.0, 65.0, 75.0], 25)
    with pytest.raises(ValueError, match="too flat"):
        fit_age_warp(probs, target, [age_band(int(t), int(t)) for t in target], ["a"] * 200)


def test_model_files_without_a_warp_load_with_the_identity_and_a_warp_reaches_every_readout():
    model = ScratchNet(image_size=32, widths=(4, 8), hidden=8).eval()
    state = {k: v for k, v in model.state_dict().items() if k != "age_warp"}
    fresh = ScratchNet(image_size=32, widths=(4, 8), hidden=8)
    fresh.age_warp.fill_(3.0)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.age_warp, identity_warp())
    x = torch.randn(4, 3, 32, 32)
    plain = model.predict(x)
    model.age_warp.copy_((identity_warp() + 10).clamp(max=AGE_BINS - 1))  # everyone 10 years older
    older = model.predict(x)
    assert torch.allclose(older["age"], (plain["age_probs"] * model.age_warp).sum(-1), atol=1e-4)
    assert torch.all(older["age"] > plain["age"] + 9)
    assert torch.all(older["age_low"] <= older["age"]) and torch.all(older["age"] <= older["age_high"])
    assert torch.allclose(older["age_probs"].sum(-1), torch.ones(4))
