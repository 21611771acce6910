"""The app's named API endpoints, called with gradio_client against the running app (tests/appserver.py),
and the demo/ui.py handlers behind them and the UI, called directly."""
from __future__ import annotations

import base64
import io
import json
import os
import shutil
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import httpx
import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from demo import render
from demo.pipeline import Face, Result
from demo.ui import NOT_UPLOADED, analyze, api_result, face_at, face_views, on_frame, upload_source, uploaded_path
from demo.ui_age import INTERVAL_PART
from demo.ui_models import ModelBank
from model.fast import float_precision, resolve_precision
from model.hub import load_model

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
    assert set(endpoints) == {"/predict", "/annotate", "/explain", "/video"}  # the public API, nothing more


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
        probs = np.array(face["age_probs"])  # the whole distribution: P(age) for 0-100 y, its mean the age
        assert len(probs) == 101 and abs(probs.sum() - 1) < 1e-3 and abs(probs @ np.arange(101) - face["age"]) < 0.1
    assert out["timings_ms"] and all(v >= 0 for v in out["timings_ms"].values())
    assert out["precision"] == float_precision()  # the scratch CNN ships no int8 ranges: bf16 or fp32 by CPU


def test_threshold_and_model_are_honoured(client, app_models):
    strict = predict(client, EXAMPLES / "three_portraits.jpg", model="vgg16", min_score=0.95)
    loose = predict(client, EXAMPLES / "three_portraits.jpg", model="vgg16", min_score=0.3)
    assert strict["model"] == loose["model"] == "vgg16"
    # the server's VGG16 has int8 ranges where the shipped one does: int8 on CPUs with int8 dot products
    assert strict["precision"] == resolve_precision(None, load_model(str(app_models["vgg16"])))
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
    """Identical uploads share one stored path on the server: no request may lose it to another, and each
    client downloads its whole annotated image while the others' identical answers are written."""
    photo = tmp_path / "group.jpg"
    photo.write_bytes((EXAMPLES / "three_portraits.jpg").read_bytes())

    def client_run(_):
        own = Client(app_url, verbose=False, download_files=False)
        answers = []
        for _ in range(2):  # the second round overlaps others' first
            image, record = own.predict(handle_file(str(photo)), "scratch", api_name="/annotate")
            data = httpx.get(image["url"], timeout=30).content  # at once, as a browser does
            pixels = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
            answers.append((len(record["faces"]), pixels.shape))
        return answers

    with ThreadPoolExecutor(8) as pool:
        answers = [a for run in pool.map(client_run, range(8)) for a in run]
    assert len(answers) == 16 and len(set(answers)) == 1 and answers[0][0] >= 2, answers


def test_an_answer_is_never_rewritten_by_the_next_one(app_url):
    """Two requests with the same answer get files of their own: Gradio stores an image it is handed as an
    array under a hash of its bytes and rewrites it in place, so the second answer emptied the file a browser
    could still be reading for the first (demo/ui_files.py)."""
    client = Client(app_url, verbose=False, download_files=False)
    call = lambda: client.predict(handle_file(str(EXAMPLES / "three_portraits.jpg")), "scratch",  # noqa: E731
                                  api_name="/annotate")[0]["path"]
    first = Path(call())
    written = first.stat().st_mtime_ns, first.read_bytes()
    time.sleep(0.05)  # a rewrite would show in the file's time
    second = Path(call())
    assert second != first
    assert (first.stat().st_mtime_ns, first.read_bytes()) == written


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
    # the short-range model finds the nearest portrait only; auto finds all three
    assert (len(auto["faces"]), len(short["faces"])) == (3, 1)
    with pytest.raises(AppError, match="detector must be one of auto, full, short, both"):
        client.predict(image=handle_file(str(EXAMPLES / "astronaut.jpg")), detector="magic", api_name="/predict")


BAD_INPUTS = {  # file content -> the app's own sentence (model/imageio.py), never PIL's wording
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
        assert error.value.message == ("The VGG16 · more accurate, slower model could not be loaded: "
                                       "/models/vgg16/model.safetensors is corrupt or truncated")
    assert calls == ["/models/vgg16"]


# ---------------------------------------------------------------- files a request names (issue 20)

API_NAMES = ["/predict", "/annotate", "/explain"]
FILE_DATA = {"_type": "gradio.FileData"}


@pytest.fixture
def upload_folder(app_temp_dir) -> Path:
    """The running app's Gradio upload folder (app.py makes it inside TMPDIR)."""
    [folder] = app_temp_dir.glob("face-app-*")
    return folder


@pytest.fixture
def outside(tmp_path) -> Path:
    """A real photo on the server's disk, outside the app's upload folder."""
    photo = tmp_path / "elsewhere" / "photo.jpg"
    photo.parent.mkdir()
    shutil.copy(EXAMPLES / "astronaut.jpg", photo)
    return photo


@pytest.fixture
def probes(upload_folder, outside) -> dict[str, dict]:
    """Payloads naming files the app must not open, untagged: Gradio passes these to the handler as they are."""
    link = upload_folder / f"link-{uuid.uuid4().hex}.jpg"
    link.symlink_to(outside)
    return {
        "absolute path outside": {"path": str(outside)},
        "missing path": {"path": str(outside.with_name("missing.jpg"))},
        "missing path in the upload folder": {"path": str(upload_folder / "missing.jpg")},
        "traversal": {"path": str(upload_folder / os.path.relpath(outside, upload_folder))},
        "symlink in the upload folder": {"path": str(link)},
        "/etc/passwd": {"path": "/etc/passwd"},
        "file URL": {"url": "file:///etc/passwd"},
        "file= URL": {"url": "/gradio_api/file=/etc/passwd"},
        "file= path": {"path": "/gradio_api/file=/etc/passwd"},
    }


def assert_one_sentence(replies: dict[str, str], sentence: str = NOT_UPLOADED) -> None:
    """Every probe got the same sentence: no path, OS error text or traceback, so nothing tells them apart."""
    assert set(replies.values()) == {sentence}, replies
    for reply in replies.values():
        assert not any(text in reply for text in ("Errno", "No such file", "Traceback", "/", "passwd")), reply


def test_check_accepts_only_what_gradio_accepted(tmp_path, monkeypatch):
    uploads = tmp_path / "gradio"
    photo = uploads / "0123abcd" / "photo.jpg"
    photo.parent.mkdir(parents=True)
    photo.write_bytes(b"jpeg")
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(b"jpeg")
    (uploads / "out.jpg").symlink_to(outside)
    (uploads / "in.jpg").symlink_to(photo)
    (tmp_path / "gradio-2").mkdir()
    (tmp_path / "gradio-2" / "photo.jpg").write_bytes(b"jpeg")
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(uploads))  # what app.py sets; Gradio reads it per call

    assert uploaded_path(photo) == uploaded_path(uploads / "in.jpg") == os.path.realpath(photo)
    assert uploaded_path(str(uploads / "0123abcd" / ".." / "0123abcd" / "photo.jpg")) == os.path.realpath(photo)
    assert uploaded_path(EXAMPLES / "astronaut.jpg") == str(EXAMPLES / "astronaut.jpg")  # the bundled examples
    assert upload_source({"path": str(photo), "meta": FILE_DATA}) == os.path.realpath(photo)
    refused = [outside, uploads / "out.jpg", uploads / "0123abcd" / ".." / ".." / "outside.jpg",
               tmp_path / "gradio-2" / "photo.jpg", uploads / "missing.jpg", uploads / "0123abcd", uploads,
               "/etc/passwd", "photo.jpg", "a\0b"]
    for path in refused:
        for call in (uploaded_path, upload_source, lambda p: upload_source({"path": str(p)})):
            with pytest.raises(gr.Error) as error:
                call(path)
            assert error.value.message == NOT_UPLOADED, path
    for url in ("file:///etc/passwd", "/gradio_api/file=/etc/passwd", "https://example.com/photo.jpg"):
        with pytest.raises(gr.Error, match=NOT_UPLOADED):
            upload_source({"url": url, "meta": FILE_DATA})


@pytest.mark.parametrize("api_name", API_NAMES)
def test_files_not_uploaded_are_refused_alike_then_uploads_work(client, api_name, probes):
    replies = {}
    for name, payload in probes.items():
        with pytest.raises(AppError) as error:
            client.predict(payload, api_name=api_name)
        replies[name] = str(error.value)
    assert_one_sentence(replies)
    reply = client.predict(handle_file(str(EXAMPLES / "astronaut.jpg")), api_name=api_name)
    record = reply if api_name == "/predict" else reply[1]  # /annotate and /explain: (image(s), record)
    assert len(record["faces"]) == 1


def call_raw(app_url: str, api_name: str, payload) -> str:
    """The endpoint's whole reply to a payload sent verbatim over HTTP (gradio_client would upload a local
    file it is handed, and fails itself on a missing one)."""
    base = f"{app_url}/gradio_api/call{api_name}"
    with httpx.Client(timeout=60) as http:
        event_id = http.post(base, json={"data": [payload]}).json()["event_id"]
        return http.get(f"{base}/{event_id}").text


@pytest.mark.parametrize("api_name", API_NAMES)
def test_tagged_paths_outside_the_upload_folder_are_refused_by_gradio_alike(app_url, api_name, probes):
    """Payloads tagged as FileData are checked by Gradio before the app sees them (its rule, the app's rule):
    one bare error for all of them, existing or not."""
    replies = {name: call_raw(app_url, api_name, payload | {"meta": FILE_DATA})
               for name, payload in probes.items() if "path" in payload}
    assert set(replies.values()) == {'event: error\ndata: {"error": null}\n\n'}, replies


def ui_fn_index(app_url: str, elem_id: str, trigger: str) -> int:
    """The index Gradio gave the UI event that `trigger` on the component `elem_id` fires."""
    config = httpx.get(f"{app_url}/config").json()
    ids = {c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == elem_id}
    return next(dep["id"] for dep in config["dependencies"]
                if any(target in ids and event == trigger for target, event in dep["targets"]))


class UiEvents:
    """The UI's own (private) events, called through Gradio's queue as the browser calls them."""

    def __init__(self, app_url: str):
        self.api = f"{app_url}/gradio_api"
        self.app_url = app_url
        self.session = uuid.uuid4().hex
        self.http = httpx.Client(timeout=60)

    def upload(self, path: Path) -> dict:
        with open(path, "rb") as f:
            [stored] = self.http.post(f"{self.api}/upload", files={"files": f}).json()
        return {"path": stored, "orig_name": path.name, "meta": FILE_DATA}

    def join(self, elem_id: str, trigger: str, data: list) -> str:
        self.fn = ui_fn_index(self.app_url, elem_id, trigger)
        return self.http.post(f"{self.api}/queue/join", json=self.body(data)).json()["event_id"]

    def body(self, data: list) -> dict:
        return {"data": data, "fn_index": self.fn, "session_hash": self.session, "event_data": None,
                "trigger_id": None}

    def messages(self):
        with self.http.stream("GET", f"{self.api}/queue/data", params={"session_hash": self.session}) as reply:
            for line in reply.iter_lines():
                if line.startswith("data:"):
                    yield json.loads(line[len("data:"):])

    def photo(self, payload) -> tuple[list[str], list]:
        """The Photo tab's upload event: (its warnings, its outputs)."""
        self.join("photo-input", "change", [payload, "scratch", 0.5, True, True, "auto"])
        warnings = []
        for message in self.messages():
            if message["msg"] == "log":
                warnings.append(message["log"])
            if message["msg"] == "process_completed":
                return warnings, message["output"]["data"]

    def webcam(self, frames: list) -> list[str]:
        """The Webcam tab's stream, one frame after another: each frame's status line."""
        data = lambda frame: [frame, "scratch", 0.5, True, "gender", None]  # noqa: E731
        event_id = self.join("webcam-input", "stream", data(frames[0]))
        messages, statuses = self.messages(), []
        for i, frame in enumerate(frames):
            if i:
                self.http.post(f"{self.api}/stream/{event_id}", json=self.body(data(frame)))
            reply = next(m for m in messages if m["msg"] in ("process_streaming", "process_completed"))
            statuses.append(reply["output"]["data"][1])
        self.http.post(f"{self.api}/stream/{event_id}/close")
        messages.close()
        return statuses


def test_photo_tab_refuses_files_not_uploaded_alike_then_uploads_work(app_url, probes):
    events = UiEvents(app_url)
    replies = {}
    for name, payload in probes.items():
        warnings, outputs = events.photo(payload)
        assert outputs[0] is None and outputs[2] is None  # the input is cleared, nothing is shown
        replies[name] = " ".join(warnings)
    assert_one_sentence(replies)
    warnings, outputs = events.photo(events.upload(EXAMPLES / "astronaut.jpg"))
    assert warnings == [] and "**1 face**" in outputs[-1]


def test_webcam_stream_refuses_files_not_uploaded_alike_then_frames_work(app_url, probes):
    events = UiEvents(app_url)
    statuses = events.webcam([*probes.values(), events.upload(EXAMPLES / "astronaut.jpg")])
    assert_one_sentence(dict(zip(probes, statuses)), sentence=f"⚠️ {NOT_UPLOADED}")
    assert "per frame" in statuses[-1] and "1 face" in statuses[-1]


# ---------------------------------------------------------------- handlers called directly (issue 25)

def data_url(content: bytes, mime: str = "image/jpeg") -> str:
    return f"data:{mime};base64," + base64.b64encode(content).decode()


@pytest.fixture(scope="module")
def bank(model_dir, tmp_path_factory) -> ModelBank:
    """scratch: an untrained model; vgg16: a folder with no model in it, so it cannot load."""
    return ModelBank(load_model, {"scratch": str(model_dir), "vgg16": str(tmp_path_factory.mktemp("no-model"))})


@pytest.mark.usefixtures("torch_one_thread")
def test_pasted_image_as_a_data_url_is_read(bank):
    photo = (EXAMPLES / "astronaut.jpg").read_bytes()
    assert upload_source({"url": data_url(photo), "meta": FILE_DATA}) == photo
    _, record = api_result(bank, {"url": data_url(photo)}, "scratch", 0.5, True, "auto")
    assert len(record["faces"]) == 1
    broken = {"data:image/png;base64,abc": "This file is not an image",  # bad base64 (padding)
              data_url(b"this is not a picture", "text/plain"): "This file is not an image",
              "data:,": "The file is empty (0 bytes)"}
    for url, sentence in broken.items():
        with pytest.raises(gr.Error) as error:
            api_result(bank, {"url": url}, "scratch", 0.5, True, "auto")
        assert error.value.message.startswith(sentence), url


def test_no_image_sent_is_said_so(bank):
    for payload in ({}, {"path": "", "url": ""}, {"meta": FILE_DATA}, 42):
        with pytest.raises(gr.Error) as error:
            upload_source(payload)
        assert error.value.message == "No image was sent.", payload
    with pytest.raises(gr.Error) as error:
        api_result(bank, None, "scratch", 0.5, True, "auto")
    assert error.value.message == "No image was sent."


def make_face(index: int, box, p_female: float = 0.5, age: float = 30.0) -> Face:
    return Face(index=index, box=box, p_female=p_female, age=age, age_low=age - 5, age_high=age + 5,
                det_score=0.9, age_probs=[])


def test_a_click_where_boxes_overlap_picks_the_smallest_face():
    big, small, apart = make_face(0, (0, 0, 100, 100)), make_face(1, (40, 40, 20, 20)), make_face(2, (150, 0, 50, 50))
    for faces in ([big, small, apart], [apart, small, big]):  # whatever the order of the faces
        result = Result(faces, None, [], {})
        assert face_at(result, 50, 50) == 1  # inside both: the small one (a face in front of a bigger one)
        assert face_at(result, 60, 60) == 1  # box edges count as inside
        assert face_at(result, 10, 10) == 0
        assert face_at(result, 175, 25) == 2
        assert face_at(result, 120, 50) is None  # between faces: nothing picked
    assert face_at(None, 50, 50) is None  # a click before any photo was analysed


@pytest.mark.usefixtures("torch_one_thread")
def test_webcam_problems_go_to_the_status_line_and_the_stream_goes_on(bank):
    frame = str(EXAMPLES / "astronaut.jpg")  # a bundled example: accepted like an upload
    stream = None
    problems = [({"url": data_url(b"this is not a picture")}, "scratch",
                 "⚠️ This file is not an image (or not a format we can read)"),
                ({"path": "/etc/passwd"}, "scratch", f"⚠️ {NOT_UPLOADED}"),
                (frame, "vgg16", "⚠️ The VGG16 · more accurate, slower model could not be loaded: ")]
    for payload, model_name, status_start in problems:
        shown, status, stream = on_frame(bank, payload, model_name, 0.5, False, "gender", stream)
        assert shown == gr.skip() and status.startswith(status_start), status  # no exception, no toast
    started = stream
    shown, status, stream = on_frame(bank, frame, "scratch", 0.5, True, "gender", stream)
    assert stream is started and len(stream.arrivals) == 4  # the same session, every frame counted
    assert isinstance(shown, np.ndarray) and shown.shape == np.asarray(Image.open(frame)).shape
    assert "ms** per frame" in status and status.endswith(f"· 1 face · model in {float_precision()}")
    assert "⚠️" not in status


def test_webcam_labels_are_averaged_over_frames(monkeypatch):
    """What is drawn on frame 2 is each track's moving average (FaceTracker alpha 0.35), not frame 2's reading."""
    image = np.zeros((240, 320, 3), np.uint8)
    frames = iter([[make_face(0, (50, 50, 80, 80), p_female=0.9, age=30)],
                   [make_face(0, (52, 50, 80, 80), p_female=0.1, age=50),  # the same person, moved a little
                    make_face(1, (200, 60, 60, 60), p_female=0.2, age=60)]])  # someone new: their own reading

    def pipeline(frame, **options):  # stands in for the model: these readings, whatever the frame
        return Result(next(frames), None, [], {"detect": 1.0}, image)

    bank = SimpleNamespace(get=lambda name: pipeline)
    drawn = []
    monkeypatch.setattr(render, "annotate", lambda img, boxes, labels, *a, **k: drawn.append((boxes, labels)) or img)
    stream = None
    for _ in range(2):
        _, status, stream = on_frame(bank, str(EXAMPLES / "astronaut.jpg"), "scratch", 0.5, False, "gender", stream)
    assert drawn[0] == ([(50, 50, 80, 80)], ["F 90% · 30 y (25-35)"])
    # 0.35 * 0.1 + 0.65 * 0.9 = 0.62 and 0.35 * 50 + 0.65 * 30 = 37 (interval likewise); boxes are the frame's own
    assert drawn[1] == ([(52, 50, 80, 80), (200, 60, 60, 60)], ["F 62% · 37 y (32-42)", "M 80% · 60 y (55-65)"])
    assert status.endswith("· 2 faces")


@pytest.mark.usefixtures("torch_one_thread")
def test_the_photo_tab_draws_each_faces_age_distribution(bank):
    """Beside the age and its interval, the chosen face's whole P(age): 101 years summing to 1, its mean the age
    shown, the years of the 80% interval marked, holding at least 80% of it; another face, another distribution."""
    outputs = analyze(bank, str(EXAMPLES / "three_portraits.jpg"), "scratch", 0.5, False, True, "auto")
    result, plot = outputs[3], outputs[7]
    assert len(result.faces) == 3
    plots = [plot] + [face_views(result, i)[2] for i in (1, 2)]
    for face, plot in zip(result.faces, plots):
        assert list(plot["age"]) == list(range(101))
        assert abs(plot["probability"].sum() - 1) < 1e-3
        assert abs((plot["age"] * plot["probability"]).sum() - face.age) < 0.05
        inside = plot["years"] == INTERVAL_PART
        assert list(plot["age"][inside]) == list(range(round(face.age_low), round(face.age_high) + 1))
        assert plot["probability"][inside].sum() >= 0.8 - 1e-3
    assert not plots[0]["probability"].equals(plots[1]["probability"])
    assert analyze(bank, None, "scratch", 0.5, False, True, "auto")[7] is None  # nothing to draw
