"""Training crops are the app's crops: train/aligned.py finds and aligns each face as an upload is handled."""
from __future__ import annotations

import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from demo.pipeline import Pipeline
from model.faces import main_face
from model.nets import build_model
from train import aligned
from train.aligned import aligned_face, alignment_matrices, locate
from train.images import load_images, read_face

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]
PORTRAITS = ROOT / "assets" / "examples" / "three_portraits.jpg"
ROCKET = ROOT / "assets" / "examples" / "rocket.jpg"  # no face


def test_the_training_crop_is_the_crop_the_app_predicts_on():
    """Same detector, same settings, same main face, same alignment: the very pixels the app's model sees."""
    result = Pipeline(build_model("scratch", image_size=32))(str(PORTRAITS), draw=False)
    assert len(result.faces) == 3
    app_face = main_face(result.faces, result.image.shape)
    matrix = locate(str(PORTRAITS))
    assert matrix is not None and matrix.shape == (2, 3)
    np.testing.assert_array_equal(matrix, app_face.matrix)  # exactly, dtype included: a rounded matrix moves pixels
    assert matrix.dtype == app_face.matrix.dtype
    app_crop = app_face.crop
    np.testing.assert_array_equal(aligned_face(str(PORTRAITS), matrix), app_crop)
    # ...and at the model's size, as the app resizes it (model.preprocess.to_uint8_tensor)
    face = read_face(str(PORTRAITS), 64, matrix=matrix)
    assert face.shape == (3, 64, 64) and face.dtype == torch.uint8


def test_an_image_without_a_face_keeps_its_own_crop(tmp_path):
    assert locate(str(ROCKET)) is None
    matrices = alignment_matrices([SimpleNamespace(path=str(ROCKET))], tmp_path)
    assert np.isnan(matrices).all()
    assert torch.equal(read_face(str(ROCKET), 48, matrix=matrices[0]), read_face(str(ROCKET), 48))


def test_matrices_are_cached_and_a_changed_file_is_located_again(tmp_path, monkeypatch):
    photo = tmp_path / "photo.jpg"
    shutil.copy(PORTRAITS, photo)
    records = [SimpleNamespace(path=str(photo)), SimpleNamespace(path=str(ROCKET))]
    first = alignment_matrices(records, tmp_path / "cache")
    assert np.isfinite(first[0]).all() and np.isnan(first[1]).all()
    calls = []
    monkeypatch.setattr(aligned, "locate", lambda path: calls.append(path))
    np.testing.assert_array_equal(alignment_matrices(records, tmp_path / "cache"), first)
    assert calls == []  # from the cache
    shutil.copy(ROCKET, photo)  # another image under the same name
    assert np.isnan(alignment_matrices(records, tmp_path / "cache")).all() and len(calls) == 2


def test_aligned_and_stored_crops_are_cached_apart(tmp_path):
    records = [SimpleNamespace(path=str(PORTRAITS), source="utkface")]
    matrices = alignment_matrices(records, None)
    aligned_images, _ = load_images(records, 40, tmp_path, matrices=matrices)
    stored_images, _ = load_images(records, 40, tmp_path)
    assert len(list(tmp_path.glob("images-*.npz"))) == 2
    assert not torch.equal(aligned_images, stored_images)  # the main face, not the whole group photo


@pytest.mark.parametrize("boxes, expected", [
    (((0, 0, 50, 50), (60, 60, 80, 80), (120, 0, 80, 80)), 1),  # ties with the third in size, nearer the centre
    (((0, 0, 50, 50), (120, 0, 80, 80)), 1),
    (((10, 10, 30, 30),), 0),
])
def test_the_main_face_is_the_largest_then_the_most_central(boxes, expected):
    faces = [SimpleNamespace(box=box) for box in boxes]
    assert main_face(faces, (200, 200, 3)) is faces[expected]
    assert main_face([], (200, 200, 3)) is None
