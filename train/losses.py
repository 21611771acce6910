"""The multi-task loss: gender (binary cross-entropy) + age (label-distribution learning).

Age is masked where it is unknown (CelebA / folder datasets), so mixed datasets train both heads.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from model.age import expected_age, soft_age_targets
from model.nets import split_output


def multitask_loss(out: torch.Tensor, gender: torch.Tensor, age: torch.Tensor, *, gender_weight: float = 1.0,
                   age_weight: float = 0.3, age_l1: float = 0.05, female_weight: float = 1.0
                   ) -> tuple[torch.Tensor, dict[str, float]]:
    """out [N, 1 + AGE_BINS]; gender [N] in {0, 1}; age [N] in years, negative where unknown.

    Age loss = cross-entropy against a Gaussian label distribution + `age_l1` x |E[age] - age|: the first
    shapes the distribution (for the interval), the second pulls the point estimate to the truth.
    `female_weight` > 1 up-weights the female class (class-imbalance weighting).
    """
    gender_logit, age_logits = split_output(out)
    pos_weight = torch.tensor(female_weight, device=out.device)
    loss_gender = F.binary_cross_entropy_with_logits(gender_logit, gender.float(), pos_weight=pos_weight)
    known = age >= 0
    if known.any():
        logits, ages = age_logits[known], age[known]
        ce = -(soft_age_targets(ages) * logits.log_softmax(-1)).sum(-1).mean()
        l1 = (expected_age(logits) - ages.float().clamp(max=logits.shape[1] - 1)).abs().mean()
        loss_age = ce + age_l1 * l1
    else:
        loss_age = out.sum() * 0.0  # keeps the graph valid for an all-unknown batch
    total = gender_weight * loss_gender + age_weight * loss_age
    return total, {"loss": total.item(), "loss_gender": loss_gender.item(), "loss_age": loss_age.item()}
