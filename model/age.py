"""Age as a distribution over whole years 0..MAX_AGE.

The age head outputs logits over AGE_BINS classes; the point estimate is the expectation and the
interval comes from the distribution's quantiles (widened where needed to hold the expectation), so the app
can show "31 y (26-36)".
"""
from __future__ import annotations

import torch

MAX_AGE = 100  # UTKFace goes to 116, but ages above 100 are a handful of images: clamp them.
AGE_BINS = MAX_AGE + 1
INTERVAL = 0.8  # the interval shown holds the central 80% of the predicted distribution


def age_values(device=None) -> torch.Tensor:
    return torch.arange(AGE_BINS, dtype=torch.float32, device=device)


def mean_age(probs: torch.Tensor) -> torch.Tensor:
    """[N, AGE_BINS] probabilities -> [N] expected age in years."""
    return (probs * age_values(probs.device)).sum(-1)


def expected_age(age_logits: torch.Tensor) -> torch.Tensor:
    """[N, AGE_BINS] logits -> [N] expected age in years (differentiable)."""
    return mean_age(age_logits.softmax(-1))


def age_quantiles(probs: torch.Tensor, q: float) -> torch.Tensor:
    """[N, AGE_BINS] probabilities -> [N] smallest age whose cumulative probability reaches q."""
    cdf = probs.cumsum(-1)
    q_tensor = torch.full((cdf.shape[0], 1), q, dtype=cdf.dtype, device=cdf.device)
    return torch.searchsorted(cdf.contiguous(), q_tensor).squeeze(1).clamp(max=MAX_AGE).float()


def age_interval(probs: torch.Tensor, mass: float = INTERVAL) -> tuple[torch.Tensor, torch.Tensor]:
    """The interval (low, high) shown with the age, in whole years: the central `mass` of the distribution
    (10th to 90th percentile for 0.8), widened to the whole years around the mean where it leaves the mean out.
    A peaked distribution with a thin tail does that (95% at 33 y, 5% at 60: mean 34.4, percentiles 33-33),
    and the app would show "34 y (33-33)"; widened, the age shown always lies in its interval, which then holds
    a little more than `mass` (on 3,460 UTKFace validation faces no shipped model gave such a reading).
    """
    tail = (1.0 - mass) / 2
    mean = mean_age(probs)
    return (torch.minimum(age_quantiles(probs, tail), mean.floor()),
            torch.maximum(age_quantiles(probs, 1.0 - tail), mean.ceil()))


def identity_warp(device=None) -> torch.Tensor:
    """The age warp that changes nothing: bin k stays at k years."""
    return age_values(device)


def warp_ages(probs: torch.Tensor, warp: torch.Tensor) -> torch.Tensor:
    """Move the probability of each bin k to warp[k] years (a monotone map fitted on validation,
    train/calibrate.py), shared linearly between the two whole years around it.

    The mean moves exactly with the map and, the map being monotone, so do the quantiles (to within a year),
    so the age, its interval and the distribution the app draws all stay one consistent distribution.
    The identity warp returns probs unchanged.
    """
    warp = warp.to(probs.dtype).clamp(0, MAX_AGE)
    low = warp.floor().long().clamp(max=MAX_AGE - 1)
    frac = warp - low
    moved = torch.zeros_like(probs)
    moved.index_add_(1, low, probs * (1 - frac))
    moved.index_add_(1, low + 1, probs * frac)
    return moved


def soft_age_targets(ages: torch.Tensor, sigma: float = 2.0) -> torch.Tensor:
    """[N] ages in years -> [N, AGE_BINS] Gaussian label distributions (label-distribution learning).

    A 30-year-old face also looks 29 or 31; soft targets teach the head that, and give smoother intervals.
    """
    ages = ages.float().clamp(0, MAX_AGE).unsqueeze(1)
    logp = -0.5 * ((age_values(ages.device).unsqueeze(0) - ages) / sigma) ** 2
    return logp.softmax(-1)
