"""Evaluation metrics on examples small enough to compute by hand."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from model.age import AGE_BINS, age_interval, expected_age, mean_age
from train.calibrate import (MIN_EXACT_FOR_COVERAGE, fit_age_calibration, fit_age_temperature,
                             fit_age_temperature_for_coverage, fit_temperature)
from train.data import UNKNOWN
from train.metrics import (age_mae, all_metrics, children_metrics, confusion, cumulative_score,
                           end_to_end_metrics, expected_calibration_error, f1_weighted, gender_accuracy,
                           interval_overlap, mean_signed_error, range_accuracy, reliability, worst_group_gap)

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
    assert m["by_race"]["White"] == {"n": 2, "gender_accuracy": 1.0, "age_mae": 1.0, "age_signed_error": -1.0}
    assert m["by_race"]["unknown"]["n"] == 1 and m["by_race"]["unknown"]["age_mae"] == 10
    assert m["by_age_band"]["40-49"]["age_mae"] == 5.0
    assert m["gender"]["accuracy"] == pytest.approx(4 / 6)


def test_range_accuracy_counts_whole_years():
    low, high = np.full(6, 20), np.full(6, 29)
    pred = np.array([19.4, 19.6, 25.0, 29.4, 29.6, np.nan])  # labels are whole years: 29.4 reads "29", 29.6 "30"
    assert range_accuracy(pred, low, high) == pytest.approx(3 / 6)  # 19.6, 25, 29.4; NaN (no face) is wrong


def test_interval_overlap_needs_one_shared_year():
    low, high = np.array([20, 20, 20, 20]), np.array([29, 29, 29, 29])
    pred_low, pred_high = np.array([10, 29, 30, 22]), np.array([19, 40, 45, 25])  # before, touching, after, inside
    assert interval_overlap(pred_low, pred_high, low, high) == pytest.approx(2 / 4)


def test_signed_errors_against_exact_ages_and_range_middles():
    assert mean_signed_error(np.array([30.0, 20.0, 5.0]), np.array([25.0, 24.0, np.nan])) == pytest.approx((5 - 4) / 2)
    ages = np.array([2, 5, 12, 13, 40, UNKNOWN])
    pred = np.array([4.0, 8.0, 9.0, 20.0, 41.0, 30.0])
    assert children_metrics(pred, ages) == {"n": 3, "mae": pytest.approx((2 + 3 + 3) / 3),
                                            "mean_signed_error": pytest.approx((2 + 3 - 3) / 3)}
    # ranges: 20-29 (middle 24.5), 0-2 (middle 1) and 70+ (70..100, middle 85)
    m = all_metrics(np.array([0.9, 0.1, 0.8]), np.array([1, 0, 0]), np.array([30.0, 3.0, 75.0]),
                    np.full(3, UNKNOWN), np.array([5, 6, 0]), pred_low=np.array([25, 1, 60]),
                    pred_high=np.array([36, 6, 88]), age_low=np.array([20, 0, 70]), age_high=np.array([29, 2, 100]))
    assert "age" not in m
    assert m["age_range"] == {"n": 3, "range_accuracy": pytest.approx(1 / 3), "interval_overlap": 1.0,
                              "mean_signed_error": pytest.approx((5.5 + 2 - 10) / 3)}
    assert set(m["by_age_band"]) == {"20-29", "0-2", "70+"}
    assert m["by_age_band"]["70+"] == {"n": 1, "gender_accuracy": 0.0, "age_range_accuracy": 1.0,
                                       "age_interval_overlap": 1.0, "age_signed_error": -10.0}
    assert set(m["by_race"]) == {"Latino_Hispanic", "East Asian", "White"}


def test_no_face_found_counts_as_wrong_end_to_end():
    found = np.array([True, True, False, False])
    gender = np.array([1, 0, 0, 1])
    p_female = np.array([0.9, 0.2, 0.1, 0.9])  # the missed faces' values would be right: they must not count
    pred_age = np.array([25.0, 50.0, 25.0, 25.0])
    low, high = np.full(4, 20), np.full(4, 29)
    m = end_to_end_metrics(found, p_female, gender, pred_age, low, high, np.array([0, 0, 1, 1]))
    assert (m["n"], m["face_found"], m["gender_accuracy"], m["age_range_accuracy"]) == (4, 0.5, 0.5, 0.25)
    assert m["gender_accuracy_where_found"] == 1.0
    assert m["by_race"]["White"] == {"n": 2, "face_found": 1.0, "gender_accuracy": 1.0, "age_range_accuracy": 0.5}
    assert m["by_race"]["Black"]["gender_accuracy"] == 0.0
    assert m["race_gap"] == {"mean_of_groups": 0.5, "worst_group": "Black", "worst": 0.0, "gap": 0.5}
    assert gender_accuracy(np.array([np.nan, 0.2]), np.array([0, 0])) == 0.5  # NaN is not "male"


def test_worst_group_gap_skips_small_groups():
    table = {"a": {"n": 100, "gender_accuracy": 0.9}, "b": {"n": 100, "gender_accuracy": 0.8},
             "c": {"n": 3, "gender_accuracy": 0.0}}
    gap = worst_group_gap(table, min_n=30)
    assert gap["worst_group"] == "b" and gap["gap"] == pytest.approx(0.05)


def test_expected_age_and_interval_of_a_known_distribution():
    logits = torch.full((1, AGE_BINS), -1e9)
    logits[0, 30] = logits[0, 40] = 0.0  # half the mass at 30, half at 40
    assert expected_age(logits).item() == pytest.approx(35.0)
    low, high = age_interval(logits.softmax(-1), 0.8)
    assert (low.item(), high.item()) == (30.0, 40.0)


def test_the_interval_takes_in_the_age_shown_when_a_thin_tail_moves_the_mean_out_of_it():
    """95% at 33 y and 5% at 60: the mean is 34.35 and both percentiles are 33, so "34 y (33-33)" would be
    shown. The interval is widened to the whole years around the mean; a distribution whose mean already
    lies inside keeps its percentiles."""
    probs = torch.zeros(2, AGE_BINS, dtype=torch.float64)
    probs[0, 33], probs[0, 60] = 0.95, 0.05
    probs[1, 20:41] = 1 / 21  # uniform 20..40: percentiles 22 and 38, mean 30
    low, high = age_interval(probs)
    assert mean_age(probs)[0].item() == pytest.approx(34.35)
    assert (low.tolist(), high.tolist()) == ([33.0, 22.0], [35.0, 38.0])
    skewed = torch.zeros(1, AGE_BINS)
    skewed[0, 33], skewed[0, 10] = 0.95, 0.05  # the tail below: the interval reaches down to the mean, 31.85
    assert [v.item() for v in age_interval(skewed)] == [31.0, 33.0]


def test_temperature_scaling_fixes_overconfidence():
    torch.manual_seed(0)
    true_logit = torch.randn(4000) * 2
    labels = (torch.rand(4000) < torch.sigmoid(true_logit)).long()
    t = fit_temperature(true_logit * 3, labels)  # a model 3x too confident
    assert t == pytest.approx(3.0, rel=0.15)


def test_age_temperature_fixes_an_overconfident_age_distribution_and_its_interval():
    """Ages drawn from each face's true distribution; a model sqrt(2) times too narrow must be widened back (T ~ 2),
    from exact ages and decade ranges alike, and then its 80% interval covers as many ages as the true one."""
    torch.manual_seed(0)
    n = 3000
    centre = torch.randint(5, 90, (n,)).float()
    true_logits = -0.5 * ((torch.arange(AGE_BINS).float() - centre[:, None]) / 6.0) ** 2
    age = torch.distributions.Categorical(logits=true_logits).sample()
    overconfident = true_logits * 2
    exact = fit_age_temperature(overconfident, age, torch.zeros(n, dtype=torch.long), torch.zeros(n, dtype=torch.long))
    assert exact == pytest.approx(2.0, rel=0.1)
    low, high = (age // 10) * 10, (age // 10) * 10 + 9  # the same faces labelled only with their decade
    ranged = fit_age_temperature(overconfident, torch.full((n,), -1), low, high)
    assert ranged == pytest.approx(2.0, rel=0.25)

    def coverage(logits):
        lo, hi = age_interval(logits.softmax(-1))
        return ((age >= lo) & (age <= hi)).float().mean().item()

    # whole-year interval bounds cover a little over 80% even with the true distribution
    assert coverage(overconfident) < 0.66
    assert coverage(overconfident / exact) == pytest.approx(coverage(true_logits), abs=0.015)
    assert 0.79 <= coverage(true_logits) <= 0.86


def test_worst_band_is_the_floor_band_farthest_from_zero():
    from train.metrics import worst_band
    table = {"0-2": {"age_signed_error": 9.0}, "10-19": {"age_signed_error": 5.6},
             "60-69": {"age_signed_error": -6.1}, "70+": {"age_signed_error": -16.3},
             "30-39": {"age_signed_error": float("nan")}}
    assert worst_band(table) == ("60-69", -6.1)  # 0-2 and 70+ are outside the floor's bands
    assert worst_band({"70+": {"age_signed_error": 3.0}}) is None


def test_age_temperature_for_coverage_makes_the_80_percent_interval_hold_80_percent():
    """A model 1.4 times as wide as the truth (as a likelihood fit on noisy range labels leaves it): fitted to
    coverage, its 80% interval covers 80% of exact ages; with too few exact ages it declines (None), and
    fit_age_calibration then falls back to the likelihood fit."""
    from model.age import age_interval, identity_warp
    torch.manual_seed(0)
    n = 3000
    centre = torch.randint(5, 90, (n,)).float()
    true_logits = -0.5 * ((torch.arange(AGE_BINS).float() - centre[:, None]) / 5.0) ** 2
    age = torch.distributions.Categorical(logits=true_logits).sample()
    too_wide = true_logits / 2  # sd 7.1 y instead of 5
    lo, hi = age_interval(too_wide.softmax(-1))
    assert ((age >= lo) & (age <= hi)).float().mean() > 0.93
    t = fit_age_temperature_for_coverage(too_wide, age, lambda t: identity_warp())
    assert 0.3 < t < 0.5  # under the true 0.5: whole years, both ends included, cover ~85% at the true width
    lo, hi = age_interval((too_wide / t).softmax(-1))
    assert ((age >= lo) & (age <= hi)).float().mean() == pytest.approx(0.80, abs=0.01)

    few = MIN_EXACT_FOR_COVERAGE - 1
    unknown = torch.full((n,), -1)
    assert fit_age_temperature_for_coverage(too_wide, torch.cat([age[:few], unknown[few:]]),
                                            lambda t: identity_warp()) is None
    low, high = (age // 10) * 10, (age // 10) * 10 + 9  # range labels only: the likelihood fit, no warp
    records = [type("R", (), {"age": -1, "age_low": int(a), "age_high": int(b), "source": "s"})() for a, b in zip(low, high)]
    ranged = fit_age_calibration(too_wide, unknown, low, high, records)
    assert ranged["fitted_to"] == "likelihood"
    assert ranged["temperature"] == pytest.approx(fit_age_temperature(too_wide, unknown, low, high))
