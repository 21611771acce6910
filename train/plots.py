"""PNG plots for training and evaluation (matplotlib, no display needed)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def learning_curves(history: list[dict], path: Path) -> None:
    epochs = [r["epoch"] for r in history]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for key, label in (("train_loss", "train"), ("val_loss", "validation")):
        axes[0].plot(epochs, [r[key] for r in history], marker="o", label=label)
    axes[0].set(title="loss", xlabel="epoch")
    axes[0].legend()
    axes[1].plot(epochs, [r["val_gender_acc"] for r in history], marker="o")
    axes[1].set(title="validation gender accuracy", xlabel="epoch")
    axes[2].plot(epochs, [r["val_age_mae"] for r in history], marker="o")
    axes[2].set(title="validation age MAE (years)", xlabel="epoch")
    _save(fig, path)


def confusion_matrix(matrix: list[list[int]], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(3.8, 3.4))
    ax.imshow(matrix, cmap="Blues")
    labels = ["male", "female"]
    ax.set(xticks=[0, 1], yticks=[0, 1], xticklabels=labels, yticklabels=labels,
           xlabel="predicted", ylabel="true", title="gender confusion")
    for i in range(2):
        for j in range(2):
            ax.text(j, i, str(matrix[i][j]), ha="center", va="center")
    _save(fig, path)


def reliability_diagram(bins: list[dict], ece: float, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(4.2, 4))
    ax.plot([0.5, 1], [0.5, 1], "k--", lw=1, label="perfect calibration")
    ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o-", label="model")
    ax.set(xlabel="confidence", ylabel="accuracy", title=f"gender reliability (ECE {ece:.3f})", xlim=(0.5, 1),
           ylim=(0, 1.02))
    ax.legend(loc="lower right")
    _save(fig, path)


def age_scatter(true_age, pred_age, path: Path) -> None:
    true_age, pred_age = np.asarray(true_age), np.asarray(pred_age)
    fig, ax = plt.subplots(figsize=(4.4, 4.2))
    ax.scatter(true_age, pred_age, s=3, alpha=0.3)
    top = max(100, float(true_age.max(initial=0)))
    ax.plot([0, top], [0, top], "k--", lw=1)
    ax.set(xlabel="true age", ylabel="predicted age", title="age: predicted vs true")
    _save(fig, path)


def group_bars(table: dict[str, dict], title: str, path: Path) -> None:
    """Gender accuracy and the age metric of the labels (MAE for exact ages, range accuracy for ranges)."""
    names = list(table)
    exact = any(np.isfinite(table[n].get("age_mae", np.nan)) for n in names)
    key, label, ylim = ("age_mae", "age MAE", None) if exact else ("age_range_accuracy", "age range accuracy", (0, 1))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    axes[0].bar(names, [table[n]["gender_accuracy"] for n in names])
    axes[0].set(title=f"gender accuracy by {title}", ylim=(0.5, 1))
    axes[1].bar(names, [table[n].get(key, np.nan) for n in names], color="tab:orange")
    axes[1].set(title=f"{label} by {title}" + (" (years)" if exact else ""))
    if ylim:
        axes[1].set_ylim(*ylim)
    for ax in axes:
        ax.tick_params(axis="x", rotation=30)
    _save(fig, path)


def age_by_range(low, high, pred_age, path: Path) -> None:
    """Predicted ages per labelled range (boxes), with each true range shaded."""
    low, high, pred_age = map(np.asarray, (low, high, pred_age))
    ranges = sorted({(int(a), int(b)) for a, b in zip(low, high)})
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for i, (a, b) in enumerate(ranges):
        ax.fill_between([i + 0.6, i + 1.4], a, b + 1, color="tab:green", alpha=0.15, lw=0)
    ax.boxplot([pred_age[(low == a) & (high == b)] for a, b in ranges], showfliers=False)
    ax.set_xticks(range(1, len(ranges) + 1), [f"{a}-{b}" if b < 100 else f"{a}+" for a, b in ranges], rotation=30)
    ax.set(xlabel="labelled age range (shaded)", ylabel="predicted age", title="age: predicted vs labelled range")
    _save(fig, path)


def end_to_end_by_race(model_table: dict[str, dict], end_to_end: dict[str, dict], path: Path) -> None:
    """Gender accuracy per race: the model on the crops, then each app-path mode (no face = wrong)."""
    races = list(model_table)
    series = {"model on crops": [model_table[r]["gender_accuracy"] for r in races]}
    series |= {mode.replace("_", " "): [e["by_race"][r]["gender_accuracy"] for r in races]
               for mode, e in end_to_end.items()}
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(10, 3.6))
    for i, (name, values) in enumerate(series.items()):
        ax.bar(np.arange(len(races)) + i * width, values, width, label=name)
    ax.set_xticks(np.arange(len(races)) + width * (len(series) - 1) / 2, races, rotation=30)
    ax.set(title="gender accuracy by race, every image counted", ylim=(0, 1))
    ax.legend(loc="lower right", fontsize=8)
    _save(fig, path)
