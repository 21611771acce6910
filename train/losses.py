"""The multi-task loss: gender (binary cross-entropy) + age (label-distribution learning).

Age is masked where it is unknown (CelebA / folder datasets), so mixed datasets train both heads. A face
labelled with an age range (FairFace's "20-29") gets the interval likelihood: -log P(age_low <= age <= age_high).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from model.age import expected_age, soft_age_targets
from model.nets import split_output
from train.data import is_range_label


def interval_nll(age_logits: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """[N, AGE_BINS] logits, inclusive year bounds [N] -> [N] -log(sum of predicted probability over low..high).

    Lower as the distribution's mass moves inside the range; zero when all of it is inside. Bounds above
    the last bin (e.g. "70+" up to MAX_AGE, or older) are clamped to it."""
    years = torch.arange(age_logits.shape[1], device=age_logits.device)
    top = age_logits.shape[1] - 1
    inside = (years >= low.clamp(0, top).unsqueeze(1)) & (years <= high.clamp(0, top).unsqueeze(1))
    return age_logits.logsumexp(-1) - age_logits.masked_fill(~inside, -torch.inf).logsumexp(-1)


def range_spread_loss(age_logits: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """[N] cross-entropy against a uniform distribution over each inclusive range low..high.

    The interval likelihood is as low when all the mass sits at one end of the range as when it is spread
    over it, so for a 10-19 face the mass drifts to the end nearest the bulk of the data (19, 20), and the
    expected age with it: ages pulled to the middle. This term asks for the mass spread over the range."""
    years = torch.arange(age_logits.shape[1], device=age_logits.device)
    top = age_logits.shape[1] - 1
    inside = (years >= low.clamp(0, top).unsqueeze(1)) & (years <= high.clamp(0, top).unsqueeze(1))
    target = inside.float() / inside.sum(-1, keepdim=True)
    return F.cross_entropy(age_logits, target, reduction="none")


def multitask_loss(out: torch.Tensor, gender: torch.Tensor, age: torch.Tensor, *, age_low: torch.Tensor | None = None,
                   age_high: torch.Tensor | None = None, gender_weight: float = 1.0, age_weight: float = 0.3,
                   age_l1: float = 0.05, female_weight: float | torch.Tensor = 1.0,
                   range_spread: float = 0.0) -> tuple[torch.Tensor, dict[str, float]]:
    """out [N, 1 + AGE_BINS]; gender [N] in {0, 1}; age [N] in years, negative where unknown; age_low/age_high
    [N] inclusive ranges (optional), used where age is unknown and age_low < age_high.

    Exact age loss = cross-entropy against a Gaussian label distribution + `age_l1` x |E[age] - age|: the first
    shapes the distribution (for the interval), the second pulls the point estimate to the truth. Range loss
    = interval_nll, plus `range_spread` x range_spread_loss (mass spread over the range, not piled at one end).
    The age loss is the mean over all faces with either label.
    `female_weight` > 1 up-weights the female class: one number (class-imbalance weighting), or one per face
    [N] (a weight per source, train/train.py's --female-weight).
    """
    gender_logit, age_logits = split_output(out)
    pos_weight = torch.as_tensor(female_weight, device=out.device, dtype=gender_logit.dtype)
    loss_gender = F.binary_cross_entropy_with_logits(gender_logit, gender.float(), pos_weight=pos_weight)
    known = age >= 0
    ranged = is_range_label(age, age_low, age_high) if age_low is not None and age_high is not None \
        else torch.zeros_like(known)
    per_face = []
    if known.any():
        logits, ages = age_logits[known], age[known]
        ce = F.cross_entropy(logits, soft_age_targets(ages), reduction="none")
        l1 = (expected_age(logits) - ages.float().clamp(max=logits.shape[1] - 1)).abs()
        per_face.append(ce + age_l1 * l1)
    if ranged.any():
        logits, low, high = age_logits[ranged], age_low[ranged], age_high[ranged]
        nll = interval_nll(logits, low, high)
        per_face.append(nll + range_spread * range_spread_loss(logits, low, high) if range_spread else nll)
    if per_face:
        loss_age = torch.cat(per_face).mean()
    else:
        loss_age = out.sum() * 0.0  # keeps the graph valid for an all-unknown batch
    total = gender_weight * loss_gender + age_weight * loss_age
    return total, {"loss": total.item(), "loss_gender": loss_gender.item(), "loss_age": loss_age.item()}


def distill_loss(out: torch.Tensor, p_female: torch.Tensor, age_probs: torch.Tensor, *, gender_weight: float = 1.0,
                 age_weight: float = 0.3) -> torch.Tensor:
    """out [N, 1 + AGE_BINS]; a teacher's readings of the same faces (train/teacher.py): p_female [N], age_probs
    [N, AGE_BINS] -> the loss of learning them: binary cross-entropy against the teacher's probability plus
    `age_weight` x cross-entropy against its age distribution, weighted as multitask_loss weighs the labels' terms
    (so --distill mixes like with like). Both are lowest where the student's raw outputs give the teacher's
    readings."""
    gender_logit, age_logits = split_output(out)
    loss_gender = F.binary_cross_entropy_with_logits(gender_logit, p_female.to(gender_logit.dtype))
    loss_age = F.cross_entropy(age_logits, age_probs.to(age_logits.dtype))
    return gender_weight * loss_gender + age_weight * loss_age
