"""The app's named API endpoints, called with gradio_client against the running app (tests/appserver.py)."""
from __future__ import annotations

from pathlib import Path

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
    with pytest.raises(AppError, match="resnet9000 is not in the list of choices"):
        predict(client, EXAMPLES / "astronaut.jpg", model="resnet9000")


def test_uploads_are_deleted_once_read(client, app_temp_dir, tmp_path):
    selfie = tmp_path / "my_selfie.jpg"
    Image.open(EXAMPLES / "grace_hopper.jpg").crop((50, 50, 450, 500)).save(selfie)
    assert len(predict(client, selfie)["faces"]) == 1
    assert [p for p in app_temp_dir.rglob("my_selfie.jpg")] == []
    # ... but Gradio's copies of the examples stay, or clicking an example would break.
    assert len([p for p in app_temp_dir.rglob("*.jpg") if (EXAMPLES / p.name).is_file()]) == 4


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
