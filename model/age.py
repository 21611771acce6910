"""Age as a distribution over whole years 0..MAX_AGE.

The age head outputs logits over AGE_BINS classes; the point estimate is the expectation and the
interval comes from the distribution's quantiles, so the app can show "31 y (26-36)".
"""
from __future__ import annotations

import torch

MAX_AGE = 100  # UTKFace goes to 116, but ages above 100 are a handful of images: clamp them.
AGE_BINS = MAX_AGE + 1
INTERVAL = 0.8  # the interval shown is the central 80% of the predicted distribution


def age_values(device=None) -> torch.Tensor:
    return torch.arange(AGE_BINS, dtype=torch.float32, device=device)


def expected_age(age_logits: torch.Tensor) -> torch.Tensor:
    """[N, AGE_BINS] logits -> [N] expected age in years (differentiable)."""
    return (age_logits.softmax(-1) * age_values(age_logits.device)).sum(-1)


def age_quantiles(age_logits: torch.Tensor, q: float) -> torch.Tensor:
    """[N, AGE_BINS] logits -> [N] smallest age whose cumulative probability reaches q."""
    cdf = age_logits.softmax(-1).cumsum(-1)
    q_tensor = torch.full((cdf.shape[0], 1), q, dtype=cdf.dtype, device=cdf.device)
    return torch.searchsorted(cdf.contiguous(), q_tensor).squeeze(1).clamp(max=MAX_AGE).float()


def age_interval(age_logits: torch.Tensor, mass: float = INTERVAL) -> tuple[torch.Tensor, torch.Tensor]:
    """Central `mass` interval (low, high) in years, e.g. 10th and 90th percentiles for mass=0.8."""
    tail = (1.0 - mass) / 2
    return age_quantiles(age_logits, tail), age_quantiles(age_logits, 1.0 - tail)


def soft_age_targets(ages: torch.Tensor, sigma: float = 2.0) -> torch.Tensor:
    """[N] ages in years -> [N, AGE_BINS] Gaussian label distributions (label-distribution learning).

    A 30-year-old face also looks 29 or 31; soft targets teach the head that, and give smoother intervals.
    """
    ages = ages.float().clamp(0, MAX_AGE).unsqueeze(1)
    logp = -0.5 * ((age_values(ages.device).unsqueeze(0) - ages) / sigma) ** 2
    return logp.softmax(-1)
