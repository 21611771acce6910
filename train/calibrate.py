"""Temperature scaling (Guo et al., 2017) of the gender logit and of the age distribution, fitted on the
validation split."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from train.losses import interval_nll


def minimise_over_temperature(nll) -> float:
    """The T > 0 that minimises nll(T) (a scalar tensor), found by LBFGS on log T so T stays positive."""
    log_t = torch.zeros((), requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200)

    def closure():
        optimizer.zero_grad()
        loss = nll(log_t.exp())
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().exp().clamp(0.05, 20.0))


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The T > 0 that minimises the validation NLL of sigmoid(logit / T). One parameter, so it cannot
    change which gender is predicted, only how confident the probability is."""
    logits, labels = logits.detach().float(), labels.float()
    return minimise_over_temperature(lambda t: F.binary_cross_entropy_with_logits(logits / t, labels))


def fit_age_temperature(age_logits: torch.Tensor, age: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> float:
    """The T > 0 that minimises the validation NLL of softmax(age_logits / T): -log P(age) for exact ages,
    -log P(low <= age <= high) for range labels (age < 0), each face counted once. It sharpens or widens the
    distribution and so the interval shown; the most likely age stays the same."""
    age_logits = age_logits.detach().float()
    exact = age >= 0
    top = age_logits.shape[1] - 1

    def nll(t):
        scaled = age_logits / t
        terms = [-scaled[exact].log_softmax(-1).gather(1, age[exact].clamp(max=top).unsqueeze(1)).squeeze(1),
                 interval_nll(scaled[~exact], low[~exact], high[~exact])]
        return torch.cat(terms).mean()

    return minimise_over_temperature(nll)
