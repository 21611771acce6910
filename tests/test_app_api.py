"""The app's named API endpoints, called with gradio_client against the running app (tests/appserver.py)."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

pytest_plugins = ["appserver"]

EXAMPLES = Path(__file__).resolve().parents[1] / "assets" / "examples"
RECORD_KEYS = {"index", "box", "p_female", "gender", "age", "age_low", "age_high", "det_score"}


@pytest.fixture(scope="module")
def client(app_url) -> Client:
    return Client(app_url, verbose=False)


def predict(client: Client, path: Path, model: str = "scratch", min_score: float = 0.5) -> dict:
    return client.predict(handle_file(str(path)), model, min_score, True, api_name="/predict")


def test_api_lists_the_named_endpoints(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/predict", "/annotate"} <= set(endpoints)


def test_photo_with_several_faces(client):
    out = predict(client, EXAMPLES / "three_portraits.jpg")
    width, height = Image.open(EXAMPLES / "three_portraits.jpg").size
    assert out["model"] == "scratch"
    assert len(out["faces"]) >= 2, out
    for i, face in enumerate(out["faces"]):
        assert set(face) >= RECORD_KEYS
        assert face["index"] == i
        assert 0.0 <= face["p_female"] <= 1.0
        assert face["gender"] in ("female", "male")
        assert face["gender"] == ("female" if face["p_female"] >= 0.5 else "male")
        assert 0 <= face["age_low"] <= face["age"] <= face["age_high"] <= 100
        assert 0.5 <= face["det_score"] <= 1.0  # the default threshold filters weaker detections
        x, y, w, h = face["box"]
        assert w > 20 and h > 20 and -w / 2 < x < width and -h / 2 < y < height
    assert out["timings_ms"] and all(v >= 0 for v in out["timings_ms"].values())


def test_threshold_and_model_are_honoured(client):
    strict = predict(client, EXAMPLES / "three_portraits.jpg", model="vgg16", min_score=0.95)
    loose = predict(client, EXAMPLES / "three_portraits.jpg", model="vgg16", min_score=0.3)
    assert strict["model"] == loose["model"] == "vgg16"
    assert all(face["det_score"] >= 0.95 for face in strict["faces"])
    assert len(loose["faces"]) >= len(strict["faces"])


def test_annotate_returns_the_annotated_image_and_the_same_faces(client):
    image, out = client.predict(handle_file(str(EXAMPLES / "astronaut.jpg")), "scratch", 0.5, True,
                                api_name="/annotate")
    assert Image.open(image).size == Image.open(EXAMPLES / "astronaut.jpg").size
    assert len(out["faces"]) == 1
    assert out == predict(client, EXAMPLES / "astronaut.jpg") | {"timings_ms": out["timings_ms"]}


def test_no_face_is_an_empty_list_with_a_note(client):
    out = predict(client, EXAMPLES / "rocket.jpg")
    assert out["faces"] == []
    assert any("face" in note.lower() for note in out["notes"]), out["notes"]


def test_bad_file_gives_a_clean_error_and_the_server_keeps_serving(client, tmp_path):
    bad = tmp_path / "holiday.jpg"
    bad.write_text("this is not a picture")
    with pytest.raises(AppError) as error:
        predict(client, bad)
    message = str(error.value)
    assert "not an image" in message
    assert "Traceback" not in message and "File \"" not in message
    assert len(predict(client, EXAMPLES / "astronaut.jpg")["faces"]) == 1  # still serving


def test_unknown_model_is_a_clean_error(client):
    with pytest.raises(AppError, match="Unknown model 'resnet9000': choose one of scratch, vgg16"):
        predict(client, EXAMPLES / "astronaut.jpg", model="resnet9000")


def test_uploads_are_purged_soon(client, app_temp_dir, app_purge_after_s, tmp_path):
    selfie = tmp_path / "my_selfie.jpg"
    Image.open(EXAMPLES / "grace_hopper.jpg").crop((50, 50, 450, 500)).save(selfie)
    assert len(predict(client, selfie)["faces"]) == 1
    deadline = time.monotonic() + 4 * app_purge_after_s
    while list(app_temp_dir.rglob("my_selfie.jpg")) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert list(app_temp_dir.rglob("my_selfie.jpg")) == []
    # ... but Gradio's copies of the examples stay, or clicking an example would break.
    assert len([p for p in app_temp_dir.rglob("*.jpg") if (EXAMPLES / p.name).is_file()]) == 4


def test_the_same_file_from_eight_clients_at_once(app_url, tmp_path):
    """Identical uploads share one stored path on the server: no request may lose it to another."""
    photo = tmp_path / "group.jpg"
    photo.write_bytes((EXAMPLES / "three_portraits.jpg").read_bytes())

    def client_run(_):
        own = Client(app_url, verbose=False)
        return [len(predict(own, photo)["faces"]) for _ in range(4)]

    with ThreadPoolExecutor(8) as pool:
        counts = [n for run in pool.map(client_run, range(8)) for n in run]
    assert len(counts) == 32 and len(set(counts)) == 1 and counts[0] >= 2


def test_explain_returns_each_faces_cam_overlays(client, tmp_path):
    gallery, out = client.predict(image=handle_file(str(EXAMPLES / "three_portraits.jpg")), model="scratch",
                                  api_name="/explain")
    assert len(out["faces"]) >= 2 and len(gallery) == 2 * len(out["faces"])
    for face in out["faces"]:
        assert set(face) >= RECORD_KEYS
        for head in ("gender", "age"):
            item = gallery[face["cams"][head]]
            assert item["caption"] == f"#{face['index'] + 1} {head}"
            overlay = np.asarray(Image.open(item["image"]).convert("RGB"))
            assert overlay.shape == (200, 200, 3) and overlay.std() > 10  # an aligned face with a heat map
    gender, age = (np.asarray(Image.open(gallery[i]["image"]), np.float32) for i in (0, 1))
    assert np.abs(gender - age).mean() > 1  # two heads, two different maps


def test_detector_mode_is_honoured(client):
    short = client.predict(image=handle_file(str(EXAMPLES / "three_portraits.jpg")), detector="short",
                           api_name="/predict")
    auto = client.predict(image=handle_file(str(EXAMPLES / "three_portraits.jpg")), detector="auto",
                          api_name="/predict")
    assert len(auto["faces"]) >= len(short["faces"])
    with pytest.raises(AppError, match="detector must be one of auto, full, short, both"):
        client.predict(image=handle_file(str(EXAMPLES / "astronaut.jpg")), detector="magic", api_name="/predict")


BAD_INPUTS = {  # file content -> the app's own sentence (demo/imageio.py), never PIL's wording
    "empty": (b"", "The file is empty (0 bytes)"),
    "text": (b"this is not a picture", "This file is not an image (or not a format we can read)"),
    "truncated": (None, "The image file is damaged or truncated"),
    "bomb": (None, "The image is too large"),
    "tiny": (None, "The image is too small (1x1 px)"),
}


def bad_file(kind: str, folder: Path) -> Path:
    data, _ = BAD_INPUTS[kind]
    path = folder / f"{kind}.png"
    if kind == "truncated":
        whole = (EXAMPLES / "grace_hopper.jpg").read_bytes()
        path = path.with_suffix(".jpg")
        path.write_bytes(whole[:len(whole) // 3])
    elif kind == "bomb":  # 20000 x 20000 px of one colour: a few hundred kB on disk
        Image.new("L", (20_000, 20_000)).save(path, optimize=True)
    elif kind == "tiny":
        Image.new("RGB", (1, 1), "white").save(path)
    else:
        path.write_bytes(data)
    return path


@pytest.mark.parametrize("kind", list(BAD_INPUTS))
def test_bad_inputs_get_the_apps_sentence_and_the_next_request_works(client, tmp_path, kind):
    with pytest.raises(AppError) as error:
        predict(client, bad_file(kind, tmp_path))
    message = str(error.value)
    assert BAD_INPUTS[kind][1] in message
    assert "Traceback" not in message and "PIL" not in message and "cannot identify" not in message
    assert len(predict(client, EXAMPLES / "astronaut.jpg")["faces"]) == 1


def test_model_load_failure_is_one_clean_sentence_and_not_retried_per_request():
    import gradio as gr

    from demo.ui import run
    from demo.ui_models import ModelBank, ModelLoadError

    calls = []

    def broken_loader(spec):
        calls.append(spec)
        raise ModelLoadError(f"{spec}/model.safetensors is corrupt or truncated")

    bank = ModelBank(broken_loader, {"vgg16": "/models/vgg16"})
    for _ in range(2):
        with pytest.raises(gr.Error) as error:
            run(bank, "vgg16", EXAMPLES / "astronaut.jpg")
        assert error.value.message == ("The VGG16 · more accurate model could not be loaded: "
                                       "/models/vgg16/model.safetensors is corrupt or truncated")
    assert calls == ["/models/vgg16"]
