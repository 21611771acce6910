"""Inference at the precision and memory layout this CPU runs fastest, with fp32's answers.

A model is run as two parts (`AgeGenderNet.split_at_cam_layer`): the trunk up to the Grad-CAM layer ("body",
nearly all the work) and pool + heads ("tail"). `FastModel` runs the body in bfloat16 where the CPU has bf16
matrix instructions (x86 flags avx512_bf16 or amx_bf16), fp32 elsewhere, always channels_last with
conv+BatchNorm folded; the tail stays fp32, so the readouts and Grad-CAM's gradients are computed in fp32
from the body's activations. tests/test_fast_inference.py checks bf16 against fp32 on 200 UTKFace test faces.

Measured with `python -m demo.bench` (medians, ms, model stage for one face, VGG16 128 px ~10 GFLOP / scratch
80 px): on the 2-core Intel Xeon with AMX (amx_bf16) and avx512_bf16, two threads, fp32 30 / 2.1 against bf16
9.3 / 1.7 (VGG16 10 faces: 271 -> 68); on the 2-core AMD EPYC Zen 4 (avx512_bf16, no AMX), one thread, fp32
channels_last 104 / 3.0 against bf16 52 / 2.1 (scratch at 64 px).

Tried and left out:
- torch.autocast: it casts the weights again on every call; weights cast once ran 52 against 66 ms.
- torch.compile: 44 s to compile VGG16 for a 10% gain: the app must serve within 10 s.
- torch.jit.freeze: within the noise of eager bf16.
- torch.ao int8 (FX, x86 backend, calibrated on 128 training faces): VGG16 2x faster again (Zen 4: 26 ms;
  AMX Xeon, one thread on a busy machine: 4.5 ms against 13 in bf16) and within the parity bounds, but
  scratch's ages moved 0.31 y on average (bound 0.3), and it needs activation ranges shipped with every model
  and an API torch has deprecated. bf16 already meets the speed floors: not used.
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

import os
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn
from torch.fx.experimental.optimization import fuse

from model.nets import read_outputs

PRECISIONS = ("auto", "bf16", "fp32")
PRECISION_ENV = "FACE_PRECISION"
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")  # bf16 dot products (AVX-512) or bf16 tile matrix units (AMX)
# oneDNN's own cap on the instructions it uses ($ONEDNN_MAX_CPU_ISA, e.g. AVX2 to measure an AMX machine as an
# AVX2-only one): under a cap below a flag's ISA, bf16 is emulated even where the CPU has the units, so "auto"
# must pick fp32 as it would on such a CPU (measured under AVX2 here: the bf16 VGG16 read 200 faces in 468 s).
# The caps (oneDNN's dnnl_cpu_isa_t names) that still allow each flag; no cap, "ALL" or "DEFAULT" allow both.
ISA_CAP_VARIABLES = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")  # the second: oneDNN's older name
AMX_CAPS = ("AVX10_1_512_AMX", "AVX512_CORE_AMX", "AVX10_1_512_AMX_FP16", "AVX512_CORE_AMX_FP16")
CAPS_ALLOWING = {"avx512_bf16": ("AVX512_CORE_BF16", "AVX10_1_512", "AVX512_CORE_FP16", *AMX_CAPS),
                 "amx_bf16": AMX_CAPS}
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


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


def bf16_features() -> list[str]:
    """The bf16 matrix instructions this CPU has and oneDNN may use (empty: none, oneDNN is missing from this
    torch, or $ONEDNN_MAX_CPU_ISA caps it below them)."""
    if not torch.backends.mkldnn.is_available():
        return []
    cap = isa_cap()
    return sorted(flag for flag in set(BF16_CPU_FLAGS) & cpu_flags() if cap is None or cap in CAPS_ALLOWING[flag])


def resolve_precision(precision: str | None = None) -> str:
    """"bf16" or "fp32". None reads $FACE_PRECISION (default "auto"); "auto" is bf16 where the CPU has bf16
    matrix instructions and fp32 where it has not (there bf16 would be emulated, slower than fp32)."""
    requested = precision or os.environ.get(PRECISION_ENV) or "auto"
    if requested not in PRECISIONS:
        source = "precision" if precision else f"${PRECISION_ENV}"
        raise ValueError(f"{source} must be one of {', '.join(PRECISIONS)}, not {requested!r}")
    if requested == "auto":
        return "bf16" if bf16_features() else "fp32"
    return requested


class FastModel:
    """An AgeGenderNet for inference: body at `precision` in channels_last, tail in fp32 (shared with the model).
    The model itself is left as it was (fp32, its own layout): the body is a converted copy."""

    def __init__(self, model: nn.Module, precision: str | None = None):
        self.model = model.eval()
        self.precision = resolve_precision(precision)
        self.dtype = DTYPES[self.precision]
        body, self.tail = model.split_at_cam_layer()
        # fuse: a copy of the body with each BatchNorm folded into its conv (scratch: 2.4 -> 2.1 ms in bf16).
        self.body = fuse(body).to(self.dtype, memory_format=torch.channels_last)

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
        self.precision = resolve_precision(precision)
        ready = {id(f.model): f for f in reuse if f.precision == self.precision}
        self.members = [ready.get(id(m)) or FastModel(m, self.precision) for m in model.members]

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
