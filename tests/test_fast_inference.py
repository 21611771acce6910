"""The fast inference path (model/fast.py): chosen by the CPU's features, fp32 exactly where it is fp32, and in
bf16 and int8 the same answers and Grad-CAM maps as fp32 on real faces (the shipped models, UTKFace test faces)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from demo.pipeline import Pipeline
from model.cam import explain
from model.fast import FastModel, bf16_features, resolve_precision
from model.gender import says_female
from model.nets import ScratchNet, VGGNet
from model.preprocess import normalize
from conftest import torch_threads
from test_shipped_models import NETWORKS, load_shipped

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_auto_is_bf16_only_with_bf16_matrix_instructions(cpu):
    cpu("avx2", "avx512f", "avx512_vnni")
    assert resolve_precision() == resolve_precision("auto") == "fp32"
    cpu("avx512f", "avx512_bf16")
    assert resolve_precision() == "bf16"
    cpu("amx_tile", "amx_bf16")
    assert resolve_precision() == "bf16"


def test_auto_is_fp32_where_onednn_is_capped_below_bf16(cpu, monkeypatch):
    """ONEDNN_MAX_CPU_ISA=AVX2 makes an AMX machine measure like an AVX2 one: oneDNN then emulates bf16, so
    "auto" has to read the cap as well as the CPU's flags."""
    cpu("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")
    assert bf16_features() == ["amx_bf16", "avx512_bf16"] and resolve_precision() == "bf16"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx2")
    assert bf16_features() == [] and resolve_precision() == "fp32"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_VNNI")
    assert resolve_precision() == "fp32"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16")  # AVX-512 bf16 dot products, no AMX tiles
    assert bf16_features() == ["avx512_bf16"] and resolve_precision() == "bf16"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "ALL")
    assert bf16_features() == ["amx_bf16", "avx512_bf16"]
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    monkeypatch.setenv("DNNL_MAX_CPU_ISA", "AVX2")  # oneDNN's older name for the same cap
    assert resolve_precision() == "fp32"


def test_precision_can_be_forced(cpu, monkeypatch):
    cpu("avx512_bf16")
    monkeypatch.setenv("FACE_PRECISION", "fp32")
    assert resolve_precision() == "fp32" and Pipeline(ScratchNet()).fast.precision == "fp32"
    assert resolve_precision("bf16") == "bf16"  # an argument beats the environment
    monkeypatch.setenv("FACE_PRECISION", "fp16")
    with pytest.raises(ValueError, match=r"\$FACE_PRECISION must be one of auto, int8, bf16, fp32, not 'fp16'"):
        resolve_precision()
    with pytest.raises(ValueError, match="precision must be one of"):
        Pipeline(ScratchNet(), precision="float16")


def scratch_with_batchnorm_statistics() -> ScratchNet:
    """A ScratchNet whose BatchNorms do something (fresh ones are the identity), so folding them is tested."""
    torch.manual_seed(0)
    net = ScratchNet().eval()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 2), m.weight.data.uniform_(0.5, 1.5)
    return net


@pytest.mark.parametrize("net", [scratch_with_batchnorm_statistics, lambda: VGGNet(image_size=64).eval()])
def test_fp32_path_gives_the_models_own_answers(net):
    model = net()
    batch = torch.randn(4, 3, model.image_size, model.image_size)
    expected = model.predict(batch)
    fast = FastModel(model, "fp32")
    got = fast.predict(batch)
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], atol=1e-4, rtol=1e-4)
    predicted, _ = explain(fast, batch, ())
    torch.testing.assert_close(predicted["age"], expected["age"], atol=1e-4, rtol=1e-4)


def test_bf16_runs_a_copy_and_leaves_the_model_as_it_was():
    model = scratch_with_batchnorm_statistics()
    batch = torch.randn(2, 3, 64, 64)
    before = model(batch)
    fast = FastModel(model, "bf16")
    assert {p.dtype for p in fast.body.parameters()} == {torch.bfloat16}
    assert fast.features(batch).dtype == torch.float32  # the tail and Grad-CAM get fp32
    assert all(p.dtype == torch.float32 and p.is_contiguous() for p in model.parameters())
    assert torch.equal(model(batch), before)
    assert fast.tail[-1] is model.heads  # the heads are shared, not copied


EMULATED_STEP = 25  # where bf16 is emulated, every 25th of the 200 faces


@pytest.fixture(params=NETWORKS, scope="module")
def shipped(request):
    """The bundled networks. The ensemble's fast path is its members' (tests/test_ensemble.py checks that it
    combines them as the reference does), so its bf16 numerics are theirs: not read again here."""
    return load_shipped(request.param)


@pytest.fixture(scope="module")
def both_paths(torch_one_thread, shipped, test_sample):
    """Readouts and Grad-CAM maps on the 200 test faces: the model in fp32 (as before) and its bf16 fast path.

    On a CPU without bf16 matrix instructions bf16 is emulated (VGG16: 495 s for 200 faces on the 2-core AVX2
    EPYC, 48 s for 20, the suite's slowest part), so there it runs on 8 of them (every 25th: all ages); the
    app never runs bf16 on such a CPU, and the numerics checked are the same."""
    from train.images import load_images
    sample = test_sample if bf16_features() else test_sample[::EMULATED_STEP]
    images, kept = load_images(sample, shipped.image_size)
    batch = normalize()(images)
    results = {}
    paths = [("fp32", shipped), ("bf16", FastModel(shipped, "bf16"))]
    if shipped.int8_ranges is not None:
        paths.append(("int8", FastModel(shipped, "int8")))
    for name, net in paths:
        # Two threads for these large batches (VGG16's 200 faces in fp32, bf16 and int8: 130 s on one thread,
        # 69 on two; 2-core Zen 4, 2026-12-06), unlike the module's small calls (conftest.torch_one_thread).
        with torch_threads(2):
            parts = [explain(net, batch[i:i + 25]) for i in range(0, len(batch), 25)]
        readouts = {k: torch.cat([p[0][k] for p in parts]).numpy() for k in ("p_female", "age")}
        maps = {head: np.concatenate([p[1][head] for p in parts]) for head in ("gender", "age")}
        results[name] = readouts, maps
    return shipped.arch, kept, results


def test_only_vgg16_ships_int8_ranges(both_paths):
    """VGG16 (the default, ~80 ms a face in bf16 on a Zen 4) runs int8 where the CPU has int8 dot products; the
    scratch CNN's body takes ~4 ms, too little to win for another numeric path."""
    arch, _, results = both_paths
    assert ("int8" in results) == (arch == "vgg16")


@pytest.mark.parametrize("path", ["bf16", "int8"])
def test_fast_paths_agree_with_fp32_on_200_test_faces(both_paths, path):
    """(8 where bf16 is emulated.) Gender calls agree on >= 99.5% of faces (so the gender accuracy moves by at
    most one face), ages by <= 0.3 y on average, and the age MAE by <= 0.05 y (on the 200). int8: the networks that ship
    ranges (test_only_vgg16_ships_int8_ranges)."""
    from train.metrics import age_mae
    arch, kept, results = both_paths
    if path not in results:
        return  # the scratch CNN ships no int8 ranges: checked above
    (fp32, _), (fast, _) = results["fp32"], results[path]
    age = np.array([r.age for r in kept])
    assert len(kept) == (200 if bf16_features() else 200 // EMULATED_STEP)
    agree = np.mean(says_female(fp32["p_female"]) == says_female(fast["p_female"]))
    print(f"{arch} {path}: {len(kept)} faces, calls agree {agree:.1%}, ages move "
          f"{np.abs(fp32['age'] - fast['age']).mean():.3f} y, MAE {age_mae(fp32['age'], age):.3f} -> "
          f"{age_mae(fast['age'], age):.3f}")
    assert agree >= 0.995
    assert np.abs(fp32["age"] - fast["age"]).mean() <= 0.3
    # No separate bound on the gender accuracy: the agreement bound above caps its move at one face (0.5 points
    # of 200). The bound under one face it had (0.2 points) forbade the flip that bound allows, and failed on the
    # VGG16 shipped with augmented copies (one face at p_female 0.55 flipped: 94.5 -> 94.0%).
    # The MAE's own move, on the 200 faces: on the 8 read where bf16 is emulated it is noise the size of the
    # per-face moves (int8 VGG16 under ONEDNN_MAX_CPU_ISA=AVX2: 0.08 y on 8 faces, 0.02 on 200), and already
    # bounded by their mean above (|MAE_a - MAE_b| <= mean |a - b|).
    if len(kept) == 200:
        assert abs(age_mae(fast["age"], age) - age_mae(fp32["age"], age)) <= 0.05


@pytest.mark.parametrize("path", ["bf16", "int8"])
def test_fast_grad_cam_maps_match_fp32_ones(both_paths, path):
    """On 50 of the faces (every 4th: all ages; the 8 where bf16 is emulated), each head's maps correlate with the
    fp32 ones at >= 0.98 on average, where both paths made the same gender call. A face whose call the fast path flips
    (p_female near 0.5; test_fast_paths_agree_with_fp32_on_200_test_faces allows one in 200) is explained for the
    other class: its gender map is another map (VGG16 read mirrored: correlation -0.23 on one such face)."""
    _, _, results = both_paths
    if path not in results:
        return  # the scratch CNN ships no int8 ranges (test_only_vgg16_ships_int8_ranges)
    step = 4 if len(results["fp32"][1]["gender"]) == 200 else 1  # 50 faces (8 where bf16 is emulated)
    (fp32_readouts, _), (fast_readouts, _) = results["fp32"], results[path]
    same_call = (says_female(fp32_readouts["p_female"]) == says_female(fast_readouts["p_female"]))[::step]
    assert same_call.sum() >= len(same_call) - 1
    for head in ("gender", "age"):
        fp32, fast = (results[name][1][head][::step][same_call] for name in ("fp32", path))
        assert len(same_call) == (50 if bf16_features() else 200 // EMULATED_STEP) and fast.shape == fp32.shape
        correlations = [np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in zip(fp32, fast)]
        print(f"{path} {head}: correlation mean {np.mean(correlations):.4f}, min {min(correlations):.4f}, "
              f"{np.mean(np.array(correlations) >= 0.98):.0%} >= 0.98")
        # Single faces can fall lower (0.96 seen), e.g. where bf16 moved the predicted age interval by a year,
        # so that the map explains a slightly different target.
        assert np.mean(correlations) >= 0.98 and min(correlations) >= 0.9, head
