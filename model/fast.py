"""Inference at the precision and memory layout this CPU runs fastest, with fp32's answers.

A model is run as two parts (`AgeGenderNet.split_at_cam_layer`): the trunk up to the Grad-CAM layer ("body",
nearly all the work) and pool + heads ("tail"). `FastModel` runs the body in int8 for a model that ships int8
activation ranges (model/int8.py; the bundled VGG16 does) where the CPU has int8 dot products (avx512_vnni,
avx_vnni or amx_int8), else in bfloat16 where it has bf16 matrix instructions (avx512_bf16 or amx_bf16), else
fp32; bf16 and fp32 channels_last with conv+BatchNorm folded. The tail stays fp32, so the readouts and
Grad-CAM's gradients are computed in fp32 from the body's activations. tests/test_fast_inference.py checks bf16
and int8 against fp32 on 200 UTKFace test faces.

int8 (2026-12-06, 2-core AMD EPYC Zen 4, avx512_vnni + avx512_bf16, `python -m demo.bench --threads 2`, VGG16
at 160 px, model stage for one face read with its mirror image / ten faces): fp32 170 / 1656 ms, bf16 81 / 817,
int8 41 / 389, i.e. 2-2.1x bf16. Against fp32 on UTKFace's 3,460 validation faces (`python -m train.evaluate
--model assets/models/vgg16 ... --split val --precision int8`, then `fp32`): gender calls agree on 99.6% (14
flips), ages move 0.21 y on average, gender accuracy 93.15 -> 93.27%, age MAE 5.671 -> 5.685 y.

Measured with `python -m demo.bench` (medians, ms, model stage for one face, VGG16 128 px ~10 GFLOP / scratch
80 px): on the 2-core Intel Xeon with AMX (amx_bf16) and avx512_bf16, two threads, fp32 30 / 2.1 against bf16
9.3 / 1.7 (VGG16 10 faces: 271 -> 68); on the 2-core AMD EPYC Zen 4 (avx512_bf16, no AMX), one thread, fp32
channels_last 104 / 3.0 against bf16 52 / 2.1 (scratch at 64 px).

Tried and left out:
- torch.autocast: it casts the weights again on every call; weights cast once ran 52 against 66 ms.
- torch.compile: 44 s to compile VGG16 for a 10% gain: the app must serve within 10 s.
- torch.jit.freeze: within the noise of eager bf16.
- int8 for the scratch CNN: its ages moved 0.31 y on average (bound 0.3; 2026-12-03), for a body of ~4 ms.
  (int8 for VGG16 was left out then too, while bf16 met the speed floors on the AMX Xeon; at 160 px on a Zen 4
  bf16 showed the webcam at 4.8 frames/s, so VGG16 now ships int8 ranges.)
- int8 activations over the full 8 bits (reduce_range off; torch's x86 default keeps 7): on 865 validation faces
  (every 4th), ages moved 0.16 against 0.19 y but calls agreed on 99.65 against 99.77%: the default is kept.
- ONNX Runtime / OpenVINO: not installed here; oneDNN already runs native bf16 kernels
  (brg_conv avx512_core_bf16; AMX tiles where the CPU has them), which leaves them little to win.
- int8 on a CPU with AVX2 and no bf16 or VNNI units (issue 23), measured 2026-12-03 on a 2-core AMD EPYC Zen 1
  (family 23 model 1: 128-bit AVX2 units), VGG16's body (128 px, up to the Grad-CAM layer), 2 threads, medians
  of 10, the training run paused; each int8 path calibrated on 32 inputs; ms for 1 / 10 faces:
      torch fp32 (this file)                           157 / 1585
      torch.ao FX int8, x86 engine (eager)             280 / 1512   rel. error 0.040
      torchao 0.18 PT2E, X86InductorQuantizer +
        torch.compile (freezing; 41 s to compile)      139 / 1347   rel. error 0.162
      ONNX Runtime 1.32 static QDQ, per channel        153 / 1399   rel. error 0.154  (its fp32: 197 / 1605)
      OpenVINO 2026.4 + NNCF 3.4 (bias correction)     146 / 1292   rel. error 0.034  (its fp32: 185 / 1764)
  At most 1.13x faster than fp32: without VNNI an int8 multiply-add costs about what an fp32 one does on
  this CPU, so int8 would add a dependency and a quantize-and-cache step for ~10%. Not used; `auto` stays
  fp32 on such CPUs. CPUs with VNNI but no bf16 (Intel Cascade Lake / Ice Lake) are where int8 should pay,
  and none was available to measure.
"""
from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn
from torch.fx.experimental.optimization import fuse

from model.int8 import RANGES_FILE, Int8Error, quantize
from model.nets import read_outputs

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "int8", "bf16", "fp32")
PRECISION_ENV = "FACE_PRECISION"
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")  # bf16 dot products (AVX-512) or bf16 tile matrix units (AMX)
INT8_CPU_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")  # int8 dot products (VNNI) or int8 tiles (AMX)
# oneDNN's own cap on the instructions it uses ($ONEDNN_MAX_CPU_ISA, e.g. AVX2 to measure an AMX machine as an
# AVX2-only one): under a cap below a flag's ISA, bf16 is emulated even where the CPU has the units, so "auto"
# must pick fp32 as it would on such a CPU (measured under AVX2 here: the bf16 VGG16 read 200 faces in 468 s).
# The caps (oneDNN's dnnl_cpu_isa_t names) that still allow each flag; no cap, "ALL" or "DEFAULT" allow all.
# (torch's int8 kernels are partly FBGEMM's, which ignores the cap: "auto" still reads it, so that a capped
# machine measures as the CPU it stands for.)
ISA_CAP_VARIABLES = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")  # the second: oneDNN's older name
AMX_CAPS = ("AVX10_1_512_AMX", "AVX512_CORE_AMX", "AVX10_1_512_AMX_FP16", "AVX512_CORE_AMX_FP16")
BF16_CAPS = ("AVX512_CORE_BF16", "AVX10_1_512", "AVX512_CORE_FP16", *AMX_CAPS)
CAPS_ALLOWING = {"avx512_bf16": BF16_CAPS, "amx_bf16": AMX_CAPS,
                 "avx512_vnni": ("AVX512_CORE_VNNI", *BF16_CAPS), "avx_vnni": ("AVX2_VNNI", "AVX2_VNNI_2"),
                 "amx_int8": AMX_CAPS}
DTYPES = {"int8": torch.float32, "bf16": torch.bfloat16, "fp32": torch.float32}  # int8: the body's input


def cpuinfo(field: str) -> str:
    """A field of the first CPU in Linux's /proc/cpuinfo ("model name", "flags"); "" where there is none."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""
    line = next((line for line in text.splitlines() if line.split(":")[0].strip() == field), "")
    return line.partition(":")[2].strip()


def cpu_flags() -> set[str]:
    return set(cpuinfo("flags").split())


def isa_cap() -> str | None:
    """oneDNN's cap on its instructions from the environment, upper case; None where there is none."""
    cap = next((os.environ[name] for name in ISA_CAP_VARIABLES if os.environ.get(name)), "").strip().upper()
    return None if cap in ("", "ALL", "DEFAULT") else cap


def allowed_features(flags: Iterable[str]) -> list[str]:
    """Those of `flags` this CPU has and oneDNN may use (empty: none, oneDNN is missing from this torch, or
    $ONEDNN_MAX_CPU_ISA caps it below them)."""
    if not torch.backends.mkldnn.is_available():
        return []
    cap = isa_cap()
    return sorted(flag for flag in set(flags) & cpu_flags() if cap is None or cap in CAPS_ALLOWING[flag])


def bf16_features() -> list[str]:
    """The bf16 matrix instructions this CPU has and oneDNN may use."""
    return allowed_features(BF16_CPU_FLAGS)


def int8_features() -> list[str]:
    """The int8 dot-product instructions this CPU has (without them int8 is no faster than fp32: benchmarks.md)."""
    return allowed_features(INT8_CPU_FLAGS)


def resolve_precision(precision: str | None = None, model: nn.Module | None = None) -> str:
    """"int8", "bf16" or "fp32" for `model`'s body. None reads $FACE_PRECISION (default "auto"); "auto" is int8
    where the CPU has int8 dot products and the model ships int8 ranges (`int8_ranges`, model/int8.py), else
    bf16 where the CPU has bf16 matrix instructions, else fp32 (there bf16 is emulated, slower than fp32).
    "int8" asked for a model without ranges is an error (without a model, e.g. to print the path: "int8")."""
    requested = requested_precision(precision)
    if requested not in PRECISIONS:
        source = "precision" if precision else f"${PRECISION_ENV}"
        raise ValueError(f"{source} must be one of {', '.join(PRECISIONS)}, not {requested!r}")
    has_ranges = model is not None and getattr(model, "int8_ranges", None) is not None
    if requested == "int8" and model is not None and not has_ranges:
        raise ValueError(f"precision int8: this {getattr(model, 'arch', 'model')} ships no int8 ranges "
                         f"({RANGES_FILE} beside its weights; python -m train.quantize makes one)")
    if requested == "auto":
        return "int8" if has_ranges and int8_features() else float_precision()
    return requested


def requested_precision(precision: str | None) -> str:
    """The precision asked for: the argument, else $FACE_PRECISION, else "auto" (not yet checked or resolved)."""
    return precision or os.environ.get(PRECISION_ENV) or "auto"


def float_precision() -> str:
    """What "auto" runs a model without int8 ranges at: bf16 where the CPU has bf16 matrix instructions."""
    return "bf16" if bf16_features() else "fp32"


class SharedExclusiveLock:
    """Many holders at once (`shared`) or one alone (`exclusive`); a waiting exclusive holder goes before new shared
    ones, so a stream of requests cannot starve it. Not re-entrant."""

    def __init__(self):
        self._changed = threading.Condition()
        self._shared = 0
        self._exclusive = False
        self._waiting = 0  # exclusive holders waiting

    @contextmanager
    def shared(self):
        with self._changed:
            self._changed.wait_for(lambda: not self._exclusive and not self._waiting)
            self._shared += 1
        try:
            yield
        finally:
            with self._changed:
                self._shared -= 1
                self._changed.notify_all()

    @contextmanager
    def exclusive(self):
        with self._changed:
            self._waiting += 1
            self._changed.wait_for(lambda: not self._exclusive and not self._shared)
            self._waiting -= 1
            self._exclusive = True
        try:
            yield
        finally:
            with self._changed:
                self._exclusive = False
                self._changed.notify_all()


# torch.fx traces a body to build its fast copy (`fuse`, and int8's prepare / convert), and while it traces it
# patches torch.nn.Module.__call__ for the whole process: a network run on another thread meanwhile is taken for
# part of the trace and fails ("NameError: module is not installed as a submodule"). The app builds its other
# models' fast paths on a background thread while it serves (demo/ui_models.py), so building holds this
# exclusively and running a model (demo.pipeline) holds it shared.
TRACING = SharedExclusiveLock()


class FastModel:
    """An AgeGenderNet for inference: body at `precision` in channels_last, tail in fp32 (shared with the model).
    The model itself is left as it was (fp32, its own layout): the body is a converted copy."""

    def __init__(self, model: nn.Module, precision: str | None = None):
        self.model = model.eval()
        self.precision = resolve_precision(precision, model)
        body, self.tail = model.split_at_cam_layer()
        with TRACING.exclusive():  # fuse and quantize trace the body
            self.body = self._int8_body(body, precision) if self.precision == "int8" else None
            self.dtype = DTYPES[self.precision]
            if self.body is None:
                # fuse: a copy of the body with each BatchNorm folded into its conv (scratch: 2.4 -> 2.1 ms in bf16).
                self.body = fuse(body).to(self.dtype, memory_format=torch.channels_last)

    def _int8_body(self, body: nn.Module, precision: str | None) -> nn.Module | None:
        """int8 convolutions, float in and out (model/int8.py). None where the ranges do not fit this torch's body
        and int8 was not asked for by name: then the float precision "auto" picks (int8 only speeds up, so the app
        still starts)."""
        try:
            return quantize(body, self.model.int8_ranges, self.model.image_size)
        except Int8Error as error:
            if requested_precision(precision) == "int8":
                raise
            self.precision = float_precision()
            log.warning("%s; running the %s body in %s", error, getattr(self.model, "arch", "model"), self.precision)
            return None

    @property
    def image_size(self) -> int:
        return self.model.image_size

    @torch.no_grad()
    def features(self, batch: torch.Tensor) -> torch.Tensor:
        """Normalised faces [N, 3, S, S] -> `cam_layer` activations in fp32 (the tail's input)."""
        return self.body(batch.to(self.dtype, memory_format=torch.channels_last)).float()

    @torch.no_grad()
    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        """As `model(batch)`: the raw outputs [N, 1 + AGE_BINS], in fp32."""
        return self.tail(self.features(batch))

    def predict(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        """As `AgeGenderNet.predict`: calibrated readouts per face (mirror-averaged where the model says so)."""
        return self.readouts(read_outputs(self, batch, self.model.mirror_average))

    def readouts(self, out: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.model.readouts(out)


class FastEnsemble:
    """A model.ensemble.Ensemble for inference: each member a FastModel, combined as the ensemble combines."""

    def __init__(self, model: nn.Module, precision: str | None = None, reuse: Iterable[FastModel] = ()):
        """reuse: fast paths already built for some of the members (the app's other choices), taken instead of
        a second bf16 copy of the same network (VGG16's is ~30 MB) where model and precision match."""
        self.model = model.eval()
        ready = {(id(f.model), f.precision): f for f in reuse}
        self.members = []
        for member in model.members:
            wanted = resolve_precision(precision, member)  # each network its own: int8 where it ships ranges
            # built from the request, not `wanted`: under "auto" a member whose ranges do not fit falls back
            self.members.append(ready.get((id(member), wanted)) or FastModel(member, precision))
        # one name where the members agree, e.g. "bf16"; else each member's, e.g. "int8+bf16"
        self.precision = "+".join(dict.fromkeys(m.precision for m in self.members))

    @property
    def image_size(self) -> int:
        return self.model.image_size

    @torch.no_grad()
    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        """As `model(batch)`: the ensemble's outputs [N, 1 + AGE_BINS], each member mirrored as it says."""
        outs = [read_outputs(fast, part, fast.model.mirror_average)
                for fast, part in zip(self.members, self.model.member_inputs(batch))]
        return self.model.combine(outs)

    def predict(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.readouts(self(batch))

    def readouts(self, out: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.model.readouts(out)


def fast_model(model: nn.Module, precision: str | None = None, reuse: Iterable[FastModel] = ()
               ) -> FastModel | FastEnsemble:
    """The fast path for any model: a FastModel, or for an ensemble (a model with `members`) a FastEnsemble
    (taking the fast paths in `reuse` for the members they were built for)."""
    return FastEnsemble(model, precision, reuse) if hasattr(model, "members") else FastModel(model, precision)
