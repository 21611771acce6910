"""`python -m train.bench`: training throughput (images/s) of each model on this machine.

Measures what one training step costs, on random data of the real shapes: the scratch CNN on augmented
images; VGG16 as trained on a CPU (the tuned blocks + heads on cached features of the frozen blocks: block 5
on block-4 output by default, blocks 4-5 on block-3 output with --tuned-blocks 2), plus the one-off cost of
computing those features. No data set needed; numbers are medians over several steps after a warm-up.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from model.hub import bundled_image_size
from model.nets import build_model
from model.preprocess import normalize
from train.augment import BatchAugment
from train.losses import multitask_loss


def _median_rate(step, batch_size: int, steps: int) -> float:
    step()  # warm-up: first calls allocate and pick kernels
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return batch_size / statistics.median(times)


def bench(arch: str, image_size: int, batch_size: int, steps: int, bf16: bool,
          tuned_blocks: int = 1) -> dict[str, float]:
    torch.manual_seed(0)
    model = build_model(arch, image_size=image_size,
                        **({"tuned_blocks": tuned_blocks} if arch == "vgg16" else {})).train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    images = torch.randint(0, 256, (batch_size, 3, image_size, image_size), dtype=torch.uint8)
    gender = torch.randint(0, 2, (batch_size,))
    age = torch.randint(1, 90, (batch_size,))

    def autocast():
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)

    rates = {}

    def train_step(forward):
        def step():
            with autocast():
                out = forward().float()
            loss, _ = multitask_loss(out, gender, age)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return step

    if arch == "scratch":
        augment = BatchAugment()
        rates["train images/s (augment + step)"] = _median_rate(train_step(lambda: model(augment(images))),
                                                                batch_size, steps)
    else:
        normalized = normalize()(images).contiguous(memory_format=torch.channels_last)  # as train does
        with torch.no_grad(), autocast():
            features = model.forward_frozen(normalized).half()
        tuned = "block 5" if tuned_blocks == 1 else f"blocks {6 - tuned_blocks}-5"
        rates[f"block-{5 - tuned_blocks} feature caching images/s (once)"] = _feature_rate(
            model, normalized, autocast, batch_size, steps)
        rates[f"train images/s ({tuned} + heads, cached features)"] = _median_rate(
            train_step(lambda: model.forward_tuned(features.float())), batch_size, steps)
    return rates


def _feature_rate(model, normalized, autocast, batch_size, steps) -> float:
    def step():
        with torch.no_grad(), autocast():
            model.forward_frozen(normalized)
    return _median_rate(step, batch_size, steps)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m train.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--model", action="append", choices=["scratch", "vgg16"], help="repeatable; default both")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--tuned-blocks", type=int, default=1, choices=range(1, 5), help="VGG16 blocks fine-tuned")
    parser.add_argument("--image-size", type=int, help="input size in px (default: the bundled model's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    for arch in args.model or ["scratch", "vgg16"]:
        size = args.image_size or bundled_image_size(arch)
        rates = bench(arch, size, args.batch_size, args.steps, args.precision == "bf16", args.tuned_blocks)
        for what, rate in rates.items():
            print(f"{arch} {size}px {args.precision} threads={torch.get_num_threads()}: {rate:7.1f} {what}")


if __name__ == "__main__":
    main()
