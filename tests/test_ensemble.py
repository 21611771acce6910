"""The ensemble (model/ensemble.py): the answers are the members' combined as documented, on the reference, the
fast path and Grad-CAM alike; it saves, loads and refuses bad folders like any model."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from model.age import age_interval, mean_age
from model.cam import explain, library_cams, targets_for
from model.ensemble import Ensemble
from model.fast import FastEnsemble, fast_model
from model.hub import ModelLoadError, load_model, write_bundle
from model.nets import ScratchNet

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def member(seed: int, image_size: int, mirror: bool, gender_t: float, offset: float, age_t: float) -> ScratchNet:
    torch.manual_seed(seed)
    net = ScratchNet(image_size=image_size, widths=(8, 8, 16, 16, 32), hidden=16, mirror_average=mirror).eval()
    net.gender_temperature.fill_(gender_t)
    net.gender_offset.fill_(offset)
    net.age_temperature.fill_(age_t)
    net.age_warp.copy_(net.age_warp * 0.9 + 3)  # a warp that moves every age: the mixture must take it along
    return net


@pytest.fixture(scope="module")
def members():
    # Two sizes (the larger is the ensemble's input), one mirrored, each calibrated otherwise.
    return member(0, 64, True, 1.7, 0.3, 0.8), member(1, 48, False, 0.9, -0.2, 1.3)


def faces(n: int = 4, size: int = 64) -> torch.Tensor:
    torch.manual_seed(7)
    return torch.randn(n, 3, size, size)


def by_hand(members, weights, batch, age_pool="mixture"):
    """What the module docstring promises, computed from each member's own predict."""
    a = members[0].predict(batch)
    b = members[1].predict(F.interpolate(batch, size=(48, 48), mode="bilinear", antialias=True))
    logit = lambda p: torch.log(p / (1 - p))  # noqa: E731
    p_female = torch.sigmoid(weights[0] * logit(a["p_female"]) + weights[1] * logit(b["p_female"]))
    if age_pool == "product":  # the normalised weighted geometric mean
        probs = (a["age_probs"].clamp_min(1e-12) ** weights[0]) * (b["age_probs"].clamp_min(1e-12) ** weights[1])
        return p_female, probs / probs.sum(-1, keepdim=True)
    return p_female, weights[0] * a["age_probs"] + weights[1] * b["age_probs"]


@pytest.mark.parametrize("weights, age_pool", [(None, "mixture"), ([3.0, 1.0], "mixture"), ([3.0, 1.0], "product")])
def test_answers_are_the_members_combined(members, weights, age_pool):
    ensemble = Ensemble(list(members), weights, age_pool=age_pool).eval()
    w = [0.5, 0.5] if weights is None else [0.75, 0.25]
    assert ensemble.weights == w and ensemble.image_size == 64
    batch = faces()
    got = ensemble.predict(batch)
    p_female, probs = by_hand(members, w, batch, age_pool)
    torch.testing.assert_close(got["p_female"], p_female, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(got["age_probs"], probs, atol=1e-6, rtol=1e-4)
    ages = [m.predict(x)["age"] for m, x in zip(members, ensemble.member_inputs(batch))]
    if age_pool == "mixture":  # the age is the weighted mean of the members' ages
        torch.testing.assert_close(got["age"], w[0] * ages[0] + w[1] * ages[1], atol=1e-3, rtol=1e-4)
    else:  # the product's age lies between the members' here
        assert bool(((got["age"] - ages[0]) * (got["age"] - ages[1]) <= 1e-3).all())
    low, high = age_interval(probs)
    assert torch.equal(got["age_low"], low) and torch.equal(got["age_high"], high)
    torch.testing.assert_close(mean_age(got["age_probs"]), got["age"])


def test_the_ensembles_own_calibration_applies_on_top(members):
    ensemble = Ensemble(list(members)).eval()
    batch = faces()
    before = ensemble.predict(batch)["p_female"]
    ensemble.gender_temperature.fill_(2.0)
    after = ensemble.predict(batch)["p_female"]
    torch.testing.assert_close(torch.logit(after), torch.logit(before) / 2, atol=1e-4, rtol=1e-4)


def test_bad_members_or_weights_are_refused(members):
    with pytest.raises(ValueError, match="at least two"):
        Ensemble([members[0]])
    with pytest.raises(ValueError, match="one positive weight per member"):
        Ensemble(list(members), [1.0])
    with pytest.raises(ValueError, match="one positive weight per member"):
        Ensemble(list(members), [1.0, 0.0])
    with pytest.raises(ValueError, match="age_pool must be one of"):
        Ensemble(list(members), age_pool="median")


def test_fast_path_reads_as_the_reference(members):
    ensemble = Ensemble(list(members)).eval()
    fast = fast_model(ensemble, "fp32")
    assert isinstance(fast, FastEnsemble) and fast.image_size == 64
    batch = faces()
    expected, got = ensemble.predict(batch), fast.predict(batch)
    for key in ("p_female", "age", "age_probs"):
        torch.testing.assert_close(got[key], expected[key], atol=1e-4, rtol=1e-4)


def test_fast_path_takes_its_members_ready_fast_paths_of_the_same_precision(members):
    ensemble = Ensemble(list(members)).eval()
    first = fast_model(members[0], "fp32")
    other_precision = fast_model(members[1], "bf16")
    fast = fast_model(ensemble, "fp32", reuse=[other_precision, first, fast_model(copy.deepcopy(members[1]), "fp32")])
    assert fast.members[0] is first  # taken
    assert fast.members[1] is not other_precision and fast.members[1].precision == "fp32"  # built: bf16 is not fp32
    assert fast.members[1].model is members[1]  # (and not the fast path of another network of its kind)
    for key in ("p_female", "age"):
        torch.testing.assert_close(fast.predict(faces())[key], ensemble.predict(faces())[key], atol=1e-4, rtol=1e-4)


def test_grad_cam_is_the_librarys_with_each_members_layer(members):
    # The library reads one forward pass per target layer's hooks: members unmirrored, as it cannot mirror.
    plain = [member(0, 64, False, 1.7, 0.3, 0.8), member(1, 48, False, 0.9, -0.2, 1.3)]
    ensemble = Ensemble(plain).eval()
    batch = faces(3)
    predicted, cams = explain(ensemble, batch, ("gender", "age"))
    for head in ("gender", "age"):
        assert cams[head].shape == (3, 64, 64)
        reference = library_cams(ensemble, batch, targets_for(head, predicted))
        assert np.abs(cams[head] - reference).max() < 1e-4, head
        # Not one member's map alone: each member's layer contributes.
        alone = library_cams(plain[0], batch, targets_for(head, plain[0].predict(batch)))
        assert np.abs(cams[head] - alone).max() > 0.05, head
    # The fast wrapper (mirrors included) explains with the same readouts as it predicts.
    fast = fast_model(Ensemble(list(members)).eval(), "fp32")
    predicted, cams = explain(fast, batch, ("gender",))
    torch.testing.assert_close(predicted["p_female"], fast.predict(batch)["p_female"], atol=1e-5, rtol=1e-4)
    assert cams["gender"].shape == (3, 64, 64) and np.allclose(cams["gender"].max(axis=(1, 2)), 1, atol=1e-4)


def test_saves_and_loads_with_its_members_by_spec(members, tmp_path):
    for name, net in zip(("a", "b"), members):
        net.save_pretrained(tmp_path / "ens" / name)
    ensemble = Ensemble(list(members), [2.0, 1.0], specs=["a", "b"]).eval()
    ensemble.age_temperature.fill_(1.2)
    write_bundle(ensemble, tmp_path / "ens", half=True)
    files = {p.name for p in (tmp_path / "ens").iterdir()}
    assert {"config.json", "model.safetensors", "sha256"} <= files
    assert (tmp_path / "ens" / "model.safetensors").stat().st_size < 2000  # buffers only, no member weights
    loaded = load_model(str(tmp_path / "ens"))
    assert isinstance(loaded, Ensemble) and loaded.specs == ["a", "b"]
    assert loaded.weights == pytest.approx([2 / 3, 1 / 3]) and loaded.age_pool == "mixture"
    assert float(loaded.age_temperature) == pytest.approx(1.2)
    batch = faces()
    torch.testing.assert_close(loaded.predict(batch)["age_probs"], ensemble.predict(batch)["age_probs"])


def test_unusable_ensemble_folders_say_why(members, tmp_path):
    members[0].save_pretrained(tmp_path / "a")
    folder = tmp_path / "ens"
    Ensemble(list(members), specs=["../a", "../missing"]).save_pretrained(folder)
    with pytest.raises(ModelLoadError, match="a member of the ensemble .* does not load"):
        load_model(str(folder))
    (folder / "config.json").write_text(json.dumps({"arch": "ensemble", "members": "a"}))
    with pytest.raises(ModelLoadError, match="not a usable ensemble .*list of model specs"):
        load_model(str(folder))
    members[1].save_pretrained(tmp_path / "b")
    (folder / "config.json").write_text(json.dumps({"arch": "ensemble", "members": ["../a", "../b"]}))
    members[0].save_pretrained(tmp_path / "weights-of-a-net")  # a network's weights where the buffers belong
    (folder / "model.safetensors").write_bytes((tmp_path / "weights-of-a-net" / "model.safetensors").read_bytes())
    with pytest.raises(ModelLoadError, match="not a usable ensemble .*calibration"):
        load_model(str(folder))


def test_the_bundled_ensemble_is_the_two_shipped_models():
    ensemble = load_model("ensemble")
    assert [m.arch for m in ensemble.members] == ["vgg16", "scratch"] and ensemble.weights == [0.5, 0.5]
    assert ensemble.source.kind == "bundled" and "members:" in ensemble.source.note


def test_the_command_writes_a_loadable_ensemble_or_says_why(members, tmp_path, capsys):
    from model.ensemble import main
    for name, net in zip(("a", "b"), members):
        net.save_pretrained(tmp_path / name)
    out = tmp_path / "ens"
    assert main(["--member", str(tmp_path / "a"), "--member", str(tmp_path / "b"), "--weight", "1", "--weight", "3",
                 "--age-pool", "product", "--out", str(out)]) == 0
    loaded = load_model(str(out))
    assert loaded.weights == [0.25, 0.75] and loaded.age_pool == "product" and (out / "sha256").is_file()
    assert main(["--member", str(tmp_path / "a"), "--member", str(tmp_path / "nothing"), "--out", str(out)]) == 2
    assert "error:" in capsys.readouterr().out and load_model(str(out)).weights == [0.25, 0.75]  # left as it was


def test_the_apps_ensemble_is_made_of_its_other_two_models(members, tmp_path):
    from demo.ui_models import ModelBank
    specs = {}
    for name, net in zip(("vgg16", "scratch"), members):
        net.save_pretrained(tmp_path / name)
        specs[name] = str(tmp_path / name)
    asked = []

    def loader(spec):
        asked.append(spec)
        return load_model(spec)

    bank = ModelBank(loader, specs)
    ensemble = bank.get("ensemble").model
    assert isinstance(ensemble, Ensemble)
    # The very models of the other two choices (the bundled ensemble names its members "vgg16", "scratch"),
    # each loaded once, from the specs the app was given.
    assert ensemble.members[0] is bank.get("vgg16").model and ensemble.members[1] is bank.get("scratch").model
    assert asked == [specs["vgg16"], specs["scratch"]]
    assert "members:" in ensemble.source.note
    # and so are their fast paths (one bf16 copy of each network, not two)
    fast = bank.get("ensemble").fast
    assert fast.members[0] is bank.get("vgg16").fast and fast.members[1] is bank.get("scratch").fast
    result = bank.get("ensemble")(np.full((96, 96, 3), 128, np.uint8), detect=False, cam_heads=("gender",))
    assert len(result.faces) == 1 and result.faces[0].cams["gender"].shape == (64, 64)
