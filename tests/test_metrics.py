"""Evaluation metrics on examples small enough to compute by hand."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from model.age import AGE_BINS, age_interval, expected_age
from train.calibrate import fit_temperature
from train.data import UNKNOWN
from train.metrics import (age_mae, all_metrics, confusion, cumulative_score, expected_calibration_error,
                           f1_weighted, gender_accuracy, reliability)

P = np.array([0.9, 0.8, 0.3, 0.6, 0.2, 0.45])  # p_female
G = np.array([1, 1, 0, 0, 1, 0])  # true: female, female, male, male, female, male


def test_gender_accuracy_and_confusion():
    # predicted female: 0.9, 0.8, 0.6 -> correct, correct, wrong; predicted male: 0.3, 0.2, 0.45 -> ok, wrong, ok
    assert gender_accuracy(P, G) == pytest.approx(4 / 6)
    assert confusion(P, G) == [[2, 1], [1, 2]]


def test_weighted_f1_by_hand():
    # female: tp=2, fp=1, fn=1 -> F1 = 4/6; male: tp=2, fp=1, fn=1 -> 4/6; supports 3 and 3
    assert f1_weighted(P, G) == pytest.approx(2 / 3)
    p, g = np.array([0.9, 0.9, 0.9, 0.1]), np.array([1, 1, 0, 0])
    # female: tp=2 fp=1 fn=0 -> 0.8 (support 2); male: tp=1 fp=0 fn=1 -> 2/3 (support 2)
    assert f1_weighted(p, g) == pytest.approx((0.8 + 2 / 3) / 2)


def test_ece_by_hand():
    # confidences: 0.9, 0.8, 0.7, 0.6, 0.8, 0.55; correct: 1, 1, 1, 0, 0, 1
    # bins of width 0.05 from 0.5: [0.55,0.6): 0.55 ok; [0.6,0.65): 0.6 wrong; [0.7,0.75): 0.7 ok;
    # [0.8,0.85): 0.8 ok, 0.8 wrong; [0.9,0.95): 0.9 ok
    expected = (abs(1 - 0.55) + abs(0 - 0.6) + abs(1 - 0.7) + 2 * abs(0.5 - 0.8) + abs(1 - 0.9)) / 6
    assert expected_calibration_error(P, G) == pytest.approx(expected)
    assert sum(b["n"] for b in reliability(P, G)) == 6


def test_age_mae_and_cs5_ignore_unknown_ages():
    pred = np.array([30.0, 42.0, 20.0, 50.0])
    true = np.array([25, 40, UNKNOWN, 60])
    assert age_mae(pred, true) == pytest.approx((5 + 2 + 10) / 3)
    assert cumulative_score(pred, true, 5) == pytest.approx(2 / 3)


def test_group_tables():
    m = all_metrics(P, G, np.array([20, 30, 40, 50, 60, 70.0]), np.array([22, 30, 45, 50, 61, 80]),
                    np.array([0, 0, 1, 1, 2, UNKNOWN]))
    assert m["by_race"]["White"] == {"n": 2, "gender_accuracy": 1.0, "age_mae": 1.0}
    assert m["by_race"]["unknown"]["n"] == 1 and m["by_race"]["unknown"]["age_mae"] == 10
    assert m["by_age_band"]["40-49"]["age_mae"] == 5.0
    assert m["gender"]["accuracy"] == pytest.approx(4 / 6)


def test_expected_age_and_interval_of_a_known_distribution():
    logits = torch.full((1, AGE_BINS), -1e9)
    logits[0, 30] = logits[0, 40] = 0.0  # half the mass at 30, half at 40
    assert expected_age(logits).item() == pytest.approx(35.0)
    low, high = age_interval(logits, 0.8)
    assert (low.item(), high.item()) == (30.0, 40.0)


def test_temperature_scaling_fixes_overconfidence():
    torch.manual_seed(0)
    true_logit = torch.randn(4000) * 2
    labels = (torch.rand(4000) < torch.sigmoid(true_logit)).long()
    t = fit_temperature(true_logit * 3, labels)  # a model 3x too confident
    assert t == pytest.approx(3.0, rel=0.15)
