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
    names = list(table)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    axes[0].bar(names, [table[n]["gender_accuracy"] for n in names])
    axes[0].set(title=f"gender accuracy by {title}", ylim=(0.5, 1))
    axes[1].bar(names, [table[n]["age_mae"] for n in names], color="tab:orange")
    axes[1].set(title=f"age MAE by {title} (years)")
    for ax in axes:
        ax.tick_params(axis="x", rotation=30)
    _save(fig, path)
