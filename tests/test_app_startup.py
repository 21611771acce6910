"""`python app.py` started and stopped as a user, Docker or Spaces does: a default model that cannot load stops
it with one sentence, and SIGTERM (what `kill` and container runtimes send) removes its private temporary
folder, uploads included."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from appserver import wait_until_serving
from demo.loadtest import free_port
from demo.ui_models import CHOICES
from model.hub import DEFAULT_ARCH

ROOT = Path(__file__).resolve().parents[1]
# The app reads these too: a developer's settings must not change what is tested.
APP_VARIABLES = ("FACE_APP_MODEL", "FACE_SCRATCH_SPEC", "FACE_VGG16_SPEC", "GRADIO_SERVER_PORT", "GRADIO_SHARE")


def app_env(temp: Path) -> dict[str, str]:
    """TMPDIR is where app.py makes its private face-app-* folder."""
    env = {k: v for k, v in os.environ.items() if k not in APP_VARIABLES}
    return {**env, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "TMPDIR": str(temp)}


def test_a_default_model_that_cannot_load_stops_the_app_with_one_sentence(tmp_path):
    empty, temp = tmp_path / "no-model", tmp_path / "tmp"
    empty.mkdir()
    temp.mkdir()
    done = subprocess.run([sys.executable, str(ROOT / "app.py"), "--port", str(free_port()),
                           f"--{DEFAULT_ARCH}-spec", str(empty)], cwd=ROOT, env=app_env(temp), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines()[-1] == (f"The {CHOICES[DEFAULT_ARCH].label} model could not be loaded: {empty} has "
                                            "no config.json (a model needs config.json and model.safetensors)")
    assert "Traceback" not in done.stderr and "Serving on" not in done.stdout
    assert list(temp.iterdir()) == []  # the private folder made at start is removed on this exit too


def test_sigterm_removes_the_temporary_folder_with_its_uploads(tmp_path, model_dir):
    no_model, temp = tmp_path / "no-model", tmp_path / "tmp"
    no_model.mkdir()  # VGG16 is preloaded after start: failing at once keeps the test light
    temp.mkdir()
    port, log = free_port(), tmp_path / "app.log"
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port), "--model", "scratch",
                                    "--scratch-spec", str(model_dir), "--vgg16-spec", str(no_model)],
                                   cwd=ROOT, env=app_env(temp), stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_serving(url, process, log)
        [private] = temp.glob("face-app-*")
        with open(ROOT / "assets" / "examples" / "three_portraits.jpg", "rb") as photo:
            [stored] = httpx.post(f"{url}/gradio_api/upload", files={"files": photo}, timeout=60).json()
        assert Path(stored).is_file() and Path(stored).is_relative_to(private)
        # A request in flight (seconds of detection and model here), and the preload of the model may still run:
        # exiting with threads inside torch or MediaPipe could abort in C++ or print a traceback (see app.py).
        payload = {"data": [{"path": stored, "meta": {"_type": "gradio.FileData"}}, "scratch", 0.5, True, "auto"]}
        assert httpx.post(f"{url}/gradio_api/call/predict", json=payload, timeout=60).json()["event_id"]
        time.sleep(0.5)

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, log.read_text()[-3000:]
        assert not private.exists()
        assert "Traceback" not in log.read_text() and "terminate called" not in log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
