"""The two multi-task architectures: one shared trunk, two heads (gender logit; age distribution).

Both are `PyTorchModelHubMixin` models, so `save_pretrained` / `from_pretrained` / `push_to_hub` give a
`config.json` (the constructor arguments, including `arch`) and a `model.safetensors`.

Output layout of `forward`: one tensor [N, 1 + AGE_BINS] = [gender logit | age logits]. A single tensor
keeps Grad-CAM simple: its targets are small callables on one output row (see model/cam.py).
"""
from __future__ import annotations

import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from model.age import AGE_BINS, age_interval, identity_warp, mean_age, warp_ages



def hub_kwargs() -> dict:
    """Model-card metadata for the Hub mixin; a fresh dict per class (the mixin extends the tag list in place)."""
    return dict(
        library_name="pytorch",
        tags=["age-estimation", "gender-classification", "face", "grad-cam", "utkface"],
        license="cc-by-nc-4.0",  # the training data (UTKFace) is non-commercial research only
    )


def split_output(out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[N, 1 + AGE_BINS] -> (gender logit [N], age logits [N, AGE_BINS])."""
    return out[:, 0], out[:, 1:]


class TwoHeads(nn.Module):
    """Gender and age heads on the same pooled trunk features."""

    def __init__(self, in_features: int, hidden: int, dropout: float):
        super().__init__()

        def head(out_features: int) -> nn.Sequential:
            return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_features, hidden), nn.ReLU(inplace=True),
                                 nn.Dropout(dropout), nn.Linear(hidden, out_features))

        self.gender = head(1)
        self.age = head(AGE_BINS)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.gender(pooled), self.age(pooled)], dim=1)


def with_mirrors(batch: torch.Tensor) -> torch.Tensor:
    """[N, ...] faces -> [2N, ...]: the faces, then each mirrored left to right (one forward pass reads both)."""
    return torch.cat([batch, batch.flip(-1)])


def mean_of_views(out: torch.Tensor) -> torch.Tensor:
    """[2N, ...] outputs of `with_mirrors(batch)` -> [N, ...]: each face's mean over its two views."""
    n = len(out) // 2
    return (out[:n] + out[n:]) / 2


def read_outputs(forward, batch: torch.Tensor, mirror: bool) -> torch.Tensor:
    """forward's raw outputs for a batch of faces; with mirror, each face's mean over itself and its mirror
    image: how a model with `mirror_average` reads a face. Measured on validation: better ages and gender for
    both shipped models (docs/results.md, "Each face and its mirror image")."""
    return mean_of_views(forward(with_mirrors(batch))) if mirror else forward(batch)


# Buffers fitted on validation after training (train/calibrate.py), not learned by gradient descent.
CALIBRATION_BUFFERS = ("gender_temperature", "gender_offset", "age_temperature", "age_warp")


class AgeGenderNet(nn.Module):
    """What both architectures share: heads, calibrated prediction, the Grad-CAM layer."""

    arch: str
    image_size: int
    # Activation ranges for an int8 body (model/int8.py), from int8.json beside the weights; None: it has none.
    int8_ranges: dict[str, list[float]] | None = None
    int8_about: dict = {}  # how they were made (int8.json's other fields), kept when the model is written again

    def _init_common(self, image_size: int, mirror_average: bool) -> None:
        self.image_size = image_size
        # Read each face as the mean of its outputs and its mirror image's (test-time augmentation): a setting
        # of the shipped model (config.json), chosen on validation, followed by predict, model/fast.py,
        # Grad-CAM and the evaluation alike. False for a model trained here until it is chosen.
        self.mirror_average = bool(mirror_average)
        # Temperature scaling for the gender probability, fitted on the validation split after training
        # (train/calibrate.py). A buffer, so it travels inside model.safetensors.
        self.register_buffer("gender_temperature", torch.ones(()))
        # Added to the scaled gender logit: moves the 50% line so that women and men are misread about as
        # often as each other (fitted on validation, train/calibrate.fit_gender_offset). 0 until fitted.
        self.register_buffer("gender_offset", torch.zeros(()))
        # The same for the age distribution (its logits are divided by it): fitted on validation so the 80%
        # interval shown covers about 80% of true ages.
        self.register_buffer("age_temperature", torch.ones(()))
        # Where each age bin's probability goes (years): the correction of ages pulled to the middle, a
        # monotone map fitted on validation (train/calibrate.py). The identity until one is fitted.
        self.register_buffer("age_warp", identity_warp())

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Model files saved before the age temperature, warp or gender offset existed load with the identity
        # (their behaviour then), as BatchNorm does for its num_batches_tracked.
        state_dict.setdefault(prefix + "gender_offset", torch.zeros(()))
        state_dict.setdefault(prefix + "age_temperature", torch.ones(()))
        state_dict.setdefault(prefix + "age_warp", identity_warp())
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def cam_layer(self) -> nn.Module:
        """The layer whose activations Grad-CAM weights (the last ReLU of the trunk)."""
        raise NotImplementedError

    @property
    def cam_layers(self) -> list[nn.Module]:
        """The layers Grad-CAM weights, for pytorch-grad-cam's `target_layers`: this one (an ensemble: its members')."""
        return [self.cam_layer]

    def split_at_cam_layer(self) -> tuple[nn.Sequential, nn.Sequential]:
        """(body, tail), sharing this model's modules: body(x) is `cam_layer`'s output and tail(body(x)) is
        forward(x). Inference runs the body at the CPU's fastest precision and Grad-CAM back-propagates
        through the tail only (model/fast.py, model/cam.py)."""
        raise NotImplementedError

    @torch.no_grad()
    def predict(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        """Normalised faces [N, 3, S, S] -> calibrated readouts per face (tensors of shape [N])."""
        return self.readouts(self.outputs(batch))

    def outputs(self, batch: torch.Tensor) -> torch.Tensor:
        """Raw outputs as the model reads a face: forward, or its mirror average where the model says so."""
        return read_outputs(self, batch, self.mirror_average)

    def calibrated(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw outputs -> (calibrated gender logit [N], calibrated and warped age distribution [N, AGE_BINS])."""
        gender_logit, age_logits = split_output(out)
        return gender_logit / self.gender_temperature + self.gender_offset, self.age_distribution(age_logits)

    def age_distribution(self, age_logits: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        """Age logits -> the calibrated, warped distribution; `scale` multiplies the age temperature (a what-if
        of train.measure_age_pooling)."""
        return warp_ages((age_logits / (self.age_temperature * scale)).softmax(-1), self.age_warp)

    def readouts(self, out: torch.Tensor) -> dict[str, torch.Tensor]:
        """The readouts from an output already computed (Grad-CAM reuses its own forward pass)."""
        gender_logit, probs = self.calibrated(out.detach())
        low, high = age_interval(probs)
        return {
            "p_female": torch.sigmoid(gender_logit),
            "age": mean_age(probs),
            "age_low": low,
            "age_high": high,
            "age_probs": probs,
        }


def conv_block(c_in: int, c_out: int, dropout: float) -> nn.Sequential:
    """conv-BN-ReLU x2, 2x2 max-pool, spatial dropout."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
        nn.MaxPool2d(2), nn.Dropout2d(dropout),
    )


class ScratchNet(AgeGenderNet, PyTorchModelHubMixin, **hub_kwargs()):
    """A small CNN trained from scratch: five conv blocks, global average pooling, two heads.

    Five narrow-to-wide blocks (16..256 channels) rather than four wide ones: measured here at 64 px,
    284 training images/s against 75 for (32, 64, 128, 256), which is what makes full-UTKFace runs fit a CPU.
    """

    def __init__(self, arch: str = "scratch", image_size: int = 64, widths: tuple | list = (16, 32, 64, 128, 256),
                 dropout: float = 0.1, head_dropout: float = 0.3, hidden: int = 128, mirror_average: bool = False):
        super().__init__()
        if arch != "scratch":
            raise ValueError(f"ScratchNet config says arch={arch!r}")
        self.arch = arch
        self._init_common(image_size, mirror_average)
        channels = [3, *widths]
        self.trunk = nn.Sequential(*[conv_block(a, b, dropout) for a, b in zip(channels, channels[1:])])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.heads = TwoHeads(widths[-1], hidden, head_dropout)
        self._he_init()

    def _he_init(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    @property
    def cam_layer(self) -> nn.Module:
        return self.trunk[-1][5]  # last block's second ReLU, before pooling (full resolution of that block)

    def split_at_cam_layer(self) -> tuple[nn.Sequential, nn.Sequential]:
        last = self.trunk[-1]
        cut = list(last).index(self.cam_layer) + 1  # the last block's pool and dropout go to the tail
        return (nn.Sequential(*self.trunk[:-1], last[:cut]),
                nn.Sequential(last[cut:], self.pool, nn.Flatten(1), self.heads))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.heads(self.pool(self.trunk(x)).flatten(1))


# torchvision's vgg16().features: indices 0..23 are blocks 1-4 (ending with pool4), 24..29 block 5's
# three conv+ReLU pairs, 30 is pool5 (dropped: we pool globally straight after conv5_3).
VGG_BLOCK_STARTS = (0, 5, 10, 17, 24)


def vgg16_features() -> nn.Sequential:
    """torchvision's vgg16(weights=None).features[:30], initialised as torchvision does, built without the
    classifier: its 120M fully connected weights (unused here) took 2.3 of the 2.5 s vgg16() costs, paid by
    every VGG16 load in the app, training and the tests (2-core Zen 1). tests/test_train_loop.py checks it
    against vgg16().features. Imported here, not at the top: importing torchvision costs 2.7 s (it pulls in
    torch._dynamo), which the scratch CNN's app, CLI and tests need not pay."""
    from torchvision.models.vgg import cfgs, make_layers
    features = make_layers(cfgs["D"], batch_norm=False)[:30]
    for m in features.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
    return features


class VGGNet(AgeGenderNet, PyTorchModelHubMixin, **hub_kwargs()):
    """ImageNet VGG16 conv base, global average pooling, two small heads.

    Split as `frozen` (blocks 1..5-k, never trained) and `tuned` (the last k blocks) so the frozen part's
    output can be computed once and cached on a CPU (train/features.py).
    """

    def __init__(self, arch: str = "vgg16", image_size: int = 128, tuned_blocks: int = 1,
                 head_dropout: float = 0.4, hidden: int = 256, mirror_average: bool = False):
        super().__init__()
        if arch != "vgg16":
            raise ValueError(f"VGGNet config says arch={arch!r}")
        if not 0 <= tuned_blocks <= 5:
            raise ValueError("tuned_blocks must be 0..5")
        self.arch = arch
        self.tuned_blocks = tuned_blocks
        self._init_common(image_size, mirror_average)
        features = vgg16_features()
        split = VGG_BLOCK_STARTS[5 - tuned_blocks] if tuned_blocks else 30
        self.frozen = features[:split]
        self.tuned = features[split:]
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.heads = TwoHeads(512, hidden, head_dropout)
        self.frozen.requires_grad_(False)

    def load_imagenet(self, source: str) -> None:
        """Load ImageNet conv weights: 'torchvision' (download IMAGENET1K_V1) or a local safetensors file
        with `vgg16().features` key names (e.g. ../shared/weights/vgg16_imagenet_features.safetensors)."""
        if source == "torchvision":
            from torchvision.models import VGG16_Weights, vgg16
            state = vgg16(weights=VGG16_Weights.IMAGENET1K_V1).features.state_dict()
        else:
            from safetensors.torch import load_file
            state = load_file(source)
        full = nn.Sequential(*self.frozen, *self.tuned)  # same indices as vgg16().features[:30]
        state = {k: v for k, v in state.items() if int(k.split(".")[0]) < 30}
        full.load_state_dict(state, strict=True)

    @property
    def cam_layer(self) -> nn.Module:
        return (self.tuned if len(self.tuned) else self.frozen)[-1]  # ReLU after conv5_3

    def split_at_cam_layer(self) -> tuple[nn.Sequential, nn.Sequential]:
        return nn.Sequential(*self.frozen, *self.tuned), nn.Sequential(self.pool, nn.Flatten(1), self.heads)

    def forward_frozen(self, x: torch.Tensor) -> torch.Tensor:
        return self.frozen(x)

    def forward_tuned(self, frozen_out: torch.Tensor) -> torch.Tensor:
        return self.heads(self.pool(self.tuned(frozen_out)).flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_tuned(self.forward_frozen(x))


ARCHITECTURES: dict[str, type[AgeGenderNet]] = {"scratch": ScratchNet, "vgg16": VGGNet}


def build_model(arch: str, **config) -> AgeGenderNet:
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[arch](arch=arch, **config)
