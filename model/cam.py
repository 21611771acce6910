"""Grad-CAM for the two heads: what in the face drove the gender call and the age estimate.

Targets are small callables on one output row ([gender logit | age logits]), as pytorch-grad-cam expects:
- gender: the logit of the predicted class (+logit for female, -logit for male);
- age: the log-probability of the predicted 80% interval, i.e. "what supports this age range".

`library_cams` runs pytorch-grad-cam itself. `explain` computes the same maps faster: the library
back-propagates all the way to the input, but Grad-CAM only needs gradients at `model.cam_layer`, which is
the last trunk layer; `explain` cuts the model there (`split_at_cam_layer`), so one forward pass serves the
readouts and both heads' maps, and each head costs only a backward through pool + head. tests/test_cam.py
checks the two agree. Given a model.fast.FastModel, the trunk runs at its precision (bf16 on CPUs with bf16
instructions) and the maps follow from its activations in fp32 (tests/test_fast_inference.py: they agree
with the fp32 maps).
"""
from __future__ import annotations

import time

import cv2
import numpy as np
import torch

from model.fast import FastEnsemble, FastModel
from model.gender import says_female
from model.nets import mean_of_views, with_mirrors

HEADS = ("gender", "age")


class GenderTarget:
    """Score for the gender head: the logit of the class that was predicted."""

    def __init__(self, female: bool):
        self.sign = 1.0 if female else -1.0

    def __call__(self, row: torch.Tensor) -> torch.Tensor:
        return self.sign * row[..., 0]


class AgeTarget:
    """Score for the age head: log-probability that the age lies in [low, high] years."""

    def __init__(self, low: int, high: int):
        self.low, self.high = int(low), int(high)

    def __call__(self, row: torch.Tensor) -> torch.Tensor:
        logits = row[..., 1:]
        return torch.logsumexp(logits[..., self.low:self.high + 1], -1) - torch.logsumexp(logits, -1)


def targets_for(head: str, predicted: dict[str, torch.Tensor]) -> list:
    """One target per face, explaining what the model predicted for it."""
    if head == "gender":
        return [GenderTarget(says_female(float(p))) for p in predicted["p_female"]]
    if head == "age":
        return [AgeTarget(lo, hi) for lo, hi in zip(predicted["age_low"], predicted["age_high"])]
    raise ValueError(f"unknown CAM head {head!r}; choose from {HEADS}")


def _normalise(maps: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
    """Per map: shift to 0, divide by max, resize (exactly pytorch-grad-cam's `scale_cam_image`)."""
    result = []
    for m in maps:
        m = m - m.min()
        m = m / (1e-7 + m.max())
        result.append(cv2.resize(np.float32(m), size) if size else m)
    return np.float32(result)


def _parts(model) -> tuple[list[tuple], callable, callable]:
    """([(features, tail, mirror)] per network, how their outputs combine, how the input reaches each) for an
    AgeGenderNet or a model.fast wrapper of one; an ensemble (model/ensemble.py) has one part per member."""
    net = model.model if isinstance(model, (FastModel, FastEnsemble)) else model
    if hasattr(net, "members"):
        members = model.members  # the FastModels of a FastEnsemble, or the ensemble's nets
        parts = [_parts(m)[0][0] for m in members]
        return parts, net.combine, net.member_inputs
    features, tail = (model.features, model.tail) if isinstance(model, FastModel) else net.split_at_cam_layer()
    return [(features, tail, net.mirror_average)], lambda outs: outs[0], lambda batch: [batch]


def explain(model, batch: torch.Tensor, heads: tuple[str, ...] = HEADS, timings: dict | None = None
            ) -> tuple[dict[str, torch.Tensor], dict[str, np.ndarray]]:
    """One forward pass -> (readouts as in `predict`, {head: Grad-CAM maps [N, S, S] float32 in [0, 1]}).
    `model`: an AgeGenderNet (fp32) or its model.fast wrapper (its body at its own precision). An ensemble's
    map is the mean of its members' maps, each scaled to the input (pytorch-grad-cam's way with several target
    layers). `timings`, if given, gets the ms spent in the forward pass ("model") and on the maps ("cam")."""
    start = time.perf_counter()
    parts, combine, member_inputs = _parts(model)
    n = len(batch)
    acts = []
    with torch.no_grad():  # the trunk below the CAM layer needs no backward at all (it may even be frozen)
        for (features, _, mirror), part in zip(parts, member_inputs(batch)):
            # A fp32 leaf that requires grad: gradients stop here.
            acts.append(features(with_mirrors(part) if mirror else part).float().requires_grad_(True))
    with torch.enable_grad():
        outs = []
        for (_, tail, mirror), act in zip(parts, acts):
            out = tail(act)
            # the readouts are the two views' mean (model.nets.read_outputs), and so is the target
            outs.append(mean_of_views(out) if mirror else out)
        out = combine(outs)
    predicted = model.readouts(out)
    forward_done = time.perf_counter()
    size = (batch.shape[-1], batch.shape[-2])
    cams = {}
    for head in heads:
        score = sum(t(row) for t, row in zip(targets_for(head, predicted), out))
        grads = torch.autograd.grad(score, acts, retain_graph=True)
        layer_maps = []
        for (_, _, mirror), act, grad in zip(parts, acts, grads):
            weights = grad.mean(dim=(2, 3), keepdim=True)  # Grad-CAM: channel weight = mean gradient
            maps = (weights * act).sum(1).clamp(min=0).detach()
            if mirror:  # each view's map of the averaged prediction, the mirror's turned back, summed
                maps = maps[:n] + maps[n:].flip(-1)
            layer_maps.append(_normalise(maps.numpy(), size))
        # The library normalises once per layer, averages the layers, and normalises again: same here.
        cams[head] = _normalise(np.mean(layer_maps, axis=0))
    if timings is not None:
        timings["model"] = timings.get("model", 0.0) + (forward_done - start) * 1000
        timings["cam"] = timings.get("cam", 0.0) + (time.perf_counter() - forward_done) * 1000
    return predicted, cams


def library_cams(model, batch: torch.Tensor, targets: list) -> np.ndarray:
    """Reference maps from pytorch-grad-cam's GradCAM on `model.cam_layers`: [N, S, S] float32 in [0, 1]."""
    from pytorch_grad_cam import GradCAM

    with GradCAM(model=model, target_layers=model.cam_layers) as cam:
        return cam(input_tensor=batch, targets=targets)
