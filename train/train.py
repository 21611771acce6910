"""`python -m train`: train a multi-task (gender + age) model on UTKFace, FairFace and other face data.

One readable loop for both architectures. The only difference is what feeds the trainable part:
augmented images (scratch CNN, or VGG16 on a GPU), or the frozen VGG16 blocks' output cached once (VGG16
on a CPU). On a GPU the uint8 batches are gathered and pinned by DataLoader workers, cross to the device
and are augmented there. Launched as N processes (`torchrun --nproc_per_node N -m train ...` or
`accelerate launch --num_processes N -m train ...`), each trains on its own share of every batch,
DistributedDataParallel averages the gradients, and process 0 evaluates and writes the run files
(train/distributed.py).

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
import platform
import random
import shutil
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from model.nets import CALIBRATION_BUFFERS, VGGNet, build_model, split_output
from model.age import expected_age
from model.hub import bundled_image_size
from model.paths import SHARED_DIR
from model.preprocess import normalize
from train import calibrate, distributed
from train.augment import BatchAugment, augmented_copy
from train.checkpoint import atomic_write_json, load_checkpoint, save_checkpoint, save_model_dir
from train.data import (AGE_BANDS, RACES, age_band, cap_per_source, in_age_range, is_range_label, load_records,
                        race_name, read_split_csv, split_records, write_split_csv)
from train.features import frozen_features
from train.images import load_images
from train.losses import distill_loss, multitask_loss
from train.pack import is_pack, read_pack
from train.sampler import BalancedSampler, shuffled_order
from train.teacher import Readings, teacher_readings

log = logging.getLogger("train")

DEFAULT_DATA = SHARED_DIR / "data" / "UTKFace.tar.gz"
DEFAULT_VGG_WEIGHTS = SHARED_DIR / "weights" / "vgg16_imagenet_features.safetensors"
DEFAULT_CACHE = Path.home() / ".cache" / "face-age-gender"


def option(default, help: str, choices: list[str] | None = None):
    """A TrainConfig field with its --help text (and, where the value is one of a few, its choices)."""
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass
class TrainConfig:
    model: str = option("scratch", "the architecture", ["scratch", "vgg16"])
    data: list[str] = field(default_factory=lambda: [str(DEFAULT_DATA)], metadata={"help": (
        "one or more of: UTKFace tar.gz or folder, FairFace folder (with fairface_label_train.csv), CelebA root, "
        "Male/Female folder tree")})
    out: str = option("runs/scratch", "the run folder: model, checkpoint, history, report")
    image_size: int = option(0, "0: the size the bundled model of this architecture reads")
    epochs: int = option(30, "epochs in all (a resumed run may grow them)")
    batch_size: int = option(64, "in all: with N processes, each takes batch_size / N per step")
    workers: int = option(-1, "DataLoader processes gathering (and pinning) batches: -1 = 4 on a GPU, 0 on a CPU")
    lr: float = option(2e-3, "learning rate (AdamW) at the start of --schedule")
    weight_decay: float = option(1e-4, "AdamW weight decay")
    schedule: str = option("cosine", "cosine decay over --epochs, or plateau: lr x 0.3 when validation stalls",
                           ["cosine", "plateau"])
    patience: int = option(6, "early stopping: epochs without a better validation --select criterion")
    select: str = option("loss", "best epoch by validation loss, or score = gender error (%) + age MAE (years)",
                         ["loss", "score"])
    balance: str = option("cells", "cells: sample race x gender x age-band cells more evenly; none: plain shuffle",
                          ["cells", "none"])
    balance_power: float = option(0.5, "sample weight = 1 / cell count ** power (1 = every cell equally often)")
    gender_weight: float = option(1.0, "weight of the gender loss")
    age_weight: float = option(0.3, "weight of the age-distribution loss")
    age_l1: float = option(0.05, "weight of the L1 pull of the expected age on exact ages")
    range_spread: float = option(0.0, "range labels: weight of a loss spreading the age mass over the range "
                                 "(losses.py)")
    class_weight: bool = option(False, "up-weight the rarer gender by the train-split ratio")
    # A lean the model can learn per kind of photo, where the calibration's one gender offset serves every
    # source alike and the sources lean opposite ways (docs/training.md).
    female_weight: str = option("", "the female class's loss weight per source, e.g. fairface=1.3,utkface=0.77 "
                                "(others 1; times --class-weight's ratio)")
    # Knowledge distillation (train/teacher.py): the stronger model's readings teach the smaller one.
    teacher: str = option("", "a model (folder or spec, e.g. assets/models/ensemble) whose readings of each "
                          "training face are learnt besides the labels")
    distill: float = option(0.5, "with --teacher: its readings' share of the loss ((1 - d) x labels + d x teacher)")
    seed: int = option(0, "seeds the split, sampling, augmentation and weights")
    device: str = option("auto", "auto = the GPU when there is one; or cpu, cuda, cuda:1 ...")
    limit: int = option(0, "use a seeded random subset of this many images (0 = all)")
    max_per_source: int = option(0, "at most this many training images of each source, seeded (0 = all; val "
                                 "stays whole)")
    split_csv: str = option("", "reuse an existing split instead of making one")
    crops: str = option("app", "app: train on each face as the app finds and aligns it (train/aligned.py; the "
                        "image's own crop where no face is found); files: the images as stored", ["app", "files"])
    # VGG16 only
    vgg_weights: str = option(str(DEFAULT_VGG_WEIGHTS), 'safetensors file, "torchvision" (download) or "random"')
    init_from: str = option("", "start from this model's weights (a folder or spec, e.g. assets/models/vgg16)")
    tuned_blocks: int = option(1, "conv blocks fine-tuned (1 = block 5; 2 = blocks 4-5, about 5x slower per image)")
    head_epochs: int = option(2, "gradual unfreezing: heads alone first, then the tuned blocks")
    backbone_lr_scale: float = option(0.1, "the tuned VGG16 blocks' learning rate, as a share of --lr")
    cache_features: str = option("auto", "cache the frozen part's output: auto = on CPU only")
    flip_cache: bool = option(False, "also cache the flipped training images' features: a true flip augmentation")
    augmented_copies: int = option(0, "also cache the features of N augmented copies of the training images (seeded)")
    precision: str = option("fp32", "bf16: autocast forward passes (1.8x faster VGG16 on a CPU with AVX512-BF16)",
                            ["fp32", "bf16"])
    cache_dir: str = option(str(DEFAULT_CACHE), "extracted data, image, face and feature caches")
    push_to_hub: str = option("", "repo id: evaluate and publish when training ends")


def help_text(f: dataclasses.Field) -> str:
    """A field's --help text, with argparse's % escaped ("" still shows the default)."""
    return f.metadata.get("help", "").replace("%", "%%")


def parse_args(argv=None) -> TrainConfig:
    parser = argparse.ArgumentParser(prog="python -m train", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    for f in dataclasses.fields(TrainConfig):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        flag = "--" + f.name.replace("_", "-")
        if f.metadata.get("choices"):
            parser.add_argument(flag, choices=f.metadata["choices"], default=default, help=help_text(f))
        elif f.type == "bool":
            parser.add_argument(flag, action="store_true", help=help_text(f))
        elif f.name == "data":
            parser.add_argument(flag, nargs="+", default=default, help=help_text(f))
        else:
            kind = {"int": int, "float": float}.get(f.type, str)
            parser.add_argument(flag, type=kind, default=default, help=help_text(f))
    cfg = TrainConfig(**vars(parser.parse_args(argv)))
    cfg.image_size = cfg.image_size or bundled_image_size(cfg.model)
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
    records: list  # the faces that decoded, in the order of images and labels
    listed: list  # the split's records before unreadable images were skipped (decode_split's input)


def split_data(images: torch.Tensor, records: list, listed: list) -> SplitData:
    labels = {name: torch.tensor([getattr(r, name) for r in records], dtype=torch.long) for name in LABELS}
    return SplitData(images, labels, records, listed)


def decode_split(cfg: TrainConfig, listed: list, image_size: int) -> tuple[torch.Tensor, list, np.ndarray | None]:
    """A split's records -> (uint8 faces at image_size, the records that decoded, the app's alignment matrices or
    None): each face cut as --crops says, from the caches where the run (or a teacher) decoded them before."""
    cache_dir = Path(cfg.cache_dir)
    matrices = None
    if cfg.crops == "app":
        from train.aligned import alignment_matrices  # OpenCV and MediaPipe: not needed to train from a pack
        matrices = alignment_matrices(listed, cache_dir)
    images, kept = load_images(listed, image_size, cache_dir, matrices=matrices)
    return images, kept, matrices


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


def prepare_data(cfg: TrainConfig, out: Path, write_files: bool = True) -> dict[str, SplitData]:
    """Records -> split (made or reused) -> decoded train/val images. Writes split.csv, data_report.json
    (unless write_files is False: the other processes of a multi-process run). --data a pack (train/pack.py):
    its faces as packed."""
    if len(cfg.data) == 1 and is_pack(cfg.data[0]):
        return packed_data(cfg, out, write_files)
    cache_dir = Path(cfg.cache_dir)
    records, report = load_records(cfg.data, cache_dir)
    root = data_root(records)
    if cfg.split_csv:  # reuse a published split; sources it does not cover get their own seeded split
        records = apply_split_csv(records, Path(cfg.split_csv), root, [e["root"] for e in report["sources"]])
    if cfg.limit and cfg.limit < len(records):  # after the published split too: each face keeps its split
        records = limit_records(records, cfg.limit, cfg.seed)
    split_records(records, seed=cfg.seed)
    if cfg.max_per_source:
        records = cap_per_source(records, cfg.max_per_source, "train", cfg.seed)
    if write_files:
        write_split_csv(records, out / "split.csv", root=root)  # relative paths: portable and comparable
    report["split_root"] = str(root)
    sets, report["counts"] = {}, {}
    report["crops"] = cfg.crops
    for split in ("train", "val"):
        chosen = [r for r in records if r.split == split]
        images, kept, matrices = decode_split(cfg, chosen, cfg.image_size)
        report[f"{split}_images"] = len(kept)
        report[f"{split}_skipped_unreadable"] = len(chosen) - len(kept)
        report["counts"][split] = split_counts(chosen, kept)
        if matrices is not None:  # faces the app's finder missed keep their file's crop: how many, per source
            missed = ~np.isfinite(matrices).all(axis=(1, 2))
            for source, table in report["counts"][split]["by_source"].items():
                table["no_face_found"] = int(sum(m for m, r in zip(missed, chosen) if r.source == source))
        sets[split] = split_data(images, kept, chosen)
    report["test_images_listed"] = sum(r.split == "test" for r in records)
    if write_files:
        atomic_write_json(out / "data_report.json", report)
    log.info("data: %s", "; ".join(
        f"{split} {c['n']} (" + ", ".join(f"{s} {t['n']}, {t['skipped_unreadable']} unreadable"
                                          for s, t in c["by_source"].items()) + ")"
        for split, c in report["counts"].items()))
    return sets


def packed_data(cfg: TrainConfig, out: Path, write_files: bool = True) -> dict[str, SplitData]:
    """The train/val faces of a pack, with the split.csv and data_report.json of the data it was cut from."""
    folder = Path(cfg.data[0])
    fixed = {"--split-csv": cfg.split_csv, "--limit": cfg.limit, "--max-per-source": cfg.max_per_source,
             "--teacher": cfg.teacher}  # chosen when the pack was made (a teacher reads other sizes)
    if any(fixed.values()):
        raise SystemExit(f"{', '.join(k for k, v in fixed.items() if v)}: not with a pack ({folder})")
    about, packed = read_pack(folder)
    if (about["image_size"], about["crops"]) != (cfg.image_size, cfg.crops):
        raise SystemExit(f"{folder} holds {about['crops']} crops at {about['image_size']} px; this run asks for "
                         f"{cfg.crops} crops at {cfg.image_size} px")
    if write_files:
        shutil.copyfile(folder / "split.csv", out / "split.csv")
        report = json.loads((folder / "data_report.json").read_text())
        atomic_write_json(out / "data_report.json", report | {"pack": about | {"path": str(folder)}})
    log.info("data: a pack (%s): %s", folder, ", ".join(f"{s} {len(r)}" for s, (_, r) in packed.items()))
    return {split: split_data(images, records, records) for split, (images, records) in packed.items()}


def uses_feature_cache(cfg: TrainConfig, model, device: torch.device) -> bool:
    """Cache VGG16's frozen blocks' output? By default on a CPU only, where running them again every epoch
    would cost more than all the rest. On a GPU the whole network sees augmented images. Tuning all five
    blocks leaves nothing frozen to cache."""
    if not isinstance(model, VGGNet) or len(model.frozen) == 0:
        return False
    return cfg.cache_features == "on" or (cfg.cache_features == "auto" and device.type == "cpu")


class TrainablePart(torch.nn.Module):
    """What learns, as one module DDP can wrap: the whole model on images, the tuned blocks and the heads on
    cached features."""

    def __init__(self, model, cached: bool):
        super().__init__()
        self.model, self.cached = model, cached

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_tuned(x) if self.cached else self.model(x)


class RowBatches(Dataset):
    """Item k: (indices, stored rows) of batch k of an order; DataLoader workers gather the rows."""

    def __init__(self, rows: torch.Tensor, order: torch.Tensor, batch_size: int):
        self.rows, self.batches = rows, order.split(batch_size)

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.batches[k], self.rows[self.batches[k]]


class Inputs:
    """What feeds the trainable part of the model, per split: images or cached VGG16 features."""

    def __init__(self, cfg: TrainConfig, model, sets, device):
        self.model, self.device = model, device
        self.cached = uses_feature_cache(cfg, model, device)
        self.trainable = TrainablePart(model, self.cached)
        self.net = self.trainable  # the training forward: DDP-wrapped when there are several processes
        self.workers = cfg.workers if cfg.workers >= 0 else 4 if device.type == "cuda" else 0
        self.flipped, self.variants = None, []
        if self.cached:
            def features(images):
                return frozen_features(model, images, Path(cfg.cache_dir), device=device, bf16=cfg.precision == "bf16")

            self.data = {s: features(sets[s][0]) for s in sets}
            if cfg.flip_cache:
                self.flipped = features(sets["train"][0].flip(-1))
            # each epoch a face is drawn from its clean features or one of these copies': the cached path's
            # augmentation (blur, low light, JPEG, shifts reach the tuned block only this way)
            self.variants = [features(augmented_copy(sets["train"][0], seed=cfg.seed + 1 + k))
                             for k in range(cfg.augmented_copies)]
        else:
            self.data = {s: sets[s][0] for s in sets}
        self.augment, self.normalize = BatchAugment(), normalize()
        self.bf16 = cfg.precision == "bf16"

    def batches(self, split: str, order: torch.Tensor, batch_size: int) -> DataLoader:
        """(indices, rows) for each batch of `order`, gathered by the worker processes and pinned for the GPU."""
        return DataLoader(RowBatches(self.data[split], order, batch_size), batch_size=None,
                          num_workers=self.workers, pin_memory=self.device.type == "cuda")

    def forward(self, split: str, idx: torch.Tensor, train: bool, rows: torch.Tensor | None = None) -> torch.Tensor:
        """The outputs for samples `idx` of a split; `rows`: their stored rows when a DataLoader gathered them."""
        x = self.batch(split, idx, train, rows)  # outside autocast: augmentation works in float32 throughout
        net = self.net if train else self.trainable  # evaluation runs in process 0 alone: not through DDP
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            return net(x).float()

    def batch(self, split: str, idx: torch.Tensor, train: bool, rows: torch.Tensor | None = None) -> torch.Tensor:
        """What the trainable part takes, on the device: cached features (flipped for training), or images
        (augmented for training, else normalised)."""
        x = self.data[split][idx] if rows is None else rows
        if self.cached:
            x = x.float()
            if train:  # flip half the batch: the flipped image's cached features, or else mirrored feature maps
                flip = torch.rand(len(x)) < 0.5
                # (mirroring is only approximate: the conv filters are not mirror-symmetric)
                x[flip] = self.flipped[idx[flip]].float() if self.flipped is not None else x[flip].flip(-1)
                if self.variants:  # then each face's clean (0) or k-th augmented copy, flipped as it was drawn
                    pick = torch.randint(len(self.variants) + 1, (len(x),))
                    for k, variant in enumerate(self.variants, 1):
                        chosen = pick == k
                        x[chosen] = variant[idx[chosen]].float()
            # channels_last input: blocks 4-5 + heads train at 147 instead of 122 images/s (bf16, AMX Xeon)
            return x.to(self.device).contiguous(memory_format=torch.channels_last)
        x = x.to(self.device, non_blocking=True)  # uint8: a quarter of float's bytes; augmented on the device
        return self.augment(x) if train else self.normalize(x)


# ------------------------------------------------------------------------------------------------- loop

def warm_start(model, spec: str) -> None:
    """Start from another model's conv layers and heads (e.g. the shipped one, to fine-tune it on more data or
    other crops in a fraction of a full run); its calibration (temperatures, age warp) is not taken: it is fit again."""
    from model.hub import load_model

    source = load_model(spec)
    if source.arch != model.arch:
        raise SystemExit(f"--init-from {spec} is a {source.arch} model, not {model.arch}")
    if isinstance(model, VGGNet):  # the frozen/tuned split may differ: copy the conv stack as one sequence
        convs = lambda m: torch.nn.Sequential(*m.frozen, *m.tuned)  # noqa: E731
        convs(model).load_state_dict(convs(source).state_dict())
        model.heads.load_state_dict(source.heads.state_dict())
    else:
        state = {k: v for k, v in source.state_dict().items() if k not in CALIBRATION_BUFFERS}
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected or any(k not in CALIBRATION_BUFFERS for k in missing):
            raise SystemExit(f"--init-from {spec}: its layers do not match ({(missing + unexpected)[:3]})")
    log.info("weights from %s", spec)


def readings_of_teacher(cfg: TrainConfig, train_set: SplitData, device: torch.device) -> Readings:
    """--teacher's readings of the training faces, in training order: each face cut as the run cuts it, at the
    teacher's own size (train/teacher.py)."""
    from model.hub import ModelLoadError, load_model

    try:
        teacher = load_model(cfg.teacher)
    except ModelLoadError as error:
        raise SystemExit(f"--teacher {cfg.teacher}: {error}") from None

    def images_at(size: int) -> torch.Tensor:
        images, kept, _ = decode_split(cfg, train_set.listed, size)
        if len(kept) != len(train_set.records):  # the same files decode at every size; a change mid-run does not
            raise SystemExit(f"--teacher: {len(kept)} training images decoded at {size} px, "
                             f"{len(train_set.records)} at {cfg.image_size} px (did files change?)")
        return images

    log.info("the teacher %s reads the training faces (%s px)", cfg.teacher, teacher.image_size)
    return teacher_readings(teacher, images_at, Path(cfg.cache_dir), device, bf16=cfg.precision == "bf16")


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
    outs = torch.cat([inputs.forward(split, idx, train=False, rows=rows).cpu()
                      for idx, rows in inputs.batches(split, torch.arange(len(gender)), batch_size)])
    _, parts = multitask_loss(outs, gender, age, age_low=low, age_high=high, gender_weight=cfg.gender_weight,
                              age_weight=cfg.age_weight, age_l1=cfg.age_l1, range_spread=cfg.range_spread)
    gender_logit, age_logits = split_output(outs)
    pred_age = expected_age(age_logits)
    known, ranged = age >= 0, is_range_label(age, low, high)
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


def parse_source_weights(text: str) -> dict[str, float]:
    """"fairface=1.3,utkface=0.77" -> {"fairface": 1.3, "utkface": 0.77}; a clear message for anything else."""
    weights = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        source, _, value = item.partition("=")
        try:
            weights[source.strip()] = float(value)
        except ValueError:
            raise SystemExit(f"--female-weight: {item!r} is not SOURCE=NUMBER (e.g. fairface=1.3)") from None
        if not weights[source.strip()] > 0:
            raise SystemExit(f"--female-weight: {item!r}: the weight must be positive")
    return weights


def female_weights(cfg: TrainConfig, records: list) -> torch.Tensor:
    """Each training face's female-class loss weight: --female-weight of its source times --class-weight's
    ratio (1 for both when unset)."""
    by_source = parse_source_weights(cfg.female_weight)
    sources = sorted({r.source for r in records})
    unknown = sorted(set(by_source) - set(sources))
    if unknown:
        raise SystemExit(f"--female-weight names {', '.join(unknown)}, not a source of this run "
                         f"({', '.join(sources)})")
    ratio = 1.0
    if cfg.class_weight:
        genders = [r.gender for r in records]
        ratio = genders.count(0) / max(1, genders.count(1))
    return torch.tensor([by_source.get(r.source, 1.0) * ratio for r in records])


def train(cfg: TrainConfig, resume: bool = True) -> Path:
    procs = distributed.start(pick_device(cfg.device))  # one process, or this one of a launcher's N
    device = procs.device
    if cfg.batch_size % procs.world:
        raise SystemExit(f"--batch-size {cfg.batch_size} does not split evenly over {procs.world} processes")
    parse_source_weights(cfg.female_weight)  # a mistyped weight stops here, before the data is read
    if cfg.teacher and not 0 <= cfg.distill <= 1:
        raise SystemExit(f"--distill {cfg.distill}: the teacher's share of the loss is between 0 and 1")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint_path = out / "checkpoint.pt"
    config_path = out / "train_config.json"
    resuming = resume and checkpoint_path.exists()
    if resuming:
        previous = json.loads(config_path.read_text())
        defaults = dataclasses.asdict(TrainConfig())  # options added since that run had their defaults
        now = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("epochs", "push_to_hub", "workers")}
        changed = sorted(k for k in now if previous.get(k, defaults[k]) != now[k])
        if changed:
            raise SystemExit(f"{out} holds a run with other options ({', '.join(changed)}); "
                             "use another --out or delete it")
    if procs.main:
        atomic_write_json(config_path, dataclasses.asdict(cfg))

    torch.manual_seed(cfg.seed)  # the same initial weights in every process
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # one input size: let cuDNN time and pick the fastest convolutions
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True  # fp32 on tensor cores
    model = build_model(cfg.model, image_size=cfg.image_size,
                        **({"tuned_blocks": cfg.tuned_blocks} if cfg.model == "vgg16" else {}))
    if isinstance(model, VGGNet) and cfg.vgg_weights != "random":
        model.load_imagenet(cfg.vgg_weights)
    if cfg.init_from:
        warm_start(model, cfg.init_from)
    model.to(device)

    with procs.main_first():  # process 0 decodes and caches; the others then read its caches
        sets = prepare_data(cfg, out, write_files=procs.main)
        inputs = Inputs(cfg, model, sets, device)
        readings = readings_of_teacher(cfg, sets["train"], device) if cfg.teacher else None
    if inputs.cached:  # the decoded images went into the feature caches and are not read again: free them
        # (52k faces at 128 px are 2.6 GB; blocks 4-5 with an augmented copy came within 1.5 GB of 24)
        sets = {split: data._replace(images=None) for split, data in sets.items()}
    if not procs.main:  # its own augmentation and dropout draws (process 0 keeps the one-process stream)
        torch.manual_seed(cfg.seed + procs.rank)
    train_labels = sets["train"].labels
    train_gender = train_labels["gender"]
    sampler = make_sampler(cfg, sets["train"].records)
    log.info("training on %s%s, %s, %s", device, f" x {procs.world} processes" if procs.world > 1 else "",
             cfg.precision, "cached VGG16 features" if inputs.cached else f"images augmented on the {device.type}")
    female_weight = female_weights(cfg, sets["train"].records)
    optimizer, scheduler = make_optimizer(cfg, model)

    history, start_epoch, best_val, stale = [], 0, math.inf, 0
    if resuming:
        state = load_checkpoint(checkpoint_path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        history, start_epoch, best_val, stale = state["history"], state["epoch"] + 1, state["best_val"], state["stale"]
        if "rng" in state and procs.world == 1:  # the augmentation and dropout draws go on where they stopped
            torch.set_rng_state(state["rng"])
        log.info("resumed %s at epoch %d", out, start_epoch + 1)

    n = len(train_gender)
    for epoch in range(start_epoch, cfg.epochs):
        if stale >= cfg.patience:
            log.info("early stopping: validation %s has not improved for %d epochs", cfg.select, stale)
            break
        if epoch in (start_epoch, cfg.head_epochs):  # DDP fixes the set of parameters it syncs when it wraps
            set_tuned_trainable(model, epoch >= cfg.head_epochs)
            inputs.net = procs.wrap(inputs.trainable)
        model.train()
        # every process draws the same epoch order (seeded) and trains on its own share of it
        order = procs.shard(sampler.epoch_order(epoch) if sampler else shuffled_order(n, cfg.seed, epoch))
        sums, seen, trained, started = {}, 0, [], time.time()
        bar = tqdm(inputs.batches("train", order, cfg.batch_size // procs.world),
                   desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, disable=not procs.main)
        for idx, rows in bar:
            out_batch = inputs.forward("train", idx, train=True, rows=rows)
            gender, age, low, high = (train_labels[name][idx].to(device) for name in LABELS)
            loss, parts = multitask_loss(out_batch, gender, age, age_low=low, age_high=high,
                                         gender_weight=cfg.gender_weight, age_weight=cfg.age_weight,
                                         age_l1=cfg.age_l1, female_weight=female_weight[idx].to(device),
                                         range_spread=cfg.range_spread)
            if readings is not None:  # parts["loss"] stays the labels' loss, comparable with runs without a teacher
                taught = distill_loss(out_batch, readings.p_female[idx].to(device), readings.age_probs[idx].to(device),
                                      gender_weight=cfg.gender_weight, age_weight=cfg.age_weight)
                loss = (1 - cfg.distill) * loss + cfg.distill * taught
                parts["loss_teacher"] = taught.item()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v * len(idx)
            seen += len(idx)
            trained.append(idx)
            bar.set_postfix(loss=f"{sums['loss'] / seen:.3f}", refresh=False)
        seconds = time.time() - started
        if procs.debugging:  # for tests: what this process trained on, its own sums, its weights
            procs.debug_record(epoch=epoch + 1, indices=torch.cat(trained).tolist(), seen=seen, sums=sums,
                               param_sum=sum(p.detach().double().sum().item() for p in model.parameters()))
        seen, *totals = procs.all_sum([seen, *sums.values()])  # over all processes
        sums = dict(zip(sums, totals))
        # process 0 evaluates on the whole validation split; all take its numbers, so all decide alike
        val = procs.broadcast(run_eval(inputs, "val", sets["val"].labels, cfg)[0] if procs.main else None)
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
            if procs.main:
                save_model_dir(model, out / "model")
        else:
            stale += 1
        if procs.main:
            save_checkpoint(checkpoint_path, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                              "scheduler": scheduler.state_dict(), "epoch": epoch,
                                              "history": history, "best_val": best_val, "stale": stale,
                                              "rng": torch.get_rng_state()})
            write_history(out, history)

    if procs.main:
        finish(cfg, out, inputs, sets, history)
    procs.barrier()  # the others wait for process 0's run files
    procs.close()
    return out


def finish(cfg: TrainConfig, out: Path, inputs: Inputs, sets, history: list[dict]) -> None:
    """Reload the best epoch, calibrate its gender probability and age distribution on validation, write
    metrics."""
    best = type(inputs.model).from_pretrained(out / "model").to(inputs.model.gender_temperature.device)
    inputs.model.load_state_dict(best.state_dict())
    val, val_out = run_eval(inputs, "val", sets["val"].labels, cfg)
    gender_logit, age_logits = split_output(val_out)
    fitted = calibrate.fit_calibration(gender_logit, age_logits, sets["val"].labels, sets["val"].records)
    calibrate.set_calibration(inputs.model, fitted)
    save_model_dir(inputs.model, out / "model")
    best_row = min(history, key=lambda r: selection_key(cfg, r)) if history else {}
    atomic_write_json(out / "metrics.json", {"best_epoch": best_row, "gender_temperature": fitted["gender_temperature"],
                                             "gender_offset": fitted["gender_offset"],
                                             "age_temperature": fitted["age_temperature"],
                                             "age_temperature_fitted_to": fitted["age_temperature_fitted_to"],
                                             "age_warp": fitted["age_warp_knots"],
                                             "val_at_best": val,
                                             "epochs_run": len(history), "machine": machine(inputs.device),
                                             "train_minutes": sum(r["seconds"] for r in history) / 60})
    log.info("best epoch %s: val gender acc %.4f, age MAE %.2f, age range acc %.3f; gender temperature %.3f, "
             "offset %+.2f, age temperature %.3f", best_row.get("epoch"), val["gender_acc"], val["age_mae"],
             val["age_range_acc"], fitted["gender_temperature"], fitted["gender_offset"], fitted["age_temperature"])


def machine(device: torch.device) -> str:
    """What trained the run, for the model card: the GPU's name, or the CPU's model and core count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor() or "CPU") if os.path.exists("/proc/cpuinfo") else platform.processor() or "CPU"
    return f"{cpu}, {os.cpu_count()} cores"


def write_history(out: Path, history: list[dict]) -> None:
    with open(out / "history.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
    try:  # matplotlib is not on every machine that trains (a lent GPU machine has torch and little else)
        from train import plots
    except ImportError:
        log.debug("no matplotlib: history.csv without curves.png")
        return
    plots.learning_curves(history, out / "curves.png")


def main(argv=None) -> None:
    rank = distributed.launched_rank()  # the other processes of a multi-process run only log warnings
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING, datefmt="%H:%M:%S",
                        format="%(asctime)s " + (f"[rank {rank}] " if rank else "") + "%(name)s: %(message)s")
    cfg = parse_args(argv)
    out = train(cfg)
    if rank:
        return
    if cfg.push_to_hub:
        from train.evaluate import evaluate_run
        from train.push import push_run
        evaluate_run(out)
        push_run(out, cfg.push_to_hub)
    print(f"done: {out}")
