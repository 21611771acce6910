"""model/card.py: the model card is built from a training run directory, with Hub metadata and the text the
issue asks for (licence, citation, fairness table, limitations)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import torch
from huggingface_hub import ModelCard

from model.card import model_card
from model.nets import ScratchNet

METRICS = {
    "split": "test", "n": 40,
    "gender": {"accuracy": 0.875, "f1_weighted": 0.8741, "ece": 0.0312, "confusion": [[18, 2], [3, 17]]},
    "age": {"mae": 6.4321, "cs5": 0.55, "n": 38},
    "by_race": {"White": {"n": 20, "gender_accuracy": 0.9, "age_mae": 5.9},
                "Black": {"n": 10, "gender_accuracy": 0.8, "age_mae": 7.25}},
    "by_age_band": {"15-59": {"n": 30, "gender_accuracy": 0.9667, "age_mae": 6.0},
                    "60+": {"n": 2, "gender_accuracy": 1.0, "age_mae": 9.5},
                    "3-14": {"n": 6, "gender_accuracy": 0.5, "age_mae": 3.1}},
}


def make_run(root: Path, seed: int = 0) -> Path:
    """A tiny but complete training run directory, as `python -m train` writes it."""
    torch.manual_seed(seed)
    model = ScratchNet(widths=[4, 8], image_size=32, hidden=8)
    with torch.no_grad():
        model.gender_temperature.fill_(1.5)
    run = root / f"run{seed}"
    model.save_pretrained(run / "model")
    (run / "train_config.json").write_text(json.dumps({"arch": "scratch", "epochs": 2, "lr": 0.003,
                                                       "widths": [4, 8]}))
    (run / "history.csv").write_text("epoch,train_loss,val_loss\n1,2.5,2.4\n2,2.1,2.2\n")
    (run / "data_report.json").write_text(json.dumps({"images": 50, "duplicates_removed": 2}))
    with open(run / "split.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "age", "gender", "race", "split", "source"])
        for i in range(50):
            split = "train" if i < 30 else "val" if i < 40 else "test"
            writer.writerow([f"UTKFace/{i}.jpg", -1 if i == 7 else 20 + i, i % 2, i % 5, split, "utkface"])
    (run / "eval").mkdir()
    (run / "eval" / "metrics.json").write_text(json.dumps(METRICS))
    (run / "eval" / "report.md").write_text("# Evaluation\n\n## Fairness\n\n| group | n |\n|---|---|\n")
    png = b"\x89PNG\r\n\x1a\n" + bytes(64)  # content does not matter for publishing
    for name in ("curves.png", "eval/confusion.png", "eval/reliability.png"):
        (run / name).write_bytes(png)
    return run


def files_in(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_card_metadata_is_hub_model_index(tmp_path):
    run = make_run(tmp_path)
    before = files_in(run)
    card = ModelCard(model_card(run, "someone/age-gender-scratch"))
    assert files_in(run) == before  # a pure function of the run: reads only

    data = card.data
    assert (data.library_name, data.license, data.datasets) == ("pytorch", "cc-by-nc-4.0", ["UTKFace"])
    assert {"age-estimation", "gender-classification", "scratch"} <= set(data.tags)
    assert data.model_name == "age-gender-scratch"
    results = {r.metric_type: (r.task_type, r.metric_value, r.dataset_split) for r in data.eval_results}
    assert results == {"accuracy": ("image-classification", 0.875, "test"),
                       "f1": ("image-classification", 0.8741, "test"),
                       "ece": ("image-classification", 0.0312, "test"),
                       "mae": ("age-estimation", 6.4321, "test"), "cs5": ("age-estimation", 0.55, "test")}
    index = data.to_dict()["model-index"]  # the form the Hub reads
    assert index[0]["name"] == "age-gender-scratch" and len(index[0]["results"]) == 2


def test_card_text_covers_use_data_licence_fairness_and_limits(tmp_path):
    text = ModelCard(model_card(make_run(tmp_path), "someone/age-gender-scratch")).text
    for heading in ("## How to use", "## Intended use", "## Training data and licence", "## Preprocessing",
                    "## Training", "## Evaluation", "## Fairness", "## Limitations and risks"):
        assert heading in text
    assert "non-commercial research" in text
    assert "Zhang, Zhifei and Song, Yang and Qi, Hairong" in text and "CVPR" in text and "2017" in text
    assert 'load_model("someone/age-gender-scratch")' in text
    assert "resized to 32x32 px" in text  # preprocessing from the model's own config
    # Split sizes from split.csv (run 7 has an unknown age), metrics and the fairness tables from metrics.json.
    assert "| train | UTKFace | 30 | 15 | 15 | 29 |" in text and "| test | UTKFace | 10 | 5 | 5 | 10 |" in text
    assert "| Gender accuracy | 87.5% |" in text and "| Age MAE (years) | 6.43 |" in text
    assert "| male | 18 | 2 |" in text and "| female | 3 | 17 |" in text
    assert "| White | 20 | 90.0% | 5.90 |" in text and "| Black | 10 | 80.0% | 7.25 |" in text
    bands = [line.split("|")[1].strip() for line in text.splitlines() if line.startswith(("| 3-", "| 15-", "| 60+"))]
    assert bands == ["3-14", "15-59", "60+"]  # age order, not string order
    assert "| 3-14 | 6 | 50.0% | 3.10 |" in text
    assert "Appearance does not determine gender" in text and "Predictions can be wrong" in text
    assert "Dataset biases" in text
    assert "| `lr` | `0.003` |" in text


def test_card_says_when_the_model_reads_each_face_with_its_mirror_image(tmp_path):
    run = make_run(tmp_path)
    assert "mirrored left to right" not in ModelCard(model_card(run)).text
    config = json.loads((run / "model" / "config.json").read_text()) | {"mirror_average": True}
    (run / "model" / "config.json").write_text(json.dumps(config))
    assert "mirrored left to right, and the two outputs are\naveraged" in ModelCard(model_card(run)).text


def test_card_without_evaluation(tmp_path):
    run = make_run(tmp_path)
    for path in (run / "eval").iterdir():
        path.unlink()
    card = ModelCard(model_card(run))
    assert card.data.eval_results is None and "model-index" not in card.data.to_dict()
    assert "This run was not evaluated." in card.text and "## Fairness" not in card.text
    assert "model_name" not in card.data.to_dict()


def test_card_links_resolve_among_the_published_files(tmp_path):
    """The card links to the full reports instead of repeating them: each relative link is a file that
    train.push publishes beside it (the FairFace report too), and the project's results page is named."""
    import re

    from train.push import files_to_upload

    run = make_run(tmp_path)
    fairface = {"n": 50, "gender_accuracy": 0.8, "age_range_accuracy": 0.4, "detection_on": {"gender_accuracy": 0.7}}
    (run / "eval" / "metrics.json").write_text(json.dumps(METRICS | {"fairface_val": fairface}))
    (run / "eval" / "fairface").mkdir()
    (run / "eval" / "fairface" / "report.md").write_text("# FairFace\n")
    text = ModelCard(model_card(run, "someone/age-gender-scratch")).text
    links = set(re.findall(r"\]\(([^)#\s]+)\)", text))
    relative = {link for link in links if not re.match(r"https?:", link)}
    assert relative == {"eval/report.md", "eval/fairface/report.md"}
    assert relative <= set(files_to_upload(run))
    assert "docs/results.md" in text and "docs/training.md" in text
