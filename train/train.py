"""`python -m train`: train a multi-task (gender + age) model on UTKFace, FairFace and other face data.

One readable loop for both architectures. The only difference is what feeds the trainable part:
augmented images (scratch CNN, or VGG16 on a GPU), or the frozen VGG16 blocks' output cached once (VGG16
on a CPU).

Run directory (--out):
  model/            best checkpoint as save_pretrained (config.json + model.safetensors), gender-calibrated
  checkpoint.pt     last epoch's full state, for --resume (written atomically)
  train_config.json the options; split.csv the split; data_report.json counts per source, race, gender and
                    age band (train and val), skipped rows and images, dedupe report
  history.csv, curves.png, metrics.json
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import logging
import math
import os
import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import torch
from tqdm import tqdm

from model.nets import VGGNet, build_model, split_output
from model.age import expected_age
from model.preprocess import normalize
from train import calibrate, plots
from train.augment import BatchAugment
from train.checkpoint import atomic_write_json, load_checkpoint, save_checkpoint, save_model_dir
from train.data import (AGE_BANDS, RACES, age_band, load_records, race_name, read_split_csv, split_records,
                        write_split_csv)
from train.features import frozen_features
from train.images import load_images
from train.losses import in_age_range, multitask_loss
from train.sampler import BalancedSampler, shuffled_order

log = logging.getLogger("train")

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "UTKFace.tar.gz"
DEFAULT_VGG_WEIGHTS = ROOT.parent / "shared" / "weights" / "vgg16_imagenet_features.safetensors"
DEFAULT_CACHE = Path.home() / ".cache" / "face-age-gender"
DEFAULT_SIZE = {"scratch": 64, "vgg16": 128}


@dataclass
class TrainConfig:
    model: str = "scratch"
    data: list[str] = field(default_factory=lambda: [str(DEFAULT_DATA)])
    out: str = "runs/scratch"
    image_size: int = 0  # 0: the architecture's default
    epochs: int = 30
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    schedule: str = "cosine"  # or "plateau"
    patience: int = 6  # early stopping: epochs without a better validation --select criterion
    select: str = "loss"  # best epoch by validation "loss", or "score" = gender error (%) + age MAE (years)
    balance: str = "cells"  # "cells": sample race x gender x age-band cells more evenly; "none": plain shuffle
    balance_power: float = 0.5  # sample weight = 1 / cell count ** power (1 = every cell equally often)
    gender_weight: float = 1.0
    age_weight: float = 0.3
    age_l1: float = 0.05
    class_weight: bool = False  # up-weight the rarer gender by the train-split ratio
    seed: int = 0
    device: str = "auto"
    limit: int = 0  # use a seeded random subset of this many images (0 = all)
    split_csv: str = ""  # reuse an existing split instead of making one
    # VGG16 only
    vgg_weights: str = str(DEFAULT_VGG_WEIGHTS)  # safetensors file, "torchvision" (download) or "random"
    tuned_blocks: int = 1  # conv blocks fine-tuned (1 = block 5; 2 = blocks 4-5, about 5x slower per image)
    head_epochs: int = 2  # gradual unfreezing: heads alone first, then the tuned blocks
    backbone_lr_scale: float = 0.1
    cache_features: str = "auto"  # cache the frozen part's output: auto = on CPU only
    flip_cache: bool = False  # also cache the flipped training images' features: a true flip augmentation
    precision: str = "fp32"  # "bf16": autocast forward passes (1.8x faster VGG16 on a CPU with AVX512-BF16)
    cache_dir: str = str(DEFAULT_CACHE)
    push_to_hub: str = ""  # repo id: evaluate and publish when training ends


def parse_args(argv=None) -> TrainConfig:
    parser = argparse.ArgumentParser(prog="python -m train", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    for f in dataclasses.fields(TrainConfig):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        flag = "--" + f.name.replace("_", "-")
        if f.name in ("model", "schedule", "precision", "select", "balance"):
            continue  # added below with their choices
        if f.type == "bool":
            parser.add_argument(flag, action="store_true")
        elif f.name == "data":
            parser.add_argument(flag, nargs="+", default=default,
                                help="one or more of: UTKFace tar.gz or folder, FairFace folder (with "
                                     "fairface_label_train.csv), CelebA root, Male/Female folder tree")
        else:
            kind = {"int": int, "float": float}.get(f.type, str)
            parser.add_argument(flag, type=kind, default=default)
    parser.add_argument("--model", choices=["scratch", "vgg16"], default="scratch")
    parser.add_argument("--schedule", choices=["cosine", "plateau"], default="cosine")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--select", choices=["loss", "score"], default="loss")
    parser.add_argument("--balance", choices=["cells", "none"], default="cells")
    cfg = TrainConfig(**vars(parser.parse_args(argv)))
    cfg.image_size = cfg.image_size or DEFAULT_SIZE[cfg.model]
    return cfg


def pick_device(name: str) -> torch.device:
    return torch.device(("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name)


# ------------------------------------------------------------------------------------------------- data

def data_root(records) -> Path:
    """The folder all images are under (split.csv stores paths relative to it)."""
    root = Path(os.path.commonpath([r.path for r in records])) if records else Path(".")
    return root.parent if root.is_file() else root


LABELS = ("gender", "age", "age_low", "age_high")
GENDERS = ("male", "female")


class SplitData(NamedTuple):
    images: torch.Tensor  # uint8 [N, 3, S, S] (what Inputs feeds the model)
    labels: dict  # LABELS -> [N] long tensors
    records: list


def split_data(images: torch.Tensor, records: list) -> SplitData:
    labels = {name: torch.tensor([getattr(r, name) for r in records], dtype=torch.long) for name in LABELS}
    return SplitData(images, labels, records)


def limit_records(records: list, limit: int, seed: int) -> list:
    """A seeded random subset of `limit` records, drawn from each source in proportion to its size."""
    by_source = defaultdict(list)
    for r in records:
        by_source[r.source].append(r)
    chosen, left = [], limit
    for i, group in enumerate(by_source.values()):
        quota = left if i == len(by_source) - 1 else min(left, round(limit * len(group) / len(records)))
        chosen += random.Random(seed).sample(group, min(quota, len(group)))
        left -= quota
    return chosen


def apply_split_csv(records: list, csv_path: Path, root: Path, source_roots: list[str]) -> list:
    """Reuse a published split. Rows match by (source, path relative to the data folder, or to the record's
    own source folder), so a UTKFace split still matches when other sources are added. A source the csv does
    not list keeps its records unsplit (the caller splits them, seeded); listed sources' other records go."""
    fixed = {(r.source, r.path): r.split for r in read_split_csv(csv_path)}
    listed = {source for source, _ in fixed}
    kept = []
    for r in records:
        keys = [r.path, os.path.relpath(r.path, root)] + [os.path.relpath(r.path, s) for s in source_roots
                                                          if r.path.startswith(s.rstrip(os.sep) + os.sep)]
        split = next((fixed[(r.source, k)] for k in keys if (r.source, k) in fixed), None)
        if split:
            r.split = split
        if split or r.source not in listed:
            kept.append(r)
    return kept


def count_table(records: list) -> dict:
    def tally(values, order) -> dict:  # in the listed order, others ("unknown") last
        counts = Counter(values)
        return {k: counts[k] for k in sorted(counts, key=lambda k: (order.index(k) if k in order else len(order), k))}

    bands = [age_band(low, high) for low, high in AGE_BANDS]
    return {"n": len(records), "race": tally((race_name(r.race) for r in records), RACES),
            "gender": tally((GENDERS[r.gender] for r in records), GENDERS),
            "age_band": tally((r.band for r in records), bands)}


def split_counts(chosen: list, kept: list) -> dict:
    """Counts of the decoded faces of one split, in all and per source (with the unreadable images skipped)."""
    table = count_table(kept) | {"by_source": {}}
    for source in sorted({r.source for r in chosen}):
        table["by_source"][source] = count_table([r for r in kept if r.source == source]) | {
            "skipped_unreadable": sum(r.source == source for r in chosen) - sum(r.source == source for r in kept)}
    return table


def prepare_data(cfg: TrainConfig, out: Path) -> dict[str, SplitData]:
    """Records -> split (made or reused) -> decoded train/val images. Writes split.csv, data_report.json."""
    cache_dir = Path(cfg.cache_dir)
    records, report = load_records(cfg.data, cache_dir)
    root = data_root(records)
    if cfg.split_csv:  # reuse a published split; sources it does not cover get their own seeded split
        records = apply_split_csv(records, Path(cfg.split_csv), root, [e["root"] for e in report["sources"]])
    elif cfg.limit and cfg.limit < len(records):
        records = limit_records(records, cfg.limit, cfg.seed)
    split_records(records, seed=cfg.seed)
    write_split_csv(records, out / "split.csv", root=root)  # relative paths: portable and comparable
    report["split_root"] = str(root)
    sets, report["counts"] = {}, {}
    for split in ("train", "val"):
        chosen = [r for r in records if r.split == split]
        images, kept = load_images(chosen, cfg.image_size, cache_dir)
        report[f"{split}_images"] = len(kept)
        report[f"{split}_skipped_unreadable"] = len(chosen) - len(kept)
        report["counts"][split] = split_counts(chosen, kept)
        sets[split] = split_data(images, kept)
    report["test_images_listed"] = sum(r.split == "test" for r in records)
    atomic_write_json(out / "data_report.json", report)
    log.info("data: %s", "; ".join(
        f"{split} {c['n']} (" + ", ".join(f"{s} {t['n']}, {t['skipped_unreadable']} unreadable"
                                          for s, t in c["by_source"].items()) + ")"
        for split, c in report["counts"].items()))
    return sets


class Inputs:
    """What feeds the trainable part of the model, per split: images or cached VGG16 features."""

    def __init__(self, cfg: TrainConfig, model, sets, device):
        self.model, self.device = model, device
        self.cached = isinstance(model, VGGNet) and (
            cfg.cache_features == "on" or (cfg.cache_features == "auto" and device.type == "cpu"))
        self.flipped = None
        if self.cached:
            def features(images):
                return frozen_features(model, images, Path(cfg.cache_dir), device=device, bf16=cfg.precision == "bf16")

            self.data = {s: features(sets[s][0]) for s in sets}
            if cfg.flip_cache:
                self.flipped = features(sets["train"][0].flip(-1))
        else:
            self.data = {s: sets[s][0] for s in sets}
        self.augment, self.normalize = BatchAugment(), normalize()
        self.bf16 = cfg.precision == "bf16"

    def forward(self, split: str, idx: torch.Tensor, train: bool) -> torch.Tensor:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            return self._forward(split, idx, train).float()

    def _forward(self, split: str, idx: torch.Tensor, train: bool) -> torch.Tensor:
        x = self.data[split][idx]
        if self.cached:
            x = x.float()
            if train:  # flip half the batch: the flipped image's cached features, or else mirrored feature maps
                flip = torch.rand(len(x)) < 0.5
                # (mirroring is only approximate: the conv filters are not mirror-symmetric)
                x[flip] = self.flipped[idx[flip]].float() if self.flipped is not None else x[flip].flip(-1)
            return self.model.forward_tuned(x.to(self.device))
        x = self.augment(x) if train else self.normalize(x)
        return self.model(x.to(self.device))


# ------------------------------------------------------------------------------------------------- loop

def set_tuned_trainable(model, trainable: bool) -> None:
    if isinstance(model, VGGNet):
        model.tuned.requires_grad_(trainable)


def make_optimizer(cfg: TrainConfig, model):
    groups = [{"params": list(model.heads.parameters()), "lr": cfg.lr}]
    if isinstance(model, VGGNet):
        groups.append({"params": list(model.tuned.parameters()), "lr": cfg.lr * cfg.backbone_lr_scale})
    else:
        groups.append({"params": list(model.trunk.parameters()), "lr": cfg.lr})
    optimizer = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
    if cfg.schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs)
    else:
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.3, patience=2)
    return optimizer, scheduler


@torch.no_grad()
def run_eval(inputs: Inputs, split: str, labels: dict, cfg, batch_size=256) -> tuple[dict, torch.Tensor]:
    """Validation loss and metrics; also returns the raw outputs (for calibration).

    age_mae: on exact ages; age_range_acc: share of range-labelled faces whose expected age (nearest year)
    is inside their range. Each is NaN when the split has no such faces."""
    inputs.model.eval()
    gender, age, low, high = (labels[name] for name in LABELS)
    outs = torch.cat([inputs.forward(split, torch.arange(i, min(i + batch_size, len(gender))), train=False).cpu()
                      for i in range(0, len(gender), batch_size)])
    _, parts = multitask_loss(outs, gender, age, age_low=low, age_high=high, gender_weight=cfg.gender_weight,
                              age_weight=cfg.age_weight, age_l1=cfg.age_l1)
    gender_logit, age_logits = split_output(outs)
    pred_age = expected_age(age_logits)
    known, ranged = age >= 0, (age < 0) & (low >= 0) & (high > low)
    parts["gender_acc"] = ((gender_logit > 0).long() == gender).float().mean().item()
    parts["age_mae"] = (pred_age[known] - age[known]).abs().mean().item() if known.any() else math.nan
    parts["age_range_acc"] = in_age_range(pred_age[ranged], low[ranged], high[ranged]).float().mean().item() \
        if ranged.any() else math.nan
    return parts, outs


def selection_key(cfg: TrainConfig, row: dict) -> float:
    """An epoch's history row -> the --select criterion, lower is better. "score" weighs a gender error point
    like a year of age error: the validation loss can rise while both metrics still improve, as the age
    distribution grows over-confident. Without exact ages (range labels only), 10 points of range misses
    count as one year; without any age labels, gender error alone."""
    if cfg.select == "score":
        mae, range_acc = row["val_age_mae"], row.get("val_age_range_acc", math.nan)
        age_error = mae if math.isfinite(mae) else 10 * (1 - range_acc) if math.isfinite(range_acc) else 0.0
        return 100 * (1 - row["val_gender_acc"]) + age_error
    return row["val_loss"]


def make_sampler(cfg: TrainConfig, records: list) -> BalancedSampler | None:
    """--balance cells: a sampler over the race x gender x age-band cells of the training faces."""
    if cfg.balance == "none":
        return None
    return BalancedSampler([(r.race, r.gender, r.band) for r in records], cfg.balance_power, cfg.seed)


def train(cfg: TrainConfig, resume: bool = True) -> Path:
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint_path = out / "checkpoint.pt"
    config_path = out / "train_config.json"
    if resume and checkpoint_path.exists():
        previous = json.loads(config_path.read_text())
        defaults = dataclasses.asdict(TrainConfig())  # options added since that run had their defaults
        now = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("epochs", "push_to_hub")}
        changed = sorted(k for k in now if previous.get(k, defaults[k]) != now[k])
        if changed:
            raise SystemExit(f"{out} holds a run with other options ({', '.join(changed)}); "
                             "use another --out or delete it")
    atomic_write_json(config_path, dataclasses.asdict(cfg))

    torch.manual_seed(cfg.seed)
    device = pick_device(cfg.device)
    model = build_model(cfg.model, image_size=cfg.image_size,
                        **({"tuned_blocks": cfg.tuned_blocks} if cfg.model == "vgg16" else {}))
    if isinstance(model, VGGNet) and cfg.vgg_weights != "random":
        model.load_imagenet(cfg.vgg_weights)
    model.to(device)

    sets = prepare_data(cfg, out)
    train_labels = sets["train"].labels
    train_gender = train_labels["gender"]
    sampler = make_sampler(cfg, sets["train"].records)
    inputs = Inputs(cfg, model, sets, device)
    female_weight = 1.0
    if cfg.class_weight:
        female_weight = float((train_gender == 0).sum() / max(1, (train_gender == 1).sum()))
    optimizer, scheduler = make_optimizer(cfg, model)

    history, start_epoch, best_val, stale = [], 0, math.inf, 0
    if resume and checkpoint_path.exists():
        state = load_checkpoint(checkpoint_path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        history, start_epoch, best_val, stale = state["history"], state["epoch"] + 1, state["best_val"], state["stale"]
        log.info("resumed %s at epoch %d", out, start_epoch + 1)

    n = len(train_gender)
    for epoch in range(start_epoch, cfg.epochs):
        if stale >= cfg.patience:
            log.info("early stopping: validation %s has not improved for %d epochs", cfg.select, stale)
            break
        set_tuned_trainable(model, epoch >= cfg.head_epochs)
        model.train()
        order = sampler.epoch_order(epoch) if sampler else shuffled_order(n, cfg.seed, epoch)
        sums, seen, started = {}, 0, time.time()
        bar = tqdm(range(0, n, cfg.batch_size), desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False)
        for start in bar:
            idx = order[start:start + cfg.batch_size]
            out_batch = inputs.forward("train", idx, train=True)
            gender, age, low, high = (train_labels[name][idx].to(device) for name in LABELS)
            loss, parts = multitask_loss(out_batch, gender, age, age_low=low, age_high=high,
                                         gender_weight=cfg.gender_weight, age_weight=cfg.age_weight,
                                         age_l1=cfg.age_l1, female_weight=female_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v * len(idx)
            seen += len(idx)
            bar.set_postfix(loss=f"{sums['loss'] / seen:.3f}", refresh=False)
        seconds = time.time() - started
        val, _ = run_eval(inputs, "val", sets["val"].labels, cfg)
        row = {"epoch": epoch + 1, **{f"train_{k}": v / max(seen, 1) for k, v in sums.items()},
               **{f"val_{k}": v for k, v in val.items()}, "lr": optimizer.param_groups[0]["lr"],
               "images_per_s": seen / seconds, "seconds": seconds}
        history.append(row)
        log.info("epoch %d: train loss %.4f | val loss %.4f, gender acc %.4f, age MAE %.2f, age range acc %.3f | "
                 "%.0f img/s", epoch + 1, row["train_loss"], val["loss"], val["gender_acc"], val["age_mae"],
                 val["age_range_acc"], row["images_per_s"])
        if cfg.schedule == "cosine":
            scheduler.step()
        else:
            scheduler.step(val["loss"])
        key = selection_key(cfg, row)
        if key < best_val:
            best_val, stale = key, 0
            save_model_dir(model, out / "model")
        else:
            stale += 1
        save_checkpoint(checkpoint_path, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                          "scheduler": scheduler.state_dict(), "epoch": epoch, "history": history,
                                          "best_val": best_val, "stale": stale})
        write_history(out, history)

    finish(cfg, out, inputs, sets, history)
    return out


def finish(cfg: TrainConfig, out: Path, inputs: Inputs, sets, history: list[dict]) -> None:
    """Reload the best epoch, calibrate its gender probability on validation, write metrics."""
    best = type(inputs.model).from_pretrained(out / "model").to(inputs.model.gender_temperature.device)
    inputs.model.load_state_dict(best.state_dict())
    val, val_out = run_eval(inputs, "val", sets["val"].labels, cfg)
    temperature = calibrate.fit_temperature(split_output(val_out)[0], sets["val"].labels["gender"])
    inputs.model.gender_temperature.fill_(temperature)
    save_model_dir(inputs.model, out / "model")
    best_row = min(history, key=lambda r: selection_key(cfg, r)) if history else {}
    atomic_write_json(out / "metrics.json", {"best_epoch": best_row, "gender_temperature": temperature,
                                             "val_at_best": val, "epochs_run": len(history)})
    log.info("best epoch %s: val gender acc %.4f, age MAE %.2f, age range acc %.3f; gender temperature %.3f",
             best_row.get("epoch"), val["gender_acc"], val["age_mae"], val["age_range_acc"], temperature)


def write_history(out: Path, history: list[dict]) -> None:
    with open(out / "history.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
    plots.learning_curves(history, out / "curves.png")


def main(argv=None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    cfg = parse_args(argv)
    out = train(cfg)
    if cfg.push_to_hub:
        from train.evaluate import evaluate_run
        from train.push import push_run
        evaluate_run(out)
        push_run(out, cfg.push_to_hub)
    print(f"done: {out}")
