"""Evaluation metrics on plain arrays, small enough to check by hand in tests.

Ages come in two label kinds: exact years (UTKFace: MAE, CS@5, 80%-interval coverage) and inclusive ranges
(FairFace's "20-29": range accuracy, interval overlap). Signed errors compare with the exact age, or with a
range's middle. A missing prediction (NaN, e.g. no face found) counts as wrong wherever it is scored.
"""
from __future__ import annotations

import numpy as np

from model.gender import says_female
from train.data import UNKNOWN, age_band, in_age_range, is_range_label, race_name


def gender_correct(p_female: np.ndarray, gender: np.ndarray) -> np.ndarray:
    """Per face: whether its gender is predicted right; a NaN prediction (no face found) is wrong."""
    return (says_female(p_female).astype(int) == gender) & ~np.isnan(p_female)


def gender_accuracy(p_female: np.ndarray, gender: np.ndarray) -> float:
    """Share of faces whose gender is predicted right (gender_correct)."""
    return float(gender_correct(p_female, gender).mean()) if len(gender) else float("nan")


def confusion(p_female: np.ndarray, gender: np.ndarray) -> list[list[int]]:
    """[[true male predicted male, true male predicted female], [true female -> male, true female -> female]]."""
    pred = says_female(p_female).astype(int)
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
    pred = says_female(p_female).astype(int)
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


def mean_signed_error(pred_age: np.ndarray, target: np.ndarray) -> float:
    """Mean of predicted - true age (positive = the model reads faces as older); NaN targets are left out."""
    known = ~np.isnan(target)
    return float((pred_age[known] - target[known]).mean()) if known.any() else float("nan")


def interval_coverage(pred_low: np.ndarray, pred_high: np.ndarray, age: np.ndarray) -> float:
    """Share of faces with an exact age whose predicted interval contains it."""
    known = age != UNKNOWN
    inside = (pred_low <= age) & (age <= pred_high)
    return float(inside[known].mean()) if known.any() else float("nan")


def range_accuracy(pred_age: np.ndarray, low: np.ndarray, high: np.ndarray) -> float:
    """Share of range-labelled faces whose predicted age, to the nearest whole year, lies in low..high
    (train.data.in_age_range, the rule validation uses too; no prediction, NaN, is wrong)."""
    return float(in_age_range(pred_age, low, high).mean()) if len(low) else float("nan")


def interval_overlap(pred_low: np.ndarray, pred_high: np.ndarray, low: np.ndarray, high: np.ndarray) -> float:
    """Share of range-labelled faces whose predicted interval intersects the true range."""
    overlaps = (pred_low <= high) & (pred_high >= low)
    return float(overlaps.mean()) if len(low) else float("nan")


class AgeLabels:
    """Per face: an exact age, a range (age_low < age_high, age UNKNOWN) or nothing known."""

    def __init__(self, age, age_low=None, age_high=None):
        self.age = np.asarray(age)
        self.low = self.age.copy() if age_low is None else np.asarray(age_low)
        self.high = self.age.copy() if age_high is None else np.asarray(age_high)
        self.exact = self.age != UNKNOWN
        self.ranged = is_range_label(self.age, self.low, self.high)

    def target(self) -> np.ndarray:
        """The age a signed error is measured against: the exact age, a range's middle, else NaN.
        Open-ended ranges ("70+") end at model.age.MAX_AGE, so their middle is 85."""
        middle = np.where(self.ranged, (self.low + self.high) / 2, np.nan)
        return np.where(self.exact, self.age, middle).astype(float)

    def bands(self) -> list[str]:
        """Each face's AGE_BANDS label ("unknown" for no age, or a range across bands)."""
        return [age_band(int(low), int(high)) for low, high in zip(self.low, self.high)]


def exact_age_metrics(pred_age, pred_low, pred_high, labels: AgeLabels) -> dict:
    e = labels.exact
    metrics = {"n": int(e.sum()), "mae": age_mae(pred_age, labels.age),
               "cs5": cumulative_score(pred_age, labels.age, 5),
               "mean_signed_error": mean_signed_error(pred_age[e], labels.age[e].astype(float))}
    if pred_low is not None:
        metrics["interval_coverage"] = interval_coverage(pred_low, pred_high, labels.age)
    return metrics


def range_age_metrics(pred_age, pred_low, pred_high, labels: AgeLabels) -> dict:
    r = labels.ranged
    metrics = {"n": int(r.sum()), "range_accuracy": range_accuracy(pred_age[r], labels.low[r], labels.high[r]),
               "mean_signed_error": mean_signed_error(pred_age[r], labels.target()[r])}
    if pred_low is not None:
        metrics["interval_overlap"] = interval_overlap(pred_low[r], pred_high[r], labels.low[r], labels.high[r])
    return metrics


def group_table(p_female, gender, pred_age, age, groups: list[str], pred_low=None, pred_high=None,
                labels: AgeLabels | None = None) -> dict[str, dict]:
    """Per group: n, gender accuracy and the age metrics of the label kinds present (the fairness table):
    age_mae (exact ages), age_range_accuracy and age_interval_overlap (ranges), age_signed_error (either)."""
    labels = labels or AgeLabels(age)
    groups = np.asarray(groups)
    target = labels.target()
    table = {}
    for name in sorted(set(groups.tolist())):
        sel = groups == name
        row = {"n": int(sel.sum()), "gender_accuracy": gender_accuracy(p_female[sel], gender[sel])}
        if labels.exact.any():
            row["age_mae"] = age_mae(pred_age[sel], labels.age[sel])
        ranged = sel & labels.ranged
        if labels.ranged.any():
            row["age_range_accuracy"] = range_accuracy(pred_age[ranged], labels.low[ranged], labels.high[ranged])
            if pred_low is not None:
                row["age_interval_overlap"] = interval_overlap(pred_low[ranged], pred_high[ranged],
                                                               labels.low[ranged], labels.high[ranged])
        row["age_signed_error"] = mean_signed_error(pred_age[sel], target[sel])
        table[name] = row
    return table


def worst_group_gap(table: dict[str, dict], key: str = "gender_accuracy", min_n: int = 1) -> dict:
    """The worst group (lowest `key`) and its gap to the unweighted mean of the groups' values."""
    values = {name: row[key] for name, row in table.items() if row["n"] >= min_n and np.isfinite(row[key])}
    if not values:
        return {"mean_of_groups": float("nan"), "worst_group": None, "worst": float("nan"), "gap": float("nan")}
    worst = min(values, key=values.get)
    mean = float(np.mean(list(values.values())))
    return {"mean_of_groups": mean, "worst_group": worst, "worst": values[worst], "gap": mean - values[worst]}


def children_metrics(pred_age, age, up_to: int = 12) -> dict:
    """Exact ages 0..up_to: n, MAE and mean signed error (a release floor checks young faces)."""
    sel = (age != UNKNOWN) & (age <= up_to)
    return {"n": int(sel.sum()), "mae": age_mae(pred_age[sel], age[sel]),
            "mean_signed_error": mean_signed_error(pred_age[sel], age[sel].astype(float))}


def all_metrics(p_female, gender, pred_age, age, race, pred_low=None, pred_high=None, age_low=None,
                age_high=None) -> dict:
    """Gender metrics, age metrics per label kind ("age": exact ages, "age_range": ranges; each only when
    present) and the per-race, per-age-band and per-gender tables."""
    p_female, gender, pred_age, age, race = map(np.asarray, (p_female, gender, pred_age, age, race))
    pred_low, pred_high = (None, None) if pred_low is None else (np.asarray(pred_low), np.asarray(pred_high))
    labels = AgeLabels(age, age_low, age_high)
    tables = dict(pred_low=pred_low, pred_high=pred_high, labels=labels)
    metrics = {
        "n": int(len(gender)),
        "gender": {"accuracy": gender_accuracy(p_female, gender), "f1_weighted": f1_weighted(p_female, gender),
                   "ece": expected_calibration_error(p_female, gender), "confusion": confusion(p_female, gender),
                   "reliability": reliability(p_female, gender)},
    }
    if labels.exact.any() or not labels.ranged.any():  # UTKFace's "age" block is always there for exact sets
        metrics["age"] = exact_age_metrics(pred_age, pred_low, pred_high, labels)
        metrics["age"]["ages_0_12"] = children_metrics(pred_age, labels.age)
    if labels.ranged.any():
        metrics["age_range"] = range_age_metrics(pred_age, pred_low, pred_high, labels)
    metrics |= {
        "by_race": group_table(p_female, gender, pred_age, age, [race_name(r) for r in race], **tables),
        "by_age_band": group_table(p_female, gender, pred_age, age, labels.bands(), **tables),
        "by_gender": group_table(p_female, gender, pred_age, age, ["female" if g else "male" for g in gender],
                                 **tables),
    }
    return metrics


def end_to_end_metrics(found, p_female, gender, pred_age, age_low, age_high, race) -> dict:
    """Scores of the app's path over every image: one with no face found (found False, its predictions
    NaN) is wrong for gender and age. Per race: face-found share, gender and age-range accuracy, and the
    worst race's gender-accuracy gap to the mean of the race groups."""
    found, p_female, gender, pred_age, age_low, age_high = map(
        np.asarray, (found, p_female, gender, pred_age, age_low, age_high))
    p_female = np.where(found, p_female, np.nan)  # whatever was passed for a missed face: it is wrong
    pred_age = np.where(found, pred_age, np.nan)
    races = np.array([race_name(r) for r in race])

    def scores(sel) -> dict:
        return {"n": int(sel.sum()), "face_found": float(found[sel].mean()) if sel.any() else float("nan"),
                "gender_accuracy": gender_accuracy(p_female[sel], gender[sel]),
                "age_range_accuracy": range_accuracy(pred_age[sel], age_low[sel], age_high[sel])}

    metrics = scores(np.ones(len(found), bool))
    metrics["gender_accuracy_where_found"] = gender_accuracy(p_female[found], gender[found])  # the model's share
    metrics["by_race"] = {name: scores(races == name) for name in sorted(set(races.tolist()))}
    metrics["race_gap"] = worst_group_gap(metrics["by_race"], "gender_accuracy")
    return metrics


# The bands whose mean signed age error the release floor bounds; 0-2 and 70+ are reported but not bounded
# (70+ is measured against 85, the middle of 70-100).
FLOOR_BANDS = ("3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69")


def worst_band(by_band: dict[str, dict], key: str = "age_signed_error") -> tuple[str, float] | None:
    """The floor band (FLOOR_BANDS) whose `key` is farthest from zero: ages pulled to the middle show as large
    errors of opposite sign at the young and the old end."""
    values = {band: row[key] for band, row in by_band.items() if band in FLOOR_BANDS and np.isfinite(row[key])}
    if not values:
        return None
    band = max(values, key=lambda b: abs(values[b]))
    return band, values[band]
