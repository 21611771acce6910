"""train.compare: two evaluations face by face, and the rule that picks the default model."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from train.compare import GAP, RACE_GAP, compare, main, measures_better, paired_difference, verdict

N = 600


def write_eval(folder: Path, gender_right: np.ndarray, age_error: np.ndarray, range_right: np.ndarray,
               found: np.ndarray, races: np.ndarray | None = None) -> Path:
    """An evaluation folder as train.evaluate writes it: UTKFace rows (exact ages) and FairFace rows (ranges,
    end to end), with the given per-face outcomes; every face White (UTKFace) or Black (FairFace) unless
    `races` names each face's group in both."""
    rng = np.random.default_rng(1)  # the same faces and labels in every folder
    gender, age = rng.integers(0, 2, N), rng.integers(20, 60, N)
    p_female = np.where(gender_right, gender, 1 - gender) * 0.8 + 0.1
    (folder / "fairface").mkdir(parents=True)
    with open(folder / "predictions.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "age", "gender", "race", "p_female", "pred_age", "age_low", "age_high"])
        for i in range(N):
            race = "White" if races is None else races[i]
            w.writerow([f"u{i}.jpg", age[i], gender[i], race, p_female[i], age[i] + age_error[i], 0, 100])
    with open(folder / "fairface" / "predictions.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "age", "gender", "race", "p_female", "pred_age", "age_low", "age_high", "true_age_low",
                    "true_age_high", "detection_on_found", "detection_on_p_female", "detection_on_age",
                    "detection_on_age_low", "detection_on_age_high"])
        for i in range(N):
            pred = 25 if range_right[i] else 45  # the true range is 20-29
            e2e = [1, p_female[i], pred, 0, 100] if found[i] else [0, "", "", "", ""]
            race = "Black" if races is None else races[i]
            w.writerow([f"f{i}.jpg", -1, gender[i], race, p_female[i], pred, 0, 100, 20, 29] + e2e)
    return folder


def outcomes(share_right: float, error: float, seed: int) -> tuple:
    rng = np.random.default_rng(seed)
    right = rng.random(N) < share_right
    return right, np.full(N, error), right, np.ones(N, bool)


def test_a_clearly_better_model_wins_on_every_figure_and_noise_is_called_noise(tmp_path):
    good = write_eval(tmp_path / "good", *outcomes(0.95, 3.0, seed=0))
    poor = write_eval(tmp_path / "poor", *outcomes(0.75, 6.0, seed=0))
    results = compare(good, poor)
    assert set(results) == {"UTKFace", "FairFace"}
    assert set(results["FairFace"]) == {"gender accuracy", "age-range accuracy", "gender end to end", GAP}
    for figures in results.values():
        for figure, d in figures.items():
            assert figure == GAP or verdict(figure, d) == "A better", figure
    utk = results["UTKFace"]
    assert utk["age MAE (y)"]["diff"] == pytest.approx(-3.0)  # lower is better, and A's is 3 y lower
    assert utk["gender accuracy"]["low"] < utk["gender accuracy"]["diff"] < utk["gender accuracy"]["high"]
    assert measures_better(results) and not measures_better(compare(poor, good))
    # the same model against itself, or one differing on a handful of faces in 600: no difference shown
    assert not measures_better(compare(good, good))
    right, error, ranges, found = outcomes(0.95, 3.0, seed=0)
    right[np.flatnonzero(right)[:3]] = False
    nearly = write_eval(tmp_path / "nearly", right, error, ranges, found)
    assert verdict("gender accuracy", compare(good, nearly)["UTKFace"]["gender accuracy"]) == \
        "no difference shown"


def test_a_face_not_found_counts_as_wrong_end_to_end(tmp_path):
    right, error, ranges, found = outcomes(1.0, 0.0, seed=0)
    found[: N // 4] = False
    figures = compare(write_eval(tmp_path / "a", right, error, ranges, found),
                      write_eval(tmp_path / "b", *outcomes(1.0, 0.0, seed=0)))["FairFace"]
    assert figures["gender end to end"]["a"] == pytest.approx(0.75)
    assert figures["gender accuracy"]["diff"] == 0  # the crops are unchanged


def test_paired_difference_interval_shrinks_with_the_pairing():
    rng = np.random.default_rng(0)
    b = (rng.random(2000) < 0.8).astype(float)
    a = b.copy()
    a[:40] = 1.0  # A fixes some of B's misses and nothing else: a small but certain gain
    d = paired_difference(a, b)
    assert d["diff"] == pytest.approx(a.mean() - b.mean()) and d["low"] > 0


def test_other_faces_or_no_predictions_are_refused_with_a_sentence(tmp_path, capsys):
    a = write_eval(tmp_path / "a", *outcomes(0.9, 3.0, seed=0))
    b = write_eval(tmp_path / "b", *outcomes(0.9, 3.0, seed=0))
    rows = (b / "predictions.csv").read_text().splitlines()
    (b / "predictions.csv").write_text("\n".join([rows[0]] + rows[2:]) + "\n")  # one face fewer
    with pytest.raises(SystemExit, match="not the same faces"):
        compare(a, b)
    with pytest.raises(SystemExit, match="no predictions.csv"):
        compare(tmp_path / "a", tmp_path / "missing")
    main([str(a), str(a)])
    printed = capsys.readouterr().out
    assert "| UTKFace | age MAE (y) |" in printed and printed.rstrip().endswith("no")


def test_predictions_read_back_make_the_calls_the_metrics_made(tmp_path):
    """train.evaluate writes each readout with enough digits that train.compare, reading the file, calls the
    same gender and the same age range as the metrics did on the arrays (at 4 digits 0.49996 became 0.5000)."""
    from types import SimpleNamespace

    from train.compare import per_face_scores, read_predictions
    from train.data import in_age_range
    from train.evaluate import write_predictions
    from train.metrics import gender_correct
    p_female = np.array([0.49996, 0.500004, 0.2, 0.9], np.float32)
    age = np.array([19.49996, 19.500004, 30.0, 9.4999], np.float32)
    records = [SimpleNamespace(path=f"/x/f{i}.jpg", age=-1, gender=1, race=0, has_range=True, age_low=10,
                               age_high=19) for i in range(4)]
    pred = {"p_female": p_female, "age": age, "age_low": np.zeros(4), "age_high": np.full(4, 50)}
    write_predictions(tmp_path / "predictions.csv", records, pred)
    scores = per_face_scores(read_predictions(tmp_path / "predictions.csv"))
    gender = np.ones(4, int)
    np.testing.assert_array_equal(scores["gender accuracy"], gender_correct(p_female, gender).astype(float))
    np.testing.assert_array_equal(scores["age-range accuracy"],
                                  in_age_range(age, np.full(4, 10), np.full(4, 19)).astype(float))
    assert list(scores["gender accuracy"]) == [0, 1, 0, 1] and list(scores["age-range accuracy"]) == [1, 0, 0, 0]


def test_a_model_that_misreads_women_more_often_loses_on_the_gap_alone(tmp_path):
    """Same accuracy overall, but one model's misses fall on women: the gap figure says so, with its interval,
    and that model no longer measures as good as the even one."""
    gender = np.random.default_rng(1).integers(0, 2, N)  # write_eval's labels
    rng = np.random.default_rng(5)
    draws = rng.random(N)
    even = draws < 0.85
    uneven = np.where(gender == 1, draws < 0.75, draws < 0.95)
    a = write_eval(tmp_path / "uneven", uneven, np.full(N, 5.0), np.ones(N, bool), np.ones(N, bool))
    b = write_eval(tmp_path / "even", even, np.full(N, 5.0), np.ones(N, bool), np.ones(N, bool))
    results = compare(a, b)
    for name in ("UTKFace", "FairFace"):
        gap = results[name][GAP]
        women, men = gender == 1, gender == 0
        assert gap["a"] == pytest.approx(abs(uneven[women].mean() - uneven[men].mean()))
        assert gap["b"] == pytest.approx(abs(even[women].mean() - even[men].mean()))
        assert gap["low"] <= gap["diff"] <= gap["high"]
        assert verdict(GAP, gap) == "B better"
        assert verdict("gender accuracy", results[name]["gender accuracy"]) == "no difference shown"
    assert measures_better(compare(b, a)) and not measures_better(results)  # even: better on the gap, worse on none


def test_a_model_that_misreads_one_race_group_more_often_loses_on_the_race_gap_alone(tmp_path):
    """Same accuracy overall, but one model's misses fall on one of three groups: the race gap figure (the
    mean of the groups' accuracies minus the worst's, as train.evaluate reports it) says so, and that model
    no longer measures as good as the even one. A face of unlabelled race is in no group."""
    races = np.array(["A", "B", "C"] * (N // 3), dtype="U7")
    races[0] = "unknown"
    draws = np.random.default_rng(6).random(N)
    even = draws < 0.85
    uneven = np.where(races == "C", draws < 0.65, draws < 0.95)
    a = write_eval(tmp_path / "uneven", uneven, np.full(N, 5.0), np.ones(N, bool), np.ones(N, bool), races)
    b = write_eval(tmp_path / "even", even, np.full(N, 5.0), np.ones(N, bool), np.ones(N, bool), races)
    results = compare(a, b)
    for name in ("UTKFace", "FairFace"):
        gap = results[name][RACE_GAP]
        accuracies = [uneven[races == group].mean() for group in "ABC"]
        assert gap["a"] == pytest.approx(np.mean(accuracies) - min(accuracies))
        assert gap["a"] > 0.15 and gap["low"] <= gap["diff"] <= gap["high"]
        assert verdict(RACE_GAP, gap) == "B better"
        assert verdict("gender accuracy", results[name]["gender accuracy"]) == "no difference shown"
    assert measures_better(compare(b, a)) and not measures_better(results)
