"""model/card.py: the model card is built from a training run directory, with Hub metadata and the text the
issue asks for (licence, citation, fairness table, limitations)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import torch
import yaml
from huggingface_hub import ModelCard

from model.card import model_card
from model.nets import ScratchNet

METRICS = {
    "split": "test", "n": 40,
    "gender": {"accuracy": 0.875, "f1_weighted": 0.8741, "ece": 0.0312, "confusion": [[18, 2], [3, 17]]},
    "age": {"mae": 6.4321, "cs5": 0.55, "n": 38},
    "by_race": {"White": {"n": 20, "gender_accuracy": 0.9, "age_mae": 5.9},
                "Black": {"n": 10, "gender_accuracy": 0.8, "age_mae": 7.25}},
    "by_age_band": {"0-14": {"n": 6, "gender_accuracy": 0.5, "age_mae": 3.1},
                    "15-59": {"n": 30, "gender_accuracy": 0.9667, "age_mae": 6.0}},
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
