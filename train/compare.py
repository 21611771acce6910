"""`python -m train.compare`: two models' evaluations side by side, face by face, with the noise of the sets.

    python -m train.compare runs/cal/vgg16aug-eval runs/cal/scratch-eval

Reads the `predictions.csv` that `train.evaluate` writes for UTKFace test (EVAL/) and FairFace val
(EVAL/fairface/), or `train.validate --predictions` for the validation split, for the same faces (bundles
keep the figures, not these rows), and prints, per figure, A's and B's value, A - B and its 95% interval
by a paired bootstrap over faces (both models scored on the same resampled faces). The figures: gender
accuracy, age MAE or age-range accuracy, end to end where the evaluation has it, the gap between gender
accuracy on women and on men, and the worst race group's gender accuracy under the mean of the groups (as
train.evaluate's race gap; where the set has more than one group). It says which model measures better on
a figure only where the interval leaves out 0: a difference of a few faces in thousands is noise. This is
how the app's default model is chosen (docs/results.md).
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from train.data import in_age_range
from train.metrics import gender_correct

BOOTSTRAPS = 2000
GAP = "women - men gap"  # |gender accuracy on women - on men|: how unevenly a model misreads the two
RACE_GAP = "worst race gap"  # mean of the race groups' gender accuracy - the worst group's (train.metrics)
LOWER_IS_BETTER = {"age MAE (y)", GAP, RACE_GAP}


def read_predictions(path: Path) -> dict[str, np.ndarray]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise SystemExit(f"{path} has no predictions")

    def column(name: str) -> np.ndarray:
        return np.array([float(r[name]) if r.get(name) not in (None, "") else np.nan for r in rows])
    out = {"file": np.array([r["file"] for r in rows]), "gender": column("gender"), "p_female": column("p_female"),
           "pred_age": column("pred_age"), "age": column("age"), "race": np.array([r.get("race", "") for r in rows])}
    if "true_age_low" in rows[0]:
        out |= {"low": column("true_age_low"), "high": column("true_age_high")}
    if "detection_on_p_female" in rows[0]:  # empty where no face was found: NaN
        out["e2e_p_female"] = column("detection_on_p_female")
    return out


def per_face_scores(p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each figure as a per-face score whose mean is the figure (higher is better, but for LOWER_IS_BETTER)."""
    scores = {"gender accuracy": gender_correct(p["p_female"], p["gender"]).astype(float)}
    if "low" in p:  # FairFace: age ranges, and every image through the app
        scores["age-range accuracy"] = in_age_range(p["pred_age"], p["low"], p["high"]).astype(float)
    else:
        scores["age MAE (y)"] = np.abs(p["pred_age"] - p["age"])
    if "e2e_p_female" in p:  # no face found counts as wrong, as in train.evaluate's end to end
        scores["gender end to end"] = gender_correct(p["e2e_p_female"], p["gender"]).astype(float)
    return scores


def paired_difference(a: np.ndarray, b: np.ndarray, seed: int = 0, bootstraps: int = BOOTSTRAPS) -> dict:
    """mean(a - b) and its 95% percentile interval over faces resampled with replacement."""
    diff = a - b
    idx = np.random.default_rng(seed).integers(0, len(diff), (bootstraps, len(diff)))
    means = diff[idx].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {"a": float(a.mean()), "b": float(b.mean()), "diff": float(diff.mean()), "low": float(low),
            "high": float(high)}


def paired_statistic_difference(statistic, correct_a: np.ndarray, correct_b: np.ndarray, seed: int = 0,
                                bootstraps: int = BOOTSTRAPS) -> dict:
    """statistic(correct, idx) of A minus B's, and its 95% interval, over faces resampled as in
    paired_difference. For figures that are not a mean over faces (the gaps): each draw computes them from
    its own faces (idx: [draws, faces] indices)."""
    everyone = np.arange(len(correct_a))[None]
    idx = np.random.default_rng(seed).integers(0, len(correct_a), (bootstraps, len(correct_a)))
    with np.errstate(invalid="ignore", divide="ignore"):  # a group absent from a draw: NaN, left out below
        diffs = statistic(correct_a, idx) - statistic(correct_b, idx)
        a, b = float(statistic(correct_a, everyone)[0]), float(statistic(correct_b, everyone)[0])
    low, high = np.nanpercentile(diffs, [2.5, 97.5])
    return {"a": a, "b": b, "diff": a - b, "low": float(low), "high": float(high)}


def group_accuracies(correct: np.ndarray, idx: np.ndarray, groups: list[np.ndarray]) -> np.ndarray:
    """[groups, draws]: the share correct within each group (a boolean mask over faces) of each draw's faces."""
    return np.stack([(correct[idx] * g[idx]).sum(-1) / g[idx].sum(-1) for g in groups])


def women_men_gap(gender: np.ndarray):
    """|accuracy on women - on men|, as a statistic for paired_statistic_difference."""
    groups = [gender == 1, gender == 0]
    return lambda correct, idx: np.abs(np.subtract(*group_accuracies(correct, idx, groups)))


def race_groups(race: np.ndarray) -> list[np.ndarray]:
    """A mask over faces per race group; a face whose race is not labelled ("unknown", one in UTKFace's
    validation rows) is in no group."""
    return [race == name for name in np.unique(race) if name not in ("", "unknown")]


def worst_race_gap(groups: list[np.ndarray]):
    """The mean of the race groups' accuracies minus the worst group's (train.metrics.worst_group_gap)."""
    def gap(correct, idx):
        accuracies = group_accuracies(correct, idx, groups)
        return np.nanmean(accuracies, 0) - np.nanmin(accuracies, 0)
    return gap


def compare(eval_a: Path, eval_b: Path, seed: int = 0) -> dict[str, dict[str, dict]]:
    """{source: {figure: paired_difference}} for UTKFace and, where both folders have it, FairFace (the test
    split and FairFace val from train.evaluate; the validation split from train.validate --predictions)."""
    results = {}
    for name, sub in (("UTKFace", "."), ("FairFace", "fairface")):
        path_a, path_b = eval_a / sub / "predictions.csv", eval_b / sub / "predictions.csv"
        if not (path_a.exists() and path_b.exists()):
            continue
        a, b = read_predictions(path_a), read_predictions(path_b)
        if len(a["file"]) != len(b["file"]) or (a["file"] != b["file"]).any():
            raise SystemExit(f"{path_a} and {path_b} are not the same faces in the same order")
        sa, sb = per_face_scores(a), per_face_scores(b)
        results[name] = {k: paired_difference(sa[k], sb[k], seed) for k in sa}
        correct_a, correct_b = sa["gender accuracy"], sb["gender accuracy"]
        if {0, 1} <= set(a["gender"]):
            results[name][GAP] = paired_statistic_difference(women_men_gap(a["gender"]), correct_a, correct_b, seed)
        groups = race_groups(a["race"])
        if len(groups) > 1:
            results[name][RACE_GAP] = paired_statistic_difference(worst_race_gap(groups), correct_a, correct_b, seed)
    if not results:
        raise SystemExit(f"no predictions.csv in both {eval_a} and {eval_b}")
    return results


def verdict(figure: str, d: dict) -> str:
    """"A better", "B better" or "no difference shown" (the interval holds 0)."""
    if d["low"] <= 0 <= d["high"]:
        return "no difference shown"
    return "A better" if (d["diff"] > 0) != (figure in LOWER_IS_BETTER) else "B better"


def measures_better(results: dict[str, dict[str, dict]]) -> bool:
    """A measures better than B: better on at least one figure of every set, worse on none."""
    verdicts = {name: [verdict(f, d) for f, d in figures.items()] for name, figures in results.items()}
    return all("A better" in v and "B better" not in v for v in verdicts.values())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("eval_a", type=Path, help="evaluation folder of model A (train.evaluate --out)")
    parser.add_argument("eval_b", type=Path, help="evaluation folder of model B")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(f"A = {args.eval_a}, B = {args.eval_b}; paired bootstrap over faces, {BOOTSTRAPS} draws")
    print("| set | figure | A | B | A - B | 95% interval | |\n|---|---|---:|---:|---:|---|---|")
    results = compare(args.eval_a, args.eval_b, args.seed)
    for name, figures in results.items():
        for figure, d in figures.items():
            scale, unit = (1, "") if "MAE" in figure else (100, " pts")
            print(f"| {name} | {figure} | {d['a'] * scale:.2f} | {d['b'] * scale:.2f} | {d['diff'] * scale:+.2f}"
                  f"{unit} | [{d['low'] * scale:+.2f}, {d['high'] * scale:+.2f}] | {verdict(figure, d)} |")
    print(f"A measures better than B on {' and '.join(results)} (better on a figure of each, worse on none): "
          f"{'yes' if measures_better(results) else 'no'}")


if __name__ == "__main__":
    main()
