"""Temperature scaling of the gender logit (Guo et al., 2017), fitted on the validation split."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The T > 0 that minimises the validation NLL of sigmoid(logit / T). One parameter, so it cannot
    change which gender is predicted, only how confident the probability is."""
    logits, labels = logits.detach().float(), labels.float()
    log_t = torch.zeros((), requires_grad=True)  # optimise log T so T stays positive
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200)

    def closure():
        optimizer.zero_grad()
        loss = F.binary_cross_entropy_with_logits(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().exp().clamp(0.05, 20.0))
