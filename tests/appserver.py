"""One running app for the whole test session: `python app.py` as a subprocess on a free local port.

Used as a pytest plugin (`pytest_plugins = ["appserver"]`), so the API tests and the browser tests share
one server. The models are seeded random-weight models written to a temporary folder and passed to the
app like any local model: the tests check behaviour, not accuracy, and do not depend on training.
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from demo.loadtest import free_port

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 90  # generous: CI machines can be busy; start-up is measured separately
PURGE_AFTER_S = 8  # the test app deletes uploads this soon (120 s in real use), so the purge can be tested


def write_random_models(folder: Path) -> dict[str, Path]:
    """Seeded random-weight models with the shipped models' configs (input size, mirrored reading) and, where a
    shipped model has int8 ranges, ranges of their own (from random faces), so the app runs the shipped path at
    the shipped cost; the scratch one also gets an eval/metrics.json (of random predictions, in
    train/evaluate.py's format) so the About tab's numbers are exercised."""
    import numpy as np
    import torch

    from model.hub import ASSETS_DIR, write_bundle
    from model.int8 import RANGES_FILE, calibrate
    from model.nets import build_model
    from train.metrics import all_metrics

    torch.manual_seed(0)
    models = {}
    for name in ("scratch", "vgg16"):
        model = build_model(**json.loads((ASSETS_DIR / name / "config.json").read_text())).eval()
        if (ASSETS_DIR / name / RANGES_FILE).is_file():
            size = model.image_size
            model.int8_ranges = calibrate(model.split_at_cam_layer()[0], [torch.randn(2, 3, size, size)], size)
        models[name] = write_bundle(model, folder / name)
    rng = np.random.default_rng(0)
    n = 400
    metrics = all_metrics(rng.random(n), rng.integers(0, 2, n), rng.uniform(1, 90, n), rng.integers(1, 90, n),
                          rng.integers(0, 5, n)) | {"split": "test"}
    (models["scratch"] / "eval").mkdir()
    (models["scratch"] / "eval" / "metrics.json").write_text(json.dumps(metrics))
    return models


def wait_until_serving(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"app exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url + "/config", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"app not serving after {START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="session")
def app_models(tmp_path_factory) -> dict[str, Path]:
    return write_random_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def app_temp_dir(tmp_path_factory) -> Path:
    """The app's TMPDIR: its private Gradio folder (uploads, generated images) is made inside."""
    return tmp_path_factory.mktemp("app-tmp")


@pytest.fixture(scope="session")
def app_purge_after_s() -> int:
    return PURGE_AFTER_S


@contextlib.contextmanager
def serving(options: list[str], temp_dir: Path, log: Path) -> Iterator[str]:
    """`python app.py --port <free port> *options`, offline, with `temp_dir` as its TMPDIR: its base URL while
    it runs (stopped on exit; its output goes to `log`)."""
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1",
           "TMPDIR": str(temp_dir)}
    command = [sys.executable, str(ROOT / "app.py"), "--port", str(port), *options]
    with open(log, "w") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(url, process, log)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="session")
def app_url(app_models, app_temp_dir, tmp_path_factory) -> str:
    """Base URL of the running app (torn down after the session)."""
    options = ["--scratch-spec", str(app_models["scratch"]), "--vgg16-spec", str(app_models["vgg16"]),
               "--model", "scratch",  # the default, named so the tests do not depend on it; they switch to VGG16
               "--purge-after", str(PURGE_AFTER_S)]
    with serving(options, app_temp_dir, tmp_path_factory.mktemp("app") / "app.log") as url:
        yield url


@pytest.fixture(scope="module")
def bundled_app_url(tmp_path_factory) -> str:
    """The app serving the bundled models (assets/models), for the README's screenshot: the random-weight
    models of `app_url` would show made-up answers. Started only for a test that asks for it."""
    models = ROOT / "assets" / "models"
    options = ["--scratch-spec", str(models / "scratch"), "--vgg16-spec", str(models / "vgg16")]
    folder = tmp_path_factory.mktemp("bundled-app")
    with serving(options, folder, folder / "app.log") as url:
        yield url
