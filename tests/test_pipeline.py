"""The whole pipeline on real photos, with an untrained model (readouts are checked for form, not accuracy)."""
from __future__ import annotations

import json
import re
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from model.imageio import BadImageError
from demo.pipeline import Face, Pipeline
from model.nets import ScratchNet

pytestmark = pytest.mark.usefixtures("torch_one_thread")
LABEL = re.compile(r"^[FM] \d{2,3}% · \d{1,3} y \(\d{1,3}-\d{1,3}\)$")


@pytest.fixture(scope="module")
def pipeline():
    torch.manual_seed(0)
    return Pipeline(ScratchNet())


@pytest.fixture(scope="module")
def wild(shared_dir):
    return shared_dir / "data" / "wild-faces"


def test_group_photo(pipeline, wild):
    result = pipeline(wild / "2008_001322.jpg", cam_heads=("gender", "age"))
    assert len(result.faces) == 3 and result.notes == []
    assert result.annotated.shape == (375, 500, 3) and result.annotated.dtype == np.uint8
    assert not np.array_equal(result.annotated, result.image)  # boxes were drawn
    xs = [f.box[0] for f in result.faces]
    assert xs == sorted(xs)  # reading order
    for i, face in enumerate(result.faces):
        assert face.index == i and 0.5 <= face.det_score <= 1
        x, y, w, h = face.box
        assert 0 <= x and 0 <= y and x + w <= 500 and y + h <= 375 and 60 <= w <= 110
        assert 0 <= face.p_female <= 1 and face.age_low <= face.age <= face.age_high
        assert len(face.age_probs) == 101 and abs(sum(face.age_probs) - 1) < 1e-4
        assert LABEL.match(face.label()), face.label()
        assert face.crop.shape == (200, 200, 3)
        for head in ("gender", "age"):
            cam = face.cams[head]
            assert cam.shape == (64, 64) and cam.dtype == np.float32 and 0 <= cam.min() and cam.max() <= 1
            assert face.cam_image(head).shape == (200, 200, 3)
        overlay = result.cam_overlay(i, "age")
        assert overlay.shape == result.image.shape
        changed = np.any(overlay != result.image, axis=2)
        ys, xs_ = np.nonzero(changed)  # the heat map lands on this face, not elsewhere
        assert abs(xs_.mean() - (x + w / 2)) < w / 2 and abs(ys.mean() - (y + h / 2)) < h
    record = result.faces[0].to_record()
    assert set(record) == {"index", "box", "p_female", "gender", "age", "age_low", "age_high", "det_score"}
    json.dumps([f.to_record() for f in result.faces])  # JSON-friendly
    assert set(result.timings_ms) >= {"decode", "detect", "align", "model", "cam", "render"}


def test_label_and_record():
    face = Face(index=0, box=(1, 2, 3, 4), p_female=0.97, age=31.2, age_low=26, age_high=36, det_score=0.9,
                age_probs=[0.0] * 101, cams={})
    assert face.label() == "F 97% · 31 y (26-36)" and face.gender == "female"
    male = Face(index=1, box=(1, 2, 3, 4), p_female=0.12, age=8.6, age_low=5, age_high=12, det_score=None,
                age_probs=[0.0] * 101, cams={})
    assert male.label() == "M 88% · 9 y (5-12)" and male.to_record()["gender"] == "male"
    assert male.to_record()["det_score"] is None


def test_cam_off_by_default(pipeline, wild):
    result = pipeline(wild / "2008_001009.jpg")
    assert len(result.faces) == 2 and all(f.cams == {} for f in result.faces) and "cam" not in result.timings_ms
    with pytest.raises(ValueError, match="no 'gender' CAM"):
        result.cam_overlay(0, "gender")


def test_no_face_is_a_note_not_an_error(pipeline, wild):
    result = pipeline(wild / "dogs.jpg", cam_heads=("age",))
    assert result.faces == [] and "No face found" in result.notes[0]
    assert np.array_equal(result.annotated, result.image)


def test_tight_face_crop_is_still_predicted(pipeline, wild):
    photo = np.asarray(Image.open(wild / "Tom_Cruise_avp_2014_4.jpg").convert("RGB"))
    crop = photo[290:650, 90:450]  # just the face, chin to forehead: the detectors miss it as is
    result = pipeline(crop)
    assert len(result.faces) == 1 and "tight face crop" in result.notes[0]
    assert result.faces[0].det_score is not None


def test_no_detect_uses_the_whole_image(pipeline, wild):
    result = pipeline(wild / "dogs.jpg", detect=False, cam_heads=("gender",))
    (face,) = result.faces
    assert face.det_score is None and face.box == (0, 0, 900, 916) and "whole image" in result.notes[0]
    assert face.cams["gender"].shape == (64, 64)


def test_grayscale_and_rgba_photos(pipeline, wild):
    photo = Image.open(wild / "2008_001322.jpg")
    assert len(pipeline(photo.convert("L")).faces) == 3
    assert len(pipeline(photo.convert("RGBA")).faces) == 3


def test_many_faces_are_capped_with_a_note(wild):
    face = Image.open(wild / "2008_001322.jpg").crop((90, 140, 200, 250)).resize((100, 100))
    grid = Image.new("RGB", (800, 700))
    for i in range(8):
        for j in range(7):
            grid.paste(face, (i * 100, j * 100))  # 56 faces
    result = Pipeline(ScratchNet(), max_faces=50)(grid)
    assert len(result.faces) == 50 and "56 faces found; showing the 50 most confident" in result.notes[0]


def test_short_range_and_options(pipeline, wild):
    result = pipeline(wild / "2008_001322.jpg", detector="short", min_score=0.8)
    assert 1 <= len(result.faces) <= 3 and all(f.det_score >= 0.8 for f in result.faces)
    with pytest.raises(ValueError):
        pipeline(wild / "2008_001322.jpg", detector="medium")
    with pytest.raises(ValueError):
        pipeline(wild / "2008_001322.jpg", cam_heads=("race",))


def test_bad_input_raises_bad_image_error(pipeline, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really")
    with pytest.raises(BadImageError):
        pipeline(broken)
    with pytest.raises(BadImageError, match="too small"):
        pipeline(np.zeros((10, 10, 3), np.uint8))


def test_bench_frames_hold_the_faces_they_claim(pipeline, wild):
    """demo.bench times '1 face' and '10 faces': check the detector really finds that many (not timed here)."""
    from demo.bench import frames

    built = frames(wild / "Tom_Cruise_avp_2014_4.jpg")
    assert len(pipeline(built["1 face"]).faces) == 1
    assert pipeline(built["1 face"]).image.shape == (480, 640, 3)
    assert len(pipeline(built["10 faces"]).faces) == 10


def test_warm_up(pipeline, monkeypatch):
    """Loads both detectors and runs the model once plain and once with Grad-CAM of both heads."""
    runs = []
    predict = pipeline._predict

    def spy(batch, cam_heads, timings):
        predicted, cams = predict(batch, cam_heads, timings)
        runs.append((len(batch), tuple(cam_heads), sorted(cams)))
        return predicted, cams
    monkeypatch.setattr(pipeline, "_predict", spy)
    pipeline.warm_up()
    assert set(pipeline.finder.detectors._detectors) == {"short", "full"}
    assert runs == [(1, (), []), (1, ("gender", "age"), ["age", "gender"])]


def test_the_evaluations_app_path_gives_the_apps_answers(pipeline, wild, tmp_path):
    """train.evaluate scores uploads with model/ directly (training never imports the demo): on photos with
    several faces, one face, none and an unreadable file it must find, pick and predict exactly as the app."""
    from types import SimpleNamespace

    from model.faces import main_face
    from train.evaluate import app_predictions
    Image.new("RGB", (300, 200), (120, 140, 160)).save(tmp_path / "no_face.png")
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    paths = [wild / "2008_001322.jpg", wild / "Tom_Cruise_avp_2014_4.jpg", tmp_path / "no_face.png",
             tmp_path / "broken.jpg"]
    records = [SimpleNamespace(path=str(path)) for path in paths]
    for detect in (True, False):
        out, precision = app_predictions(pipeline.model, records, detect, precision=pipeline.fast.precision)
        assert precision == pipeline.fast.precision
        assert out["found"].tolist() == ([True, True, False, False] if detect else [True, True, True, False])
        for i, path in enumerate(paths[:3]):
            result = pipeline(path, detect=detect, draw=False)
            assert out["faces"][i] == len(result.faces)
            face = main_face(result.faces, result.image.shape)
            if face is None:
                continue
            for key in ("p_female", "age", "age_low", "age_high"):
                assert out[key][i] == pytest.approx(getattr(face, key), abs=1e-5), (path.name, key)


def test_a_model_runs_while_another_models_fast_path_is_built(pipeline):
    """The app builds its other models' fast paths on a background thread while it serves. torch.fx's tracing
    (the BatchNorm fusion, int8's prepare and convert) patches nn.Module.__call__ for the whole process, and a
    model run meanwhile failed ("NameError: module is not installed as a submodule": 1-2 runs while 6 scratch
    bodies were fused); model.fast.TRACING keeps the two apart."""
    from model.fast import FastModel
    image = np.full((96, 96, 3), 128, np.uint8)
    errors, runs, stop = [], [], threading.Event()

    def serve():
        while not stop.is_set():
            try:
                pipeline(image, detect=False, draw=False)
                runs.append(1)
            except Exception as error:  # noqa: BLE001 - any failure is the finding
                errors.append(error)

    server = threading.Thread(target=serve)
    server.start()
    try:
        for _ in range(20):
            FastModel(pipeline.model, "fp32")
            FastModel(pipeline.model, "bf16")
    finally:
        stop.set()
        server.join()
    assert errors == [] and len(runs) > 0
