"""int8 for the body of a model (model/fast.py), from activation ranges shipped with its weights.

Static int8 needs each activation's range, measured on real faces: `calibrate` runs faces through the body
with torch's default x86 observers (a histogram per activation, the range chosen to minimise the rounding
error) and returns the ranges it chose; they are saved next to the weights as `int8.json`
(`python -m train.quantize`). `quantize` builds the int8 body from the weights and those ranges at load time
with no faces at hand: each activation's observer is set to its shipped range, so it computes the same scale
and zero point the histogram would have, and the weights are quantized per channel as calibration did.

torch.ao's FX graph mode runs int8 convolutions eagerly (no compile step; VGG16's body is built in 0.3-0.6 s): the
app must serve within 10 s, and torchao's PT2E path needs torch.compile (41 s for VGG16, docs/benchmarks.md).
torch marks FX mode deprecated; with torch pinned it is what runs, and the parity tests fail if it changes.
Ranges that do not fit the body (another torch naming the activations otherwise) raise Int8Error: with "auto"
model/fast.py then runs the float body and logs why, so the app still starts.
"""
from __future__ import annotations

import copy
import json
import warnings
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

RANGES_FILE = "int8.json"
FORMAT = 1
ENGINE = "x86"  # torch's engine for x86 CPUs: oneDNN / FBGEMM int8 kernels


class Int8Error(ValueError):
    """A ranges file that does not fit the model (another architecture, torch or format)."""


def _qconfig_mapping(activation_observer):
    from torch.ao.quantization import QConfig, get_default_qconfig, get_default_qconfig_mapping
    default = get_default_qconfig(ENGINE)  # histogram activations (reduce_range), per-channel int8 weights
    activation = activation_observer.with_args(**_observer_kwargs(default.activation()))
    return get_default_qconfig_mapping(ENGINE).set_global(QConfig(activation=activation, weight=default.weight))


def _observer_kwargs(observer) -> dict:
    return {"dtype": observer.dtype, "qscheme": observer.qscheme, "reduce_range": observer.reduce_range}


def _prepare(body: nn.Module, activation_observer, image_size: int) -> torch.fx.GraphModule:
    from torch.ao.quantization.quantize_fx import prepare_fx
    torch.backends.quantized.engine = ENGINE
    with warnings.catch_warnings():  # FX mode's deprecation notice, once per model (see the docstring)
        warnings.simplefilter("ignore")
        return prepare_fx(copy.deepcopy(body).eval(), _qconfig_mapping(activation_observer),
                          (torch.zeros(1, 3, image_size, image_size),))


def _activation_observers(prepared: nn.Module) -> dict[str, nn.Module]:
    from torch.ao.quantization.observer import ObserverBase
    return {name: m for name, m in prepared.named_modules()
            if isinstance(m, ObserverBase) and m.dtype == torch.quint8}


@torch.no_grad()
def calibrate(body: nn.Module, batches: Iterable[torch.Tensor], image_size: int) -> dict[str, list[float]]:
    """Run normalised faces through the body with histogram observers; each activation's chosen [min, max]."""
    from torch.ao.quantization.observer import HistogramObserver
    prepared = _prepare(body, HistogramObserver, image_size)
    seen = 0
    for batch in batches:
        prepared(batch)
        seen += len(batch)
    if not seen:
        raise ValueError("calibration needs at least one face")
    ranges = {}
    for name, observer in _activation_observers(prepared).items():
        low, high = observer._non_linear_param_search()  # what the observer's calculate_qparams uses
        ranges[name] = [float(low), float(high)]
    return ranges


@torch.no_grad()
def quantize(body: nn.Module, ranges: dict[str, list[float]], image_size: int) -> torch.fx.GraphModule:
    """The int8 body from the float one and its shipped activation ranges (the float body is left as it was)."""
    from torch.ao.quantization.observer import MinMaxObserver
    from torch.ao.quantization.quantize_fx import convert_fx
    prepared = _prepare(body, MinMaxObserver, image_size)
    observers = _activation_observers(prepared)
    if set(observers) != set(ranges):
        raise Int8Error(f"the int8 ranges name {len(ranges)} activations, this body has {len(observers)} "
                        f"({sorted(set(ranges) ^ set(observers))[:3]} differ): they were made for another model")
    for name, observer in observers.items():
        low, high = ranges[name]
        observer.min_val.copy_(torch.tensor(float(low)))
        observer.max_val.copy_(torch.tensor(float(high)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return convert_fx(prepared)


def save_ranges(path: Path, ranges: dict[str, list[float]], arch: str, about: dict) -> None:
    Path(path).write_text(json.dumps({"format": FORMAT, "arch": arch, "engine": ENGINE, "torch": torch.__version__,
                                      **about, "ranges": ranges}, indent=1) + "\n")


def load_ranges(path: Path, arch: str) -> tuple[dict[str, list[float]], dict]:
    """(the ranges in a model folder's int8.json, how they were made: its other fields for `save_ranges`);
    Int8Error where they are not for this kind of model."""
    try:
        saved = json.loads(Path(path).read_text())
        ranges = {str(k): [float(v[0]), float(v[1])] for k, v in saved["ranges"].items()}
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError) as e:
        raise Int8Error(f"{path} is not an int8 ranges file ({type(e).__name__}: {e})") from None
    if saved.get("format") != FORMAT or saved.get("arch") != arch or saved.get("engine") != ENGINE:
        raise Int8Error(f"{path} holds format {saved.get('format')} ranges for {saved.get('arch')} on "
                        f"{saved.get('engine')}; this model needs format {FORMAT} for {arch} on {ENGINE}")
    if any(not low <= 0 <= high or high <= low for low, high in ranges.values()):  # quint8 ranges hold 0
        raise Int8Error(f"{path} has an activation range that does not hold 0 or is empty")
    return ranges, {k: v for k, v in saved.items() if k not in ("format", "arch", "engine", "torch", "ranges")}
