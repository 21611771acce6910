"""Per-epoch training order that sees every race x gender x age-band cell often enough.

Mixed sources are lopsided (UTKFace has few Indian toddlers, FairFace few over-70s of some groups), so a
plain shuffle lets the big cells dominate. Each epoch draws as many samples as there are training images,
with replacement, weighting a sample by 1 / count(its cell) ** power.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence

import torch

DEFAULT_POWER = 0.5
# Why not power 1 (full inverse frequency, every cell equally often)? A 30-image cell among 60k images
# would then be drawn hundreds of times per epoch, each image memorised; the square root flattens the
# distribution a lot while still repeating a rare image only a few times.


def cell_weights(cells: Sequence[Hashable], power: float = DEFAULT_POWER) -> torch.Tensor:
    """One weight per sample: 1 / count(its cell) ** power (power 0: uniform, 1: every cell equally often)."""
    counts = Counter(cells)
    return torch.tensor([counts[c] ** -power for c in cells], dtype=torch.float64)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1000 + epoch)


class BalancedSampler:
    """Seeded per-epoch order of training indices, drawn with replacement by cell weights."""

    def __init__(self, cells: Sequence[Hashable], power: float = DEFAULT_POWER, seed: int = 0):
        self.weights = cell_weights(cells, power)
        self.seed = seed

    def __len__(self) -> int:
        return len(self.weights)

    def epoch_order(self, epoch: int) -> torch.Tensor:
        """[N] training indices for this epoch (N = number of training images); same seed and epoch, same order."""
        if len(self.weights) == 0:
            return torch.empty(0, dtype=torch.long)
        return torch.multinomial(self.weights, len(self.weights), replacement=True,
                                 generator=epoch_generator(self.seed, epoch))


def shuffled_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """`--balance none`: every training image once per epoch, in a seeded random order."""
    return torch.randperm(n, generator=epoch_generator(seed, epoch))
