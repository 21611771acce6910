"""Alignment: eyes level, framed like a UTKFace chip, on real faces (rotated ones too)."""
from __future__ import annotations

import io
import math
import tarfile

import cv2
import numpy as np
import pytest
from PIL import Image

from model.align import CHIP_SIZE, EYE_DISTANCE, EYES_CENTER, alignment_matrix, unwarp, warp, whole_image_matrix
from model.detect import LEFT_EYE, RIGHT_EYE, FaceDetectors
from model.imageio import load_image


@pytest.fixture(scope="module")
def detectors():
    d = FaceDetectors()
    yield d
    d.close()


def eye_angle(keypoints) -> float:
    dx, dy = keypoints[LEFT_EYE] - keypoints[RIGHT_EYE]
    return math.degrees(math.atan2(dy, dx))


def eyes_in_chip(keypoints, matrix) -> np.ndarray:
    points = keypoints[[RIGHT_EYE, LEFT_EYE]]
    return points @ matrix[:, :2].T + matrix[:, 2]


@pytest.mark.parametrize("degrees", [-30, -15, 0, 20, 35])
def test_rotated_face_comes_out_level_and_in_place(shared_dir, detectors, degrees):
    photo = load_image(shared_dir / "data" / "wild-faces" / "Tom_Cruise_avp_2014_4.jpg")
    (upright,) = detectors.detect(photo, "full", 0.5)
    h, w = photo.shape[:2]
    rotation = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    tilted = cv2.warpAffine(photo, rotation, (w, h), borderMode=cv2.BORDER_REFLECT)
    (face,) = detectors.detect(tilted, "full", 0.5)
    matrix = alignment_matrix(face.keypoints)

    right, left = eyes_in_chip(face.keypoints, matrix)
    assert abs(right[1] - left[1]) < 0.5  # the detected eyes end up exactly level...
    assert np.allclose((right + left) / 2, EYES_CENTER, atol=0.5)  # ...where the training chips have them
    assert 0.7 * EYE_DISTANCE < left[0] - right[0] < 1.3 * EYE_DISTANCE  # (scale also uses the mouth)

    # The true eyes (found on the upright photo, then rotated with it) end up nearly level too; what is left
    # is BlazeFace's keypoint error on tilted heads (up to ~9 deg at 35), within training's +-10 deg augment.
    true_eyes = upright.keypoints @ rotation[:, :2].T + rotation[:, 2]
    tilt_before = abs(eye_angle(true_eyes))
    tilt_after = abs(eye_angle(true_eyes @ matrix[:, :2].T + matrix[:, 2]))
    assert tilt_after < 10
    if abs(degrees) >= 20:
        assert tilt_after < tilt_before / 2
    chip = warp(tilted, matrix)
    assert chip.shape == (CHIP_SIZE, CHIP_SIZE, 3) and chip.dtype == np.uint8


def test_a_utkface_chip_maps_onto_itself(shared_dir, detectors):
    """Inference framing = training framing: aligning a (grey-padded) training chip gives ~the identity."""
    with tarfile.open(shared_dir / "data" / "UTKFace.tar.gz", "r:gz") as tar:
        member = next(m for m in tar if m.isfile() and m.name.endswith(".jpg"))
        chip = np.asarray(Image.open(io.BytesIO(tar.extractfile(member).read())).convert("RGB"))
    border = 50
    padded = np.pad(chip, ((border, border), (border, border), (0, 0)), constant_values=128)
    face = detectors.detect(padded, "short", 0.5)[0]  # short range finds 400/400 padded chips, full 377
    matrix = alignment_matrix(face.keypoints - border)
    scale = math.sqrt(np.linalg.det(matrix[:, :2]))
    assert 0.85 < scale < 1.15
    corners = np.array([[0, 0], [199, 0], [0, 199], [199, 199]], np.float64)
    moved = corners @ matrix[:, :2].T + matrix[:, 2]
    assert np.abs(moved - corners).max() < 25  # px of a 200 px chip


def test_big_faces_are_shrunk_without_aliasing():
    stripes = np.zeros((800, 800, 3), np.uint8)
    stripes[:, ::2] = 255  # finest possible pattern: an aliasing warp would keep stripes, area-averaging greys
    matrix = np.array([[0.25, 0, 0], [0, 0.25, 0]])
    chip = warp(stripes, matrix)
    assert abs(chip[20:180, 20:180].mean() - 127.5) < 10 and chip[20:180, 20:180].std() < 10


def test_unwarp_puts_a_map_back_where_the_crop_came_from():
    image_shape = (300, 400, 3)
    keypoints = np.array([[150, 120], [230, 120], [190, 160], [190, 200], [120, 130], [260, 130]], np.float32)
    matrix = alignment_matrix(keypoints)
    cam = np.zeros((64, 64), np.float32)
    cam[20, 19] = 1.0  # the right eye's spot at 64 px: (60.9, 61.7) * 64 / 200
    back = unwarp(cam, matrix, image_shape)
    y, x = np.unravel_index(back.argmax(), back.shape)
    assert abs(x - 150) <= 4 and abs(y - 120) <= 4
    region = unwarp(np.ones((64, 64), np.float32), matrix, image_shape)
    assert region[120, 190] == 1 and region[0, 0] == 0


def test_whole_image_matrix_takes_the_central_square():
    matrix = whole_image_matrix((300, 200))
    image = np.zeros((300, 200, 3), np.uint8)
    image[50:250] = 200  # the central 200x200 square
    assert (warp(image, matrix)[2:-2, 2:-2] == 200).all()
