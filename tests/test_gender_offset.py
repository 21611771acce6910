"""The gender offset (train/calibrate.py): fitted on validation so women and men are misread about as often,
carried by the model and applied to every gender readout."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from model.nets import ScratchNet
from train.calibrate import MIN_GROUP_FOR_OFFSET, fit_gender_offset, gender_gaps


def faces(n: int, women_shift: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Scaled logits of n women and n men, the model's evidence for women weaker by women_shift."""
    rng = np.random.default_rng(seed)
    women = rng.normal(2.0 - women_shift, 1.0, n)
    men = rng.normal(-2.0, 1.0, n)
    return np.concatenate([women, men]), np.concatenate([np.ones(n, int), np.zeros(n, int)])


def test_a_known_lean_against_women_is_undone():
    logit, gender = faces(4000, women_shift=0.6, seed=0)
    sources = ["a"] * len(logit)
    assert gender_gaps(logit, gender, sources, 0.0)["a"] < -0.04  # women misread 3x as often as men (8% vs 2.3%)
    offset = fit_gender_offset(logit, gender, sources)
    assert offset == pytest.approx(0.3, abs=0.06)  # the line halfway between the two means
    assert abs(gender_gaps(logit, gender, sources, offset)["a"]) < 0.01
    # on new faces with the same lean, the fitted offset keeps the two error rates together
    new_logit, new_gender = faces(4000, women_shift=0.6, seed=1)
    assert abs(gender_gaps(new_logit, new_gender, sources, offset)["a"]) < 0.02


def test_one_offset_splits_the_difference_between_a_fair_source_and_a_leaning_one():
    fair_logit, fair_gender = faces(3000, women_shift=0.0, seed=2)
    lean_logit, lean_gender = faces(3000, women_shift=0.8, seed=3)
    logit, gender = np.concatenate([fair_logit, lean_logit]), np.concatenate([fair_gender, lean_gender])
    sources = ["fair"] * len(fair_logit) + ["lean"] * len(lean_logit)
    offset = fit_gender_offset(logit, gender, sources)
    worst = max(map(abs, gender_gaps(logit, gender, sources, offset).values()))
    assert worst < max(map(abs, gender_gaps(logit, gender, sources, 0.0).values()))
    lean_alone = fit_gender_offset(lean_logit, lean_gender, ["lean"] * len(lean_logit))
    assert 0 < offset < lean_alone
    assert worst < max(map(abs, gender_gaps(logit, gender, sources, lean_alone).values()))


def test_too_few_faces_leave_the_line_where_it_was():
    logit, gender = faces(MIN_GROUP_FOR_OFFSET - 1, women_shift=1.5, seed=4)
    assert fit_gender_offset(logit, gender, ["a"] * len(logit)) == 0.0


def test_the_offset_reaches_the_readout_and_old_files_load_without_one():
    model = ScratchNet(image_size=32, widths=(4, 8), hidden=8).eval()
    model.gender_temperature.fill_(1.5)
    x = torch.randn(6, 3, 32, 32)
    logit = model(x)[:, 0]
    model.gender_offset.fill_(0.4)
    expected = torch.sigmoid(logit / 1.5 + 0.4)
    assert torch.allclose(model.predict(x)["p_female"], expected, atol=1e-6)
    old = {k: v for k, v in model.state_dict().items() if k != "gender_offset"}
    fresh = ScratchNet(image_size=32, widths=(4, 8), hidden=8)
    fresh.gender_offset.fill_(2.0)
    fresh.load_state_dict(old)
    assert float(fresh.gender_offset) == 0.0
