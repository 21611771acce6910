"""Several models read each face and their answers are averaged: an ensemble, itself an AgeGenderNet.

Why: the two shipped models err on different faces (another architecture, another input size), so their
mean is right more often than either (docs/results.md, "Both models together"). How they are combined:
- gender: the weighted mean of the members' calibrated gender logits (each with its own temperature and
  offset);
- age: the members' calibrated, warped age distributions pooled (AGE_POOLS): their weighted mixture, whose age
  is the mean of theirs and whose 80% interval widens where they disagree, or their normalised weighted
  geometric mean (a product of experts, as the mean of the gender logits is for the gender).
The combined output has the usual layout [gender logit | age logits] (the age logits are the pool's log
probabilities), so readouts, Grad-CAM targets and the ensemble's own calibration buffers (the identity until
fitted) work on it unchanged. Each member reads the input resized to its own size and mirrored where its
config says so. Grad-CAM of an ensemble is pytorch-grad-cam's with several target layers: one map per member's
layer, each scaled to the input, averaged (model/cam.py).

On disk an ensemble is a folder with config.json ({"arch": "ensemble", "members": [specs], "weights": [...],
"age_pool": ...})
and model.safetensors holding its own calibration buffers only: the members are loaded by `model.hub.load_model`
from their specs (a bundled name such as "vgg16" or a Hub id, or a folder relative to the ensemble's), so the
bundled ensemble adds a few bytes to the repository, not a second copy of the VGG16.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from model.nets import CALIBRATION_BUFFERS, AgeGenderNet

ARCH = "ensemble"
# How the members' age distributions are pooled. "mixture": their mean (wide where they disagree); "product":
# the normalised geometric mean, as the mean of the gender logits pools the gender. With a temperature fitted for
# 80% coverage on validation, the product kept more of the ensemble's age gain (docs/results.md).
AGE_POOLS = ("mixture", "product")


def resized(batch: torch.Tensor, size: int) -> torch.Tensor:
    """Normalised faces [N, 3, S, S] -> [N, 3, size, size], antialiased bilinear as model/preprocess.py resizes
    (normalisation is per-channel affine, so resizing after it equals resizing before)."""
    if batch.shape[-1] == size:
        return batch
    return F.interpolate(batch, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def pool_ages(probs, weights: list[float], pool: str) -> torch.Tensor:
    """The members' age distributions [N, AGE_BINS] -> the pool's age logits (log-probabilities, normalised
    only for "mixture": readouts renormalise). "mixture": the log of their weighted mean; "product": the weighted
    mean of their log-probabilities."""
    if pool == "product":
        return sum(w * p.clamp_min(1e-12).log() for w, p in zip(weights, probs))
    return sum(w * p for w, p in zip(weights, probs)).clamp_min(1e-12).log()


class Ensemble(AgeGenderNet):
    """The weighted mean of `members` (AgeGenderNets). `specs`: where each member came from, for config.json."""

    arch = ARCH

    def __init__(self, members: list[AgeGenderNet], weights: list[float] | None = None,
                 specs: list[str] | None = None, age_pool: str = "mixture"):
        super().__init__()
        if age_pool not in AGE_POOLS:
            raise ValueError(f"age_pool must be one of {AGE_POOLS}, not {age_pool!r}")
        self.age_pool = age_pool
        if len(members) < 2:
            raise ValueError("an ensemble needs at least two members")
        weights = [1.0] * len(members) if weights is None else [float(w) for w in weights]
        if len(weights) != len(members) or min(weights) <= 0:
            raise ValueError(f"an ensemble needs one positive weight per member, not {weights}")
        self.members = nn.ModuleList(members)
        self.weights = [w / sum(weights) for w in weights]
        self.specs = list(specs) if specs else [m.arch for m in members]
        # Each member mirrors faces as its own config says; the ensemble itself reads the input once.
        self._init_common(max(m.image_size for m in members), mirror_average=False)

    def member_inputs(self, batch: torch.Tensor) -> list[torch.Tensor]:
        return [resized(batch, m.image_size) for m in self.members]

    def combine(self, outs: list[torch.Tensor]) -> torch.Tensor:
        """Each member's raw outputs [N, 1 + AGE_BINS] -> the ensemble's: [weighted mean of the calibrated gender
        logits | age logits: the log of the weighted mixture of the calibrated age distributions ("mixture"), or
        the weighted mean of their log-probabilities ("product")]."""
        logits, probs = zip(*(member.calibrated(out) for member, out in zip(self.members, outs)))
        logit = sum(weight * member_logit for weight, member_logit in zip(self.weights, logits))
        return torch.cat([logit.unsqueeze(1), pool_ages(probs, self.weights, self.age_pool)], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.combine([m.outputs(part) for m, part in zip(self.members, self.member_inputs(x))])

    @property
    def cam_layers(self) -> list[nn.Module]:
        return [m.cam_layer for m in self.members]

    def config(self) -> dict:
        return {"arch": ARCH, "members": self.specs, "weights": self.weights, "age_pool": self.age_pool}

    def save_pretrained(self, folder: str | Path) -> None:
        """config.json + model.safetensors with the ensemble's own calibration buffers (members stay where
        their specs point)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(json.dumps(self.config(), indent=2) + "\n")
        save_file({name: getattr(self, name).detach().clone().contiguous() for name in CALIBRATION_BUFFERS},
                  folder / "model.safetensors")


def load_ensemble(folder: Path, load_member) -> Ensemble:
    """An ensemble folder -> Ensemble in eval mode. `load_member(spec)` loads one member (model.hub.load_model);
    a spec naming a folder relative to the ensemble's is read from there. Raises ValueError on a bad config and
    KeyError / safetensors' error on bad buffers (model.hub turns both into one ModelLoadError sentence)."""
    config = json.loads((folder / "config.json").read_text())
    specs, weights = config.get("members"), config.get("weights")
    if not isinstance(specs, list) or not all(isinstance(s, str) for s in specs):
        raise ValueError("'members' must be a list of model specs")
    members = [load_member(str(folder / s) if (folder / s).is_dir() else s) for s in specs]
    model = Ensemble(members, weights, specs, config.get("age_pool", "mixture"))
    state = load_file(folder / "model.safetensors")
    if set(state) != set(CALIBRATION_BUFFERS):
        raise ValueError(f"holds {sorted(state)}, not the ensemble's calibration {sorted(CALIBRATION_BUFFERS)}")
    for name in CALIBRATION_BUFFERS:
        getattr(model, name).copy_(state[name].float())
    return model.eval()


def main(argv: list[str] | None = None) -> int:
    """`python -m model.ensemble --member vgg16 --member scratch --out assets/models/ensemble`: write an ensemble
    folder (config + identity calibration + sha256) after checking every member loads."""
    import argparse

    from model.hub import ModelLoadError, load_model, write_bundle

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--member", action="append", required=True, help="a member's spec (repeat: two or more)")
    parser.add_argument("--weight", action="append", type=float, help="a member's weight (default: all equal)")
    parser.add_argument("--age-pool", choices=AGE_POOLS, default="mixture", help="how the age distributions pool")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    try:
        model = Ensemble([load_model(spec) for spec in args.member], args.weight, args.member, args.age_pool)
    except (ModelLoadError, ValueError) as e:
        print(f"error: {e}")
        return 2
    print(f"wrote {write_bundle(model, args.out)}: {model.config()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
