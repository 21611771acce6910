"""Evaluation metrics on plain arrays, small enough to check by hand in tests."""
from __future__ import annotations

import numpy as np

from train.data import UNKNOWN, age_band, race_name


def gender_accuracy(p_female: np.ndarray, gender: np.ndarray) -> float:
    return float(((p_female >= 0.5).astype(int) == gender).mean()) if len(gender) else float("nan")


def confusion(p_female: np.ndarray, gender: np.ndarray) -> list[list[int]]:
    """[[true male predicted male, true male predicted female], [true female -> male, true female -> female]]."""
    pred = (p_female >= 0.5).astype(int)
    return [[int(((gender == t) & (pred == p)).sum()) for p in (0, 1)] for t in (0, 1)]


def f1_weighted(p_female: np.ndarray, gender: np.ndarray) -> float:
    """F1 per class, averaged with weights = class support (scikit-learn's `average="weighted"`)."""
    (tn, fp), (fn, tp) = confusion(p_female, gender)
    scores, supports = [], []
    for true_pos, false_pos, false_neg, support in ((tp, fp, fn, tp + fn), (tn, fn, fp, tn + fp)):
        denom = 2 * true_pos + false_pos + false_neg
        scores.append(2 * true_pos / denom if denom else 0.0)
        supports.append(support)
    return float(np.average(scores, weights=supports)) if sum(supports) else float("nan")


def reliability(p_female: np.ndarray, gender: np.ndarray, bins: int = 10) -> list[dict]:
    """Bins of confidence in the predicted class: count, mean confidence, accuracy (for ECE and the plot)."""
    pred = (p_female >= 0.5).astype(int)
    confidence = np.where(pred == 1, p_female, 1 - p_female)
    correct = pred == gender
    edges = np.linspace(0.5, 1.0, bins + 1)
    rows = []
    for i, (low, high) in enumerate(zip(edges[:-1], edges[1:])):
        in_bin = (confidence >= low) & ((confidence < high) if i < bins - 1 else (confidence <= high))
        if in_bin.any():
            rows.append({"low": float(low), "high": float(high), "n": int(in_bin.sum()),
                         "confidence": float(confidence[in_bin].mean()), "accuracy": float(correct[in_bin].mean())})
    return rows


def expected_calibration_error(p_female: np.ndarray, gender: np.ndarray, bins: int = 10) -> float:
    """ECE: support-weighted mean |accuracy - confidence| over confidence bins."""
    n = len(gender)
    return float(sum(r["n"] / n * abs(r["accuracy"] - r["confidence"]) for r in reliability(p_female, gender, bins)))


def age_mae(pred_age: np.ndarray, age: np.ndarray) -> float:
    known = age != UNKNOWN
    return float(np.abs(pred_age[known] - age[known]).mean()) if known.any() else float("nan")


def cumulative_score(pred_age: np.ndarray, age: np.ndarray, years: float = 5) -> float:
    """CS@years: share of faces whose age error is at most `years`."""
    known = age != UNKNOWN
    return float((np.abs(pred_age[known] - age[known]) <= years).mean()) if known.any() else float("nan")


def group_table(p_female, gender, pred_age, age, groups: list[str]) -> dict[str, dict]:
    """Per-group n, gender accuracy and age MAE (the fairness table)."""
    groups = np.asarray(groups)
    table = {}
    for name in sorted(set(groups.tolist())):
        sel = groups == name
        table[name] = {"n": int(sel.sum()), "gender_accuracy": gender_accuracy(p_female[sel], gender[sel]),
                       "age_mae": age_mae(pred_age[sel], age[sel])}
    return table


def all_metrics(p_female, gender, pred_age, age, race) -> dict:
    p_female, gender, pred_age, age, race = map(np.asarray, (p_female, gender, pred_age, age, race))
    band_order = [age_band(a) for a in age]
    return {
        "n": int(len(gender)),
        "gender": {"accuracy": gender_accuracy(p_female, gender), "f1_weighted": f1_weighted(p_female, gender),
                   "ece": expected_calibration_error(p_female, gender), "confusion": confusion(p_female, gender),
                   "reliability": reliability(p_female, gender)},
        "age": {"mae": age_mae(pred_age, age), "cs5": cumulative_score(pred_age, age, 5),
                "n": int((age != UNKNOWN).sum())},
        "by_race": group_table(p_female, gender, pred_age, age, [race_name(r) for r in race]),
        "by_age_band": group_table(p_female, gender, pred_age, age, band_order),
        "by_gender": group_table(p_female, gender, pred_age, age, ["female" if g else "male" for g in gender]),
    }
