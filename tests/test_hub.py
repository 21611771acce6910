"""Publishing to and loading from the Hub, against a local Hub-compatible server (tests/hub_server.py).

How the real huggingface_hub client is pointed at the local server:
- huggingface_hub reads HF_ENDPOINT, HF_HUB_OFFLINE and HF_HUB_CACHE once, when it is imported, into
  `huggingface_hub.constants`; conftest.py has already set HF_HUB_OFFLINE=1 and the library is loaded by then.
  The in-process tests therefore monkeypatch those constants (the code paths used here, HfApi(),
  hf_hub_download and the offline check, read them at call time), which is fast and undone after each test.
- test_cli_end_to_end runs `python -m train.push` in a fresh interpreter with the real environment variables,
  to prove the documented `HF_ENDPOINT=...` usage works as such.
"""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from huggingface_hub import CommitOperationAdd, HfApi, ModelCard, constants

from hub_server import HubServer
from model.hub import ModelLoadError, load_model, write_bundle
from model.int8 import RANGES_FILE, calibrate, load_ranges, save_ranges
from model.hub import main as hub_cli
from model.nets import ScratchNet
from test_card import make_run
from train.push import push_run

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "hf_localtesttoken0123456789"  # sent to the local server only; must never end up in logs or files
REPO = "tester/age-gender"


def point_client_at(monkeypatch, endpoint: str, cache: Path, offline: bool = False) -> None:
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(cache / "no-stored-token"))  # ignore a developer's login


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A running local Hub, with this process's huggingface_hub client pointed at it (online)."""
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.delenv("FACE_MODEL", raising=False)
    monkeypatch.delenv("FACE_MODEL_REVISION", raising=False)
    with HubServer() as server:
        point_client_at(monkeypatch, server.url, tmp_path / "hf-cache")
        yield server


def faces() -> torch.Tensor:
    return torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(42))


def predictions(model) -> dict[str, torch.Tensor]:
    return model.predict(faces())


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def trained(run: Path) -> ScratchNet:
    return ScratchNet.from_pretrained(run / "model", strict=True)


def test_push_then_pull_by_repo_id_and_pinned_revision(hub, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    first, second = make_run(tmp_path, seed=0), make_run(tmp_path, seed=1)
    commit1 = push_run(first, REPO)
    commit2 = push_run(second, REPO)
    assert commit1.oid != commit2.oid

    latest = load_model(REPO)
    assert_same(predictions(latest), predictions(trained(second)))
    assert not latest.training and latest.arch == "scratch" and latest.int8_ranges is None  # none published
    assert (latest.source.kind, latest.source.location, latest.source.revision) == ("hub", REPO, commit2.oid)
    assert str(latest.source) == f"model: scratch from Hub ({REPO}@{commit2.oid[:12]})"

    for pinned in (load_model(f"{REPO}@{commit1.oid}"), load_model(REPO, revision=commit1.oid)):
        assert pinned.source.revision == commit1.oid
        assert_same(predictions(pinned), predictions(trained(first)))
    assert not torch.equal(predictions(latest)["age"], predictions(trained(first))["age"])  # really two models

    # What was published: weights, config, card, split, evaluation, and nothing pickled.
    files = hub.files(REPO)
    assert {"README.md", "config.json", "model.safetensors", "split.csv", "train_config.json", "history.csv",
            "curves.png", "data_report.json", "eval/metrics.json", "eval/report.md", "eval/confusion.png",
            "eval/reliability.png"} <= set(files)
    assert files["split.csv"] == (second / "split.csv").read_bytes()
    assert not [name for name in files if name.endswith((".bin", ".pt", ".pth", ".pkl", ".ckpt"))]
    card = ModelCard(files["README.md"].decode())
    assert card.data.license == "cc-by-nc-4.0" and card.data.eval_results[0].metric_value == 0.875
    # Regular uploads only (the server would have refused an LFS commit), no LFS batch or Xet calls.
    assert not [path for _, path, _ in hub.requests if "lfs" in path or "xet" in path]

    # The token went to the Hub and nowhere else.
    assert ("POST", "/api/repos/create", f"Bearer {TOKEN}") in hub.requests
    assert TOKEN not in caplog.text
    assert not [name for name, content in files.items() if TOKEN.encode() in content]
    # One log line per load saying where the model came from.
    assert f"model: scratch from Hub ({REPO}@{commit1.oid[:12]})" in caplog.messages


def test_ranges_are_published_and_pulled_with_the_weights(hub, tmp_path):
    """int8.json (model/int8.py) is optional: published where a run has one, downloaded where a repo has one."""
    run = make_run(tmp_path)
    net = ScratchNet.from_pretrained(run / "model").eval()
    ranges = calibrate(net.split_at_cam_layer()[0], [faces()], net.image_size)
    save_ranges(run / "model" / RANGES_FILE, ranges, "scratch", {"faces": 5})
    push_run(run, REPO)
    assert RANGES_FILE in hub.files(REPO)
    pulled = load_model(REPO)
    assert pulled.source.kind == "hub" and pulled.int8_ranges == ranges == load_ranges(run / "model" / RANGES_FILE,
                                                                                       "scratch")[0]
    assert pulled.int8_about == {"faces": 5}
    (run / "model" / RANGES_FILE).unlink()
    push_run(run, REPO)  # a new commit without it: the model runs its float body
    assert RANGES_FILE not in hub.files(REPO) and load_model(REPO).int8_ranges is None


def test_branch_revision_and_private_repo(hub, tmp_path, monkeypatch):
    push_run(make_run(tmp_path, seed=0), REPO, private=True)
    commit = push_run(make_run(tmp_path, seed=1), REPO, private=True, revision="experiment")
    assert hub.repos[REPO].private
    model = load_model(f"{REPO}@experiment")
    assert model.source.revision == commit.oid
    assert_same(predictions(model), predictions(trained(tmp_path / "run1")))
    assert_same(predictions(load_model(REPO)), predictions(trained(tmp_path / "run0")))  # main untouched

    monkeypatch.delenv("HF_TOKEN")  # a private repo is invisible without a token
    with pytest.raises(ModelLoadError, match="no model repo 'tester/age-gender'.*HF_TOKEN"):
        load_model(REPO, cache_dir=tmp_path / "empty-cache")


def test_offline_mode_serves_from_the_hub_cache(hub, tmp_path, monkeypatch, caplog):
    commit = push_run(make_run(tmp_path), REPO)
    online = load_model(REPO)

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # what HF_HUB_OFFLINE=1 sets at import
    requests_before = len(hub.requests)
    caplog.set_level(logging.INFO)
    offline = load_model(REPO)
    assert len(hub.requests) == requests_before  # not a single HTTP request
    assert (offline.source.kind, offline.source.revision) == ("hub-cache", commit.oid)
    assert f"model: scratch from Hub cache ({REPO}@{commit.oid[:12]})" in caplog.messages
    assert_same(predictions(offline), predictions(online))
    assert load_model(f"{REPO}@{commit.oid}").source.kind == "hub-cache"  # pinned by sha, also offline

    with pytest.raises(ModelLoadError, match="offline mode.*not in the Hub cache"):
        load_model("tester/never-downloaded", assets_dir=tmp_path / "no-assets")


def test_missing_repo_revision_or_file_is_a_clear_error(hub, tmp_path):
    with pytest.raises(ModelLoadError, match=r"^no model repo 'nobody/missing' on the Hub"):
        load_model("nobody/missing")
    push_run(make_run(tmp_path), REPO)
    with pytest.raises(ModelLoadError, match="has no revision 'v9'"):
        load_model(f"{REPO}@v9")

    api = HfApi()
    api.create_repo("tester/config-only")
    api.create_commit("tester/config-only", [CommitOperationAdd("config.json", b'{"arch": "scratch"}')],
                      commit_message="no weights")
    with pytest.raises(ModelLoadError, match="needs config.json and model.safetensors"):
        load_model("tester/config-only")
    with pytest.raises(ModelLoadError, match="not a model directory, an architecture name"):
        load_model("not-a-dir-nor-a-repo")


def test_corrupt_weights_on_the_hub_are_a_clear_error(hub, tmp_path):
    run = make_run(tmp_path)
    weights = (run / "model" / "model.safetensors").read_bytes()
    api = HfApi()
    api.create_repo("tester/truncated")
    api.create_commit("tester/truncated", [
        CommitOperationAdd("config.json", str(run / "model" / "config.json")),
        CommitOperationAdd("model.safetensors", weights[: len(weights) // 2]),
    ], commit_message="half a file")
    with pytest.raises(ModelLoadError, match="model.safetensors is corrupt or truncated"):
        load_model("tester/truncated")


def test_wrong_architecture_or_config_is_a_clear_error(tmp_path):
    other = tmp_path / "other"
    ScratchNet(widths=[4, 16], image_size=32, hidden=8).save_pretrained(other)
    mixed = tmp_path / "mixed"  # config of one model, weights of another
    ScratchNet(widths=[4, 8], image_size=32, hidden=8).save_pretrained(mixed)
    (mixed / "model.safetensors").write_bytes((other / "model.safetensors").read_bytes())
    with pytest.raises(ModelLoadError, match="does not hold scratch weights for this config"):
        load_model(str(mixed))

    (mixed / "config.json").write_text('{"arch": "resnet50"}')
    with pytest.raises(ModelLoadError, match="names architecture 'resnet50'"):
        load_model(str(mixed))
    with pytest.raises(ModelLoadError, match="has no config.json"):
        load_model(str(tmp_path))


def test_local_directory_comes_first(tmp_path, caplog):
    run = make_run(tmp_path)
    caplog.set_level(logging.INFO)
    model = load_model(str(run / "model"))
    assert model.source.kind == "local"
    assert caplog.messages == [f"model: scratch from local directory ({run / 'model'})"]
    assert_same(predictions(model), predictions(trained(run)))
    assert model.gender_temperature.item() == 1.5  # the calibration travels with the weights


@pytest.fixture
def bundled(tmp_path):
    """assets/models/ with a float16 scratch bundle, as the repo ships its default weights."""
    torch.manual_seed(3)
    model = ScratchNet(widths=[4, 8], image_size=32, hidden=8).eval()
    write_bundle(model, tmp_path / "assets" / "scratch", half=True)
    return tmp_path / "assets", model


def test_bundled_weights_when_the_hub_is_unreachable(bundled, tmp_path, monkeypatch):
    assets, original = bundled
    with HubServer() as gone:
        dead = gone.url  # a port nothing listens on any more
    point_client_at(monkeypatch, dead, tmp_path / "hf-cache")
    monkeypatch.setenv("FACE_MODEL", "scratch")
    monkeypatch.setenv("FACE_MODEL_ASSETS", str(assets))

    started = time.monotonic()
    model = load_model()
    assert time.monotonic() - started < 5  # no retry back-off before falling back
    assert model.source.kind == "bundled"
    assert str(model.source) == (f"model: scratch from bundled weights ({assets / 'scratch'}; Hub unreachable, "
                                 "face-age-gender/age-gender-scratch not cached)")
    assert all(p.dtype == torch.float32 for p in model.state_dict().values() if p.is_floating_point())
    expected, got = predictions(original), predictions(model)
    torch.testing.assert_close(got["p_female"], expected["p_female"], atol=2e-3, rtol=0)  # float16 storage
    torch.testing.assert_close(got["age"], expected["age"], atol=0.2, rtol=0)

    # Offline mode goes straight to the bundle too.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert load_model("scratch", assets_dir=assets).source.kind == "bundled"


def test_unpublished_default_repo_falls_back_to_the_bundle(hub, bundled):
    """An architecture name on a Hub that answers but has no project repo (a mirror, before publishing):
    the app must still start on its bundled weights, and say why."""
    assets, _ = bundled
    model = load_model("scratch", assets_dir=assets)
    assert model.source.kind == "bundled" and "not published on this Hub" in str(model.source)
    with pytest.raises(ModelLoadError, match="no model repo 'someone/missing'"):
        load_model("someone/missing", assets_dir=assets)  # an explicit repo id never falls back silently


def test_corrupt_bundled_weights_are_refused(bundled, monkeypatch):
    assets, _ = bundled
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    weights = assets / "scratch" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])  # truncated copy
    with pytest.raises(ModelLoadError, match="bundled .*model.safetensors is missing, corrupt or truncated"):
        load_model("scratch", assets_dir=assets)
    (assets / "scratch" / "sha256").unlink()
    with pytest.raises(ModelLoadError, match="no sha256 file"):
        load_model("scratch", assets_dir=assets)


def test_cli_end_to_end_with_environment_variables(tmp_path, monkeypatch, capsys):
    """`python -m train.push` in a fresh interpreter configured only by HF_* variables, then the loading CLI."""
    run = make_run(tmp_path)
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf-home"), "HF_HUB_OFFLINE": "0", "HF_TOKEN": TOKEN,
           "HF_HUB_DISABLE_PROGRESS_BARS": "1", "PYTHONPATH": str(ROOT)}
    with HubServer() as server:
        done = subprocess.run([sys.executable, "-m", "train.push", "--run", str(run), "--repo-id", "cli/model"],
                              cwd=ROOT, env={**env, "HF_ENDPOINT": server.url}, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        assert TOKEN not in done.stdout + done.stderr
        sha = server.repos["cli/model"].refs["main"]
        assert f"load it pinned with: cli/model@{sha}" in done.stdout

        # `python -m model.hub` in-process (another interpreter start would cost seconds of torch imports).
        point_client_at(monkeypatch, server.url, tmp_path / "hf-home" / "hub")
        assert hub_cli(["cli/model"]) == 0
        assert capsys.readouterr().out == f"model: scratch from Hub (cli/model@{sha[:12]})\n"
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert hub_cli(["cli/model"]) == 0
    assert capsys.readouterr().out == f"model: scratch from Hub cache (cli/model@{sha[:12]})\n"
    monkeypatch.setenv("FACE_MODEL_ASSETS", str(tmp_path / "no-bundle"))  # else the shipped default serves
    assert hub_cli(["nobody/missing"]) == 1
    assert capsys.readouterr().out.startswith("error: cannot get nobody/missing (offline mode)")


# ---------------------------------------------------------------- refusals, outages and bad files (issue 25)

def test_gated_repo_is_a_clear_error_even_with_bundled_weights(hub, tmp_path, bundled):
    """Gated is an answer from the Hub, not an outage: the default repo must not silently fall back either."""
    assets, _ = bundled
    default_repo = "face-age-gender/age-gender-scratch"
    push_run(make_run(tmp_path), default_repo)
    hub.repos[default_repo].gated = True
    with pytest.raises(ModelLoadError, match=f"^{default_repo} is gated: accept its terms.*hf auth login"):
        load_model("scratch", assets_dir=assets)


def test_hub_refusal_is_an_error_but_a_hub_outage_falls_back(hub, tmp_path, bundled):
    assets, _ = bundled
    commit = push_run(make_run(tmp_path), REPO)
    online = load_model(REPO)  # now in the Hub cache

    hub.fail_with = 403  # a 4xx is the Hub's answer about this repo: cached files must not hide it
    with pytest.raises(ModelLoadError, match=f"^the Hub refused {REPO}: 403 Forbidden$"):
        load_model(REPO, assets_dir=assets)

    hub.fail_with = 500  # a 5xx is the Hub being down: serve what is cached, else the bundle
    cached = load_model(REPO, assets_dir=assets)
    assert (cached.source.kind, cached.source.revision) == ("hub-cache", commit.oid)
    assert_same(predictions(cached), predictions(online))
    bundle = load_model("scratch", assets_dir=assets)
    assert bundle.source.kind == "bundled"
    assert bundle.source.note == "Hub unavailable, face-age-gender/age-gender-scratch not cached"


def test_unreachable_hub_serves_the_cached_files(hub, tmp_path):
    commit = push_run(make_run(tmp_path), REPO)
    online = load_model(REPO)
    hub.stop()  # not offline mode: the client tries the Hub and cannot connect
    started = time.monotonic()
    cached = load_model(REPO, assets_dir=tmp_path / "no-assets")
    assert time.monotonic() - started < 5  # no retry back-off before using the cache
    assert (cached.source.kind, cached.source.revision) == ("hub-cache", commit.oid)
    assert str(cached.source) == f"model: scratch from Hub cache ({REPO}@{commit.oid[:12]})"
    assert_same(predictions(cached), predictions(online))
    with pytest.raises(ModelLoadError, match=r"^cannot get tester/never-downloaded \(Hub unreachable\)"):
        load_model("tester/never-downloaded", assets_dir=tmp_path / "no-assets")


def test_revision_from_the_environment_and_what_overrides_it(hub, tmp_path, monkeypatch):
    first = push_run(make_run(tmp_path, seed=0), REPO)
    second = push_run(make_run(tmp_path, seed=1), REPO)
    monkeypatch.setenv("FACE_MODEL_REVISION", first.oid)
    assert load_model(REPO).source.revision == first.oid
    assert load_model(f"{REPO}@main").source.revision == second.oid  # the spec's @revision wins
    assert load_model(REPO, revision="main").source.revision == second.oid  # and so does the argument


@pytest.mark.parametrize("config, message", [
    ('{"arch": "scratch"', "is not a model config"),  # truncated JSON
    ('{"widths": [4, 8]}', "is not a model config"),  # no arch
    ("[1, 2]", "is not a model config"),
    ('{"arch": ["scratch"]}', "names architecture \\['scratch'\\]"),  # was an unhashable-type TypeError
    ('{"arch": "scratch", "widths": "wide", "image_size": 32, "hidden": 8}', "does not fit the scratch"),
])
def test_bad_config_json_is_a_clear_error(tmp_path, config, message):
    folder = tmp_path / "model"
    ScratchNet(widths=[4, 8], image_size=32, hidden=8).save_pretrained(folder)
    (folder / "config.json").write_text(config)
    with pytest.raises(ModelLoadError, match=f"^{folder / 'config.json'} {message}"):
        load_model(str(folder))


def test_sha256_list_that_misses_a_file_or_is_malformed_is_refused(bundled, monkeypatch):
    assets, _ = bundled
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    listing = assets / "scratch" / "sha256"
    lines = listing.read_text().splitlines()
    listing.write_text(next(line for line in lines if line.endswith("config.json")) + "\n")
    with pytest.raises(ModelLoadError, match="sha256 does not list model.safetensors$"):
        load_model("scratch", assets_dir=assets)
    listing.write_text("\n".join(lines + ["0123abcd"]) + "\n")  # a line with no file name
    with pytest.raises(ModelLoadError, match="sha256 is not a sha256 list"):  # was a bare dict() ValueError
        load_model("scratch", assets_dir=assets)
