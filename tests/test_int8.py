"""int8 bodies (model/int8.py): built from shipped activation ranges, chosen by "auto" only where the CPU has int8
dot products and the model ships ranges, carried by bundles, local folders and the Hub (tests/test_hub.py), and made by
`python -m train.quantize`. The shipped VGG16's int8 answers against fp32 on real faces are in
tests/test_fast_inference.py, beside bf16's."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from huggingface_hub import constants

from demo.pipeline import Pipeline
from model.cam import explain
from model.fast import FastModel, fast_model, int8_features, resolve_precision
from model.hub import ModelLoadError, load_model, verify_bundle, write_bundle
from model.int8 import RANGES_FILE, Int8Error, calibrate, quantize, save_ranges
from model.nets import ScratchNet
from test_fast_inference import scratch_with_batchnorm_statistics

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def faces(n: int, seed: int, size: int = 64) -> torch.Tensor:
    """Smooth random images, normalised-face-like: int8 ranges calibrated on some hold for others."""
    g = torch.Generator().manual_seed(seed)
    small = torch.randn(n, 3, size // 8, size // 8, generator=g)
    return torch.nn.functional.interpolate(small, size=size, mode="bilinear", align_corners=False)


def with_ranges(net):
    net.int8_ranges = calibrate(net.split_at_cam_layer()[0], [faces(16, seed) for seed in range(4)], net.image_size)
    return net


@pytest.fixture
def scratch():
    return with_ranges(scratch_with_batchnorm_statistics())


def test_auto_is_int8_only_with_int8_dot_products_and_shipped_ranges(cpu, scratch, monkeypatch):
    plain = ScratchNet()
    cpu("avx2", "avx512f", "avx512_vnni", "avx512_bf16")  # AMD Zen 4, Intel Cooper Lake
    assert resolve_precision(None, scratch) == "int8" and resolve_precision("auto", plain) == "bf16"
    assert resolve_precision() == "bf16"  # no model: its ranges unknown
    cpu("avx2", "avx512f", "avx512_vnni")  # Intel Cascade Lake / Ice Lake: int8 dot products, no bf16
    assert resolve_precision(None, scratch) == "int8" and resolve_precision(None, plain) == "fp32"
    cpu("avx2", "avx_vnni")  # Alder Lake
    assert resolve_precision(None, scratch) == "int8"
    cpu("amx_tile", "amx_bf16", "amx_int8", "avx512_bf16", "avx512_vnni")
    assert resolve_precision(None, scratch) == "int8" and int8_features() == ["amx_int8", "avx512_vnni"]
    cpu("avx2", "fma")  # AVX2 only: int8 is no faster than fp32 there (docs/benchmarks.md)
    assert resolve_precision(None, scratch) == "fp32" and int8_features() == []
    cpu("avx2", "avx512f", "avx512_vnni", "avx512_bf16")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # measuring as an AVX2-only CPU
    assert resolve_precision(None, scratch) == "fp32"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_VNNI")  # as a Cascade Lake
    assert resolve_precision(None, scratch) == "int8" and resolve_precision(None, plain) == "fp32"


def test_int8_asked_for_a_model_without_ranges_is_a_clear_error(cpu, monkeypatch):
    cpu("avx512_vnni")
    with pytest.raises(ValueError, match=r"precision int8: this scratch ships no int8 ranges \(int8.json beside"):
        Pipeline(ScratchNet(), precision="int8")
    monkeypatch.setenv("FACE_PRECISION", "int8")
    with pytest.raises(ValueError, match="ships no int8 ranges"):
        FastModel(ScratchNet())
    assert resolve_precision() == "int8"  # no model to check, e.g. a benchmark's heading


def test_int8_body_answers_as_fp32_does_and_leaves_the_model_as_it_was(scratch):
    batch = faces(8, seed=99)  # not among the calibration faces
    before = {k: v.clone() for k, v in scratch.state_dict().items()}
    expected = scratch.predict(batch)
    fast = FastModel(scratch, "int8")
    assert fast.precision == "int8" and fast.tail[-1] is scratch.heads  # the heads are shared, not copied
    assert any(p.dtype == torch.qint8 for p in fast.body.state_dict().values() if isinstance(p, torch.Tensor))
    assert fast.features(batch).dtype == torch.float32  # the tail and Grad-CAM get fp32
    got = fast.predict(batch)
    torch.testing.assert_close(got["p_female"], expected["p_female"], atol=0.02, rtol=0)
    torch.testing.assert_close(got["age"], expected["age"], atol=1.0, rtol=0)
    assert not torch.equal(got["age"], expected["age"])  # really another path
    predicted, maps = explain(fast, batch, ("gender", "age"))  # Grad-CAM through the fp32 tail
    torch.testing.assert_close(predicted["age"], got["age"])
    assert maps["gender"].shape[0] == 8 and float(maps["gender"].max()) > 0
    assert all(torch.equal(v, before[k]) for k, v in scratch.state_dict().items())


def test_ranges_that_do_not_fit_the_body_are_an_error_asked_for_and_a_warning_in_auto(cpu, scratch, caplog,
                                                                                    monkeypatch):
    """E.g. ranges from another torch whose graph names its activations otherwise: int8 only speeds up, so
    "auto" runs the float body and says why; "int8" asked for is refused."""
    other = with_ranges(ScratchNet(widths=[4, 8], image_size=32, hidden=8).eval())
    with pytest.raises(Int8Error, match="they were made for another model"):
        quantize(other.split_at_cam_layer()[0], scratch.int8_ranges, 32)
    other.int8_ranges = scratch.int8_ranges
    cpu("avx512_vnni", "avx512_bf16")
    with pytest.raises(Int8Error, match="they were made for another model"):
        FastModel(other, "int8")
    fast = FastModel(other)
    assert fast.precision == "bf16" and "they were made for another model; running the scratch body in bf16" \
        in caplog.text
    batch = faces(2, seed=5, size=32)
    torch.testing.assert_close(fast.predict(batch)["age"], other.predict(batch)["age"], atol=0.5, rtol=0)
    monkeypatch.setenv("FACE_PRECISION", "int8")
    with pytest.raises(Int8Error):
        FastModel(other)


def test_an_ensemble_runs_int8_members_where_they_ship_ranges(cpu, scratch):
    from model.ensemble import Ensemble
    cpu("avx512_vnni", "avx512_bf16")
    plain = scratch_with_batchnorm_statistics()
    ensemble = Ensemble([scratch, plain]).eval()
    fast = fast_model(ensemble)
    assert [m.precision for m in fast.members] == ["int8", "bf16"] and fast.precision == "int8+bf16"
    reused = fast_model(ensemble, reuse=fast.members)
    assert all(a is b for a, b in zip(reused.members, fast.members))
    with pytest.raises(ValueError, match="ships no int8 ranges"):
        fast_model(ensemble, "int8")  # every network int8: the second cannot be
    misfit = ScratchNet(widths=[4, 8], image_size=scratch.image_size, hidden=8).eval()
    misfit.int8_ranges = scratch.int8_ranges  # another network's ranges: "auto" runs it in bf16, as FastModel does
    assert [m.precision for m in fast_model(Ensemble([scratch, misfit]).eval()).members] == ["int8", "bf16"]


def test_a_ranges_file_travels_in_bundles_and_local_folders(scratch, tmp_path, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    folder = tmp_path / "assets" / "scratch"
    write_bundle(scratch_with_batchnorm_statistics(), folder)  # the same weights, without ranges
    assert load_model("scratch", assets_dir=tmp_path / "assets").int8_ranges is None  # none written yet
    save_ranges(folder / RANGES_FILE, scratch.int8_ranges, "scratch", {"faces": 64})
    with pytest.raises(ModelLoadError, match="sha256 does not list int8.json$"):
        load_model("scratch", assets_dir=tmp_path / "assets")  # a file the sha256 list does not vouch for
    scratch.int8_about = {"faces": 64}
    write_bundle(scratch, folder)  # writes the model's ranges and lists them
    assert "int8.json" in (folder / "sha256").read_text()
    loaded = load_model("scratch", assets_dir=tmp_path / "assets")
    assert loaded.int8_ranges == scratch.int8_ranges and loaded.int8_about == {"faces": 64}
    assert load_model(str(folder)).int8_ranges == scratch.int8_ranges
    write_bundle(loaded, tmp_path / "again")  # ranges and how they were made travel with the weights
    assert (tmp_path / "again" / RANGES_FILE).read_text() == (folder / RANGES_FILE).read_text()
    write_bundle(ScratchNet(), tmp_path / "again")  # other weights: the earlier ranges are gone
    assert not (tmp_path / "again" / RANGES_FILE).exists() and "int8" not in (tmp_path / "again" / "sha256").read_text()

    saved = json.loads((folder / RANGES_FILE).read_text())
    (folder / RANGES_FILE).write_text(json.dumps(saved | {"arch": "vgg16"}))
    with pytest.raises(ModelLoadError, match="holds format 1 ranges for vgg16 on x86; this model needs format 1 "
                                             "for scratch"):
        load_model(str(folder))
    with pytest.raises(ModelLoadError, match="bundled .*int8.json is missing, corrupt or truncated"):
        load_model("scratch", assets_dir=tmp_path / "assets")  # changed after the listing was written
    (folder / RANGES_FILE).write_text("{not json")
    with pytest.raises(ModelLoadError, match="int8.json is not an int8 ranges file"):
        load_model(str(folder))
    name = next(iter(saved["ranges"]))
    (folder / RANGES_FILE).write_text(json.dumps(saved | {"ranges": saved["ranges"] | {name: [0.5, 2.0]}}))
    with pytest.raises(ModelLoadError, match="an activation range that does not hold 0"):
        load_model(str(folder))


def test_quantize_writes_ranges_a_bundle_vouches_for(test_sample, tmp_path, monkeypatch, capsys):
    """`python -m train.quantize` on a tiny bundle, calibrated on 8 real faces listed as a split's training rows
    (test faces here: nothing is chosen on them, the tool is only run)."""
    import csv

    from train.quantize import main
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    folder = tmp_path / "bundle"
    write_bundle(scratch_with_batchnorm_statistics(), folder)
    split = tmp_path / "split.csv"
    with open(split, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "age", "gender", "race", "source", "split"])
        for r in test_sample[::25]:
            writer.writerow([r.path, r.age, r.gender, r.race, "utkface", "train"])
    main(["--model", str(folder), "--data", str(Path(test_sample[0].path).parent), "--split-csv", str(split),
          "--faces", "6"])
    out = capsys.readouterr().out
    assert re.search(r"int8.json: \d+ activation ranges from 6 training faces\n", out)  # not read mirrored
    assert "int8 against fp32 on these faces: gender calls agree on" in out
    saved = json.loads((folder / RANGES_FILE).read_text())
    assert saved["faces"] == 6 and not saved["mirrored"] and saved["arch"] == "scratch"
    assert saved["command"].startswith("python -m train.quantize")
    verify_bundle(folder)  # int8.json is listed in the bundle's sha256 file
    loaded = load_model(str(folder))
    assert loaded.int8_ranges == saved["ranges"] and "int8.json" in (folder / "sha256").read_text()
    assert FastModel(loaded, "int8").precision == "int8"
