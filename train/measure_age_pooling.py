"""How should an ensemble pool its members' age distributions? Measured on a run's validation split only.

    python -m train.measure_age_pooling --run runs/vgg16-b45c --model assets/models/ensemble [--precision bf16]

The members (model/ensemble.py) read the validation faces once. Each pooling (a mixture or a product of the
members' calibrated, warped distributions) is scored as it is, with one temperature on the pool fitted for 80%
coverage (what `train.recalibrate --parts temperatures` fits), and with one scale on every member's own
temperature bisected for 80% coverage before pooling. Each temperature is fitted on one half of the faces
(train.validate.half_of) and scored on the other, both ways round: UTKFace-style exact ages only, age MAE
and the 80% interval's coverage per held-out half. Half A is the one train.recalibrate holds out. Gender is
not touched by the pooling. No evaluation set is read.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from model.age import age_interval, identity_warp, mean_age
from model.ensemble import AGE_POOLS, pool_ages
from model.fast import PRECISIONS, fast_model
from model.nets import read_outputs, split_output
from model.preprocess import normalize
from train.calibrate import bisect_for_coverage, fit_age_temperature_for_coverage
from train.evaluate import label_arrays
from train.validate import half_of, load_or_exit, validation_images


def member_age_logits(ensemble, images: torch.Tensor, precision: str | None, batch_size: int = 128) -> list:
    """Each member's raw age logits [N, AGE_BINS] on the decoded faces, read as the member reads faces."""
    forward = fast_model(ensemble, precision).members if precision else list(ensemble.members)
    norm, parts = normalize(), [[] for _ in forward]
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            batch = norm(images[start:start + batch_size])
            for k, (net, part) in enumerate(zip(forward, ensemble.member_inputs(batch))):
                mirror = (net.model if precision else net).mirror_average
                parts[k].append(split_output(read_outputs(net, part, mirror))[1])
    return [torch.cat(p).float() for p in parts]


def pooled(members, logits: list, weights: list, pool: str, scale: float = 1.0) -> torch.Tensor:
    """The members' calibrated, warped distributions (each temperature times `scale`) pooled as the ensemble
    pools them (model.ensemble.pool_ages), as a distribution."""
    probs = [m.age_distribution(x, scale) for m, x in zip(members, logits)]
    return pool_ages(probs, weights, pool).softmax(-1)


def scored(probs: torch.Tensor, ages: torch.Tensor) -> tuple[float, float]:
    """(age MAE, share of ages inside the 80% interval)."""
    low, high = age_interval(probs)
    return float((mean_age(probs) - ages).abs().mean()), float(((ages >= low) & (ages <= high)).float().mean())


def measure(ensemble, logits: list, ages: np.ndarray, half: np.ndarray) -> dict[str, list[tuple[float, float]]]:
    """{way of pooling: [(MAE, coverage) on half A, on half B]}, each temperature fitted on the other half."""
    members, weights = list(ensemble.members), ensemble.weights
    exact, truth = ages >= 0, torch.from_numpy(ages).float()
    rows: dict[str, list] = {}
    for fit, test in ((half & exact, ~half & exact), (~half & exact, half & exact)):
        fit_t, test_t = torch.from_numpy(fit), torch.from_numpy(test)
        for k, member in enumerate(members):
            alone = member.age_distribution(logits[k])
            rows.setdefault(f"member {k + 1} ({member.arch}) alone", []).append(scored(alone[test_t], truth[test_t]))
        for pool in AGE_POOLS:
            probs = pooled(members, logits, weights, pool)
            rows.setdefault(f"{pool}, no temperature", []).append(scored(probs[test_t], truth[test_t]))
            log_probs = probs.clamp_min(1e-12).log()
            t = fit_age_temperature_for_coverage(log_probs[fit_t], truth[fit_t],
                                                 lambda _: identity_warp()) or 1.0  # None: too few exact ages
            rows.setdefault(f"{pool}, its temperature for 80%", []).append(
                scored((log_probs / t).softmax(-1)[test_t], truth[test_t]))
            scale = bisect_for_coverage(
                lambda s: scored(pooled(members, logits, weights, pool, s)[fit_t], truth[fit_t])[1], 0.8, 0.3, 3.0,
                steps=25)
            rows.setdefault(f"{pool}, members' temperatures scaled for 80%", []).append(
                scored(pooled(members, logits, weights, pool, scale)[test_t], truth[test_t]))
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m train.measure_age_pooling", description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="the run whose split.csv gives the val rows")
    parser.add_argument("--model", required=True, help="an ensemble, e.g. assets/models/ensemble")
    parser.add_argument("--crops", choices=["app", "files"], help="default: as the run trained")
    parser.add_argument("--precision", choices=PRECISIONS, help="the members' fast path (default: fp32 reference)")
    args = parser.parse_args(argv)
    ensemble = load_or_exit(args.model)
    if not hasattr(ensemble, "members"):
        raise SystemExit(f"{args.model} is not an ensemble (model/ensemble.py)")
    images, records = validation_images(args.run, args.crops, ensemble.image_size)
    logits = member_age_logits(ensemble, images, args.precision)
    rows = measure(ensemble, logits, label_arrays(records)["age"], half_of(records))
    print(f"{'way of pooling':45s} {'MAE, half A / B':>18s} {'covers, half A / B':>20s}")
    for name, ((mae_a, cov_a), (mae_b, cov_b)) in rows.items():
        print(f"{name:45s} {mae_a:8.3f} / {mae_b:.3f} y {cov_a:9.1%} / {cov_b:.1%}")


if __name__ == "__main__":
    main()
