"""train.validate: models scored on a run's validation rows, per source, the way training scored them."""
from __future__ import annotations

import csv
import json
import shutil

import pytest
import torch

from synthetic import make_fairface_folder, make_utkface_folder
from train.train import parse_args, train
from train.validate import main, validate


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("validate")
    utk, fairface = make_utkface_folder(tmp / "utk", n=120), make_fairface_folder(tmp / "ff", n=100, n_val=20)
    return train(parse_args(["--data", str(utk), str(fairface), "--out", str(tmp / "run"), "--image-size", "32",
                             "--epochs", "2", "--batch-size", "32", "--lr", "3e-3", "--cache-dir", str(tmp / "cache"),
                             "--device", "cpu"]))


def test_each_source_is_scored_on_the_runs_validation_rows(run):
    spec = str(run / "model")
    results = validate(run, [spec])[spec]
    report = json.loads((run / "data_report.json").read_text())
    counts = report["counts"]["val"]["by_source"]
    # the run trained on the app's crops (the default); the detector finds next to nothing in synthetic faces,
    # and what it missed is counted per source
    assert report["crops"] == "app"
    for split in ("train", "val"):
        for source, table in report["counts"][split]["by_source"].items():
            assert 0.9 * table["n"] <= table["no_face_found"] <= table["n"], (split, source)
    assert {source: r["n"] for source, r in results.items()} == {source: c["n"] for source, c in counts.items()}
    assert "age_mae" in results["utkface"] and "age_range_accuracy" not in results["utkface"]  # exact ages
    assert "age_range_accuracy" in results["fairface"] and "age_mae" not in results["fairface"]  # ranges
    # the same faces and the same model as training's own validation of its best epoch
    best = json.loads((run / "metrics.json").read_text())["val_at_best"]["gender_acc"]
    combined = sum(r["gender_accuracy"] * r["n"] for r in results.values()) / sum(r["n"] for r in results.values())
    assert combined == pytest.approx(best, abs=1e-6)
    # per band and per gender, for the age and gender floors
    for source, r in results.items():
        assert set(r["age_signed_error_by_band"]) <= {"0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59",
                                                      "60-69", "70+"}
        worst = r["age_signed_error_by_band"][r["worst_band"]]
        assert all(abs(e) <= abs(worst) for band, e in r["age_signed_error_by_band"].items()
                   if band not in ("0-2", "70+")), source
        male, female = r["gender_accuracy_male"], r["gender_accuracy_female"]
        share = (male * r["n_male"] + female * r["n_female"]) / r["n"]
        assert share == pytest.approx(r["gender_accuracy"], abs=1e-9), source


def test_precision_reads_every_model_through_the_fast_path(run, tmp_path):
    """--precision: every model through the app's fast path. At fp32 it answers face by face as the reference;
    at bf16 its answers move (so bf16 did run) by little, and the scores by a face or two at most."""
    spec = str(run / "model")
    results = {}
    for precision in (None, "fp32", "bf16"):
        results[precision] = validate(run, [spec], predictions=tmp_path / str(precision), precision=precision)[spec]

    def ages(precision):
        with open(tmp_path / str(precision) / "0" / "predictions.csv") as f:
            return torch.tensor([float(row["pred_age"]) for row in csv.DictReader(f)])

    reference, fast, half = ages(None), ages("fp32"), ages("bf16")
    assert torch.allclose(fast, reference, atol=1e-3)
    assert 0 < (half - reference).abs().max() < 1.0
    for source, r in results[None].items():
        assert results["fp32"][source]["gender_accuracy"] == pytest.approx(r["gender_accuracy"], abs=1e-9), source
        assert abs(results["bf16"][source]["gender_accuracy"] - r["gender_accuracy"]) * r["n"] <= 2, source
    with pytest.raises(SystemExit):
        main(["--run", str(run), "--model", spec, "--precision", "fp16"])


def test_the_command_prints_a_line_per_model_and_source(run, capsys, tmp_path):
    shutil.copytree(run / "model", tmp_path / "other")
    main(["--run", str(run), "--model", str(run / "model"), "--model", str(tmp_path / "other")])
    lines = [line for line in capsys.readouterr().out.splitlines() if not line.startswith("{")]
    assert len(lines) == 4 and sum("utkface" in line and "age MAE" in line for line in lines) == 2
    assert all("M/F" in line and "worst band" in line for line in lines)
    assert sum("fairface" in line and "age range" in line for line in lines) == 2


def test_validation_predictions_feed_train_compare(run, tmp_path):
    """--predictions: each model's answers on the validation faces, in train.evaluate's format, so that
    train.compare weighs two candidates on validation; a model against itself shows no difference."""
    from train.compare import compare, measures_better
    shutil.copytree(run / "model", tmp_path / "other")
    main(["--run", str(run), "--model", str(run / "model"), "--model", str(tmp_path / "other"),
          "--predictions", str(tmp_path / "p")])
    counts = {source: c["n"] for source, c in
              json.loads((run / "data_report.json").read_text())["counts"]["val"]["by_source"].items()}

    def rows(path):
        with open(path, newline="") as f:
            return list(csv.DictReader(f))
    assert len(rows(tmp_path / "p" / "0" / "predictions.csv")) == counts["utkface"]
    assert len(rows(tmp_path / "p" / "1" / "fairface" / "predictions.csv")) == counts["fairface"]
    results = compare(tmp_path / "p" / "0", tmp_path / "p" / "1")
    assert set(results) == {"UTKFace", "FairFace"}
    assert all(d["diff"] == 0 for figures in results.values() for d in figures.values())
    assert not measures_better(results)
    # --flip-average: the same model, each face also seen mirrored, gives other answers in the same format
    main(["--run", str(run), "--model", str(run / "model"), "--flip-average", "--predictions", str(tmp_path / "f")])
    flipped = compare(tmp_path / "f" / "0", tmp_path / "p" / "0")
    assert any(d["diff"] != 0 for figures in flipped.values() for d in figures.values())
    plain, mirrored = (rows(tmp_path / name / "0" / "predictions.csv") for name in ("p", "f"))
    assert [r["file"] for r in plain] == [r["file"] for r in mirrored]
    assert any((a["p_female"], a["pred_age"]) != (b["p_female"], b["pred_age"]) for a, b in zip(plain, mirrored))
    # a model whose config says mirror_average is read that way without the flag, as the app reads it
    from train.mirror import main as mirror_main
    mirror_main(["--model", str(run / "model"), "--out", str(tmp_path / "mirror")])
    main(["--run", str(run), "--model", str(tmp_path / "mirror"), "--predictions", str(tmp_path / "m")])
    assert rows(tmp_path / "m" / "0" / "predictions.csv") == mirrored


def test_missing_validation_images_are_one_clear_message(run, tmp_path):
    copy = tmp_path / "run"
    copy.mkdir()
    for name in ("data_report.json", "split.csv"):
        text = (run / name).read_text()
        (copy / name).write_text(text.replace(str(run.parent), str(tmp_path / "gone")))
    with pytest.raises(SystemExit, match="validation images of .* are missing"):
        validate(copy, [str(run / "model")])


def test_a_folder_that_is_not_a_run_is_one_clear_message(tmp_path, capsys):
    """The commands that read a run's validation split (train.validate, fit_age_warp, fit_gender_offset,
    recalibrate) say what is missing."""
    from train import fit_age_warp, fit_gender_offset, recalibrate
    out = ["--out", str(tmp_path / "out")]
    for command in (lambda: main(["--run", str(tmp_path), "--model", "scratch"]),
                    lambda: fit_age_warp.main(["--run", str(tmp_path), "--model", "scratch"] + out),
                    lambda: fit_gender_offset.main(["--run", str(tmp_path), "--model", "scratch"] + out),
                    lambda: recalibrate.main(["--run", str(tmp_path), "--model", "scratch"] + out)):
        with pytest.raises(SystemExit, match="is not a training run: it has no data_report.json or split.csv"):
            command()
    assert not (tmp_path / "out").exists()


def test_fit_gender_offset_writes_the_model_with_what_it_printed(run, capsys, tmp_path):
    from model.hub import load_model
    from train import fit_gender_offset
    fit_gender_offset.main(["--run", str(run), "--model", str(run / "model"), "--out", str(tmp_path / "fair")])
    lines = capsys.readouterr().out.splitlines()
    assert sum(line.startswith("held-out half,") and "utkface: accuracy" in line for line in lines) == 2
    printed = json.loads(next(line for line in lines if line.startswith("{")))
    corrected, original = load_model(str(tmp_path / "fair")), load_model(str(run / "model"))
    assert float(corrected.gender_offset) == pytest.approx(printed["gender_offset"])
    # only the offset may differ from the model it corrected
    assert all(torch.equal(v, original.state_dict()[k]) for k, v in corrected.state_dict().items()
               if k != "gender_offset")


def test_fit_age_warp_fits_from_the_models_logits_whatever_age_calibration_it_carries(run, capsys, tmp_path):
    """The fit reads the model's raw age logits: a model carrying another age temperature and warp gets the
    same fit as the run's own; the gender buffers and the weights stay as they were."""
    from model.hub import load_model
    from train import fit_age_warp
    from train.checkpoint import save_model_dir
    odd = load_model(str(run / "model"))
    odd.age_temperature.fill_(3.0)
    odd.age_warp.mul_(0.5)
    save_model_dir(odd, tmp_path / "odd")
    fitted = {}
    for name, model_dir in (("own", run / "model"), ("odd", tmp_path / "odd")):
        fit_age_warp.main(["--run", str(run), "--model", str(model_dir), "--out", str(tmp_path / f"{name}-warp")])
        printed = json.loads(next(line for line in capsys.readouterr().out.splitlines() if line.startswith("{")))
        fitted[name] = load_model(str(tmp_path / f"{name}-warp"))
        assert float(fitted[name].age_temperature) == pytest.approx(printed["age_temperature"], abs=1e-6)
    assert float(fitted["odd"].age_temperature) == pytest.approx(float(fitted["own"].age_temperature), abs=1e-6)
    assert torch.allclose(fitted["odd"].age_warp, fitted["own"].age_warp, atol=1e-5)
    original = load_model(str(run / "model"))
    assert all(torch.equal(v, original.state_dict()[k]) for k, v in fitted["own"].state_dict().items()
               if k not in ("age_temperature", "age_warp"))


def test_recalibrate_fits_what_the_run_fitted_and_refits_a_mirrored_model(run, capsys, tmp_path):
    """train.recalibrate fits the calibration with the code a run ends with: on the run's own model it finds the
    run's values again; on the same model reading faces mirrored it fits other values, from those readings."""
    from model.hub import load_model
    from train import recalibrate
    from train.calibrate import calibration_of
    from train.mirror import main as mirror_main

    def recalibrated(model_dir, out):
        recalibrate.main(["--run", str(run), "--model", str(model_dir), "--out", str(out)])
        lines = capsys.readouterr().out.splitlines()
        held = [line for line in lines if line.startswith("held-out half,")]
        assert len(held) == 4 and sum("the model's own" in line for line in held) == 2, held
        assert sum("utkface" in line and "80% covers" in line for line in held) == 2
        return json.loads(next(line for line in lines if line.startswith("{"))), load_model(str(out))

    original = load_model(str(run / "model"))
    printed, again = recalibrated(run / "model", tmp_path / "again")
    run_fit, refit = calibration_of(original), calibration_of(again)
    for name in ("gender_temperature", "gender_offset", "age_temperature"):
        assert refit[name] == pytest.approx(run_fit[name], abs=1e-3), name
        assert printed["fitted"][name] == pytest.approx(refit[name], abs=1e-6), name
    assert torch.allclose(refit["age_warp"], run_fit["age_warp"], atol=1e-2)
    # only calibration buffers may differ from the model it recalibrated
    from model.nets import CALIBRATION_BUFFERS
    assert all(torch.equal(v, original.state_dict()[k]) for k, v in again.state_dict().items()
               if k not in CALIBRATION_BUFFERS)

    mirror_main(["--model", str(run / "model"), "--out", str(tmp_path / "mirror")])
    printed, mirrored = recalibrated(tmp_path / "mirror", tmp_path / "mirror-recal")
    assert printed["mirror_average"] and mirrored.mirror_average
    # fitted on the mirrored readings: what fit_calibration gives on them, not on the plain ones
    from train.calibrate import fit_calibration
    from train.evaluate import label_arrays, raw_outputs
    from train.validate import validation_images
    images, records = validation_images(run, None, original.image_size)
    labels = {k: torch.from_numpy(v).long() for k, v in label_arrays(records).items() if k != "race"}
    direct = {}
    for mirror in (True, False):
        raw = raw_outputs(original, images, mirror=mirror)
        direct[mirror] = fit_calibration(raw[:, 0], raw[:, 1:], labels, records)
    got = calibration_of(mirrored)
    for name in ("gender_temperature", "gender_offset", "age_temperature"):
        assert got[name] == pytest.approx(direct[True][name], abs=1e-5), name
    assert torch.allclose(got["age_warp"], direct[True]["age_warp"], atol=1e-4)
    assert any(direct[True][name] != pytest.approx(direct[False][name], abs=1e-4)
               for name in ("gender_temperature", "gender_offset", "age_temperature"))


def test_recalibrate_temperatures_only_keeps_the_models_offset_and_warp(run, capsys, tmp_path):
    """--parts temperatures (for the ensemble, whose members are calibrated already) fits the two temperatures
    and leaves the model's own offset and age warp exactly as they were; the gender temperature is the same
    likelihood fit as the full refit's, and what it prints is what it writes."""
    from model.hub import load_model
    from train import recalibrate
    from train.checkpoint import save_model_dir
    odd = load_model(str(run / "model"))
    odd.gender_offset.fill_(0.3)
    odd.age_warp.mul_(0.9).add_(2.0)
    save_model_dir(odd, tmp_path / "odd")
    printed = {}
    for parts in ("temperatures", "all"):
        recalibrate.main(["--parts", parts, "--run", str(run), "--model", str(tmp_path / "odd"),
                          "--out", str(tmp_path / parts)])
        printed[parts] = json.loads(next(line for line in capsys.readouterr().out.splitlines() if line.startswith("{")))
    kept, full = load_model(str(tmp_path / "temperatures")), load_model(str(tmp_path / "all"))
    assert printed["temperatures"]["parts"] == "temperatures"
    assert float(kept.gender_offset) == pytest.approx(0.3) and torch.equal(kept.age_warp, odd.age_warp)
    assert not torch.allclose(full.age_warp, odd.age_warp, atol=1e-2)  # the full refit does move it
    assert float(kept.gender_temperature) == pytest.approx(float(full.gender_temperature), abs=1e-5)
    assert printed["temperatures"]["fitted"]["age_temperature"] == pytest.approx(float(kept.age_temperature), abs=1e-6)


def test_measure_age_pooling_scores_every_pooling_on_both_halves(run, capsys, tmp_path):
    """train.measure_age_pooling on an ensemble of the run's model with itself: every way is scored on both
    held-out halves, and with two identical members a pool without a temperature is the member itself."""
    from model.ensemble import Ensemble
    from model.hub import load_model
    from train import measure_age_pooling
    spec = str(run / "model")
    Ensemble([load_model(spec), load_model(spec)], specs=[spec, spec]).save_pretrained(tmp_path / "ens")
    measure_age_pooling.main(["--run", str(run), "--model", str(tmp_path / "ens")])
    lines = capsys.readouterr().out.splitlines()
    rows = {line[:45].strip(): line[45:].split() for line in lines[1:]}
    assert set(rows) == {"member 1 (scratch) alone", "member 2 (scratch) alone"} | {
        f"{pool}, {way}" for pool in ("mixture", "product")
        for way in ("no temperature", "its temperature for 80%", "members' temperatures scaled for 80%")}
    assert rows["mixture, no temperature"] == rows["product, no temperature"] == rows["member 1 (scratch) alone"]
    with pytest.raises(SystemExit, match="is not an ensemble"):
        measure_age_pooling.main(["--run", str(run), "--model", spec])


def test_measure_tight_crops_reports_every_bar_for_every_model_and_source(run, capsys, shared_dir):
    """train.measure_tight_crops on a run's validation split (synthetic faces: the detector finds none, so
    no bar adds any) and the face-free squares of the PASCAL photos: fewer false faces at a higher bar."""
    from train import measure_tight_crops
    measure_tight_crops.main(["--run", str(run), "--model", str(run / "model"), "--bars", "0.5", "0.7",
                              "--wild", str(shared_dir / "data" / "wild-faces")])
    lines = capsys.readouterr().out.splitlines()
    results = json.loads(next(line for line in lines if line.startswith("{")))
    assert set(results["validation"]) == {"0.5", "0.7"}
    at = {bar: by_model[str(run / "model")] for bar, by_model in results["validation"].items()}
    for bar, rows in at.items():
        assert set(rows) == {"utkface", "fairface"}
        assert all(0 <= r["gender_right"] <= r["found"] for r in rows.values())
    # the images counted are those without a face at the highest bar: it adds none of them
    assert all(r["found"] == 0 for r in at["0.7"].values())
    free = results["face_free"]
    assert free["n"] == 600 and free["0.5"] >= free["0.7"] >= 0
    assert sum(line.startswith("validation, ") for line in lines) == 2


def test_a_model_that_does_not_load_is_one_clear_message(run, tmp_path, shared_dir):
    """Every command that reads a run's validation split says which model spec did not load (no traceback,
    nothing written); train.measure_tight_crops also says when --wild is not the annotated photos."""
    from train import fit_age_warp, fit_gender_offset, measure_tight_crops, recalibrate
    gone, out = str(tmp_path / "no-model"), ["--out", str(tmp_path / "out")]
    wild = ["--wild", str(shared_dir / "data" / "wild-faces")]
    for command in (lambda: main(["--run", str(run), "--model", gone]),
                    lambda: fit_age_warp.main(["--run", str(run), "--model", gone] + out),
                    lambda: fit_gender_offset.main(["--run", str(run), "--model", gone] + out),
                    lambda: recalibrate.main(["--run", str(run), "--model", gone] + out),
                    lambda: measure_tight_crops.main(["--run", str(run), "--model", gone] + wild)):
        with pytest.raises(SystemExit, match="no-model' is not a model directory"):
            command()
    assert not (tmp_path / "out").exists()
    with pytest.raises(SystemExit, match="is not the annotated photos folder"):
        measure_tight_crops.main(["--run", str(run), "--wild", str(tmp_path)])
