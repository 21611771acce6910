"""Align a detected face like a UTKFace chip: eyes level, same position and scale, 200x200 px.

The template is measured, not guessed: `python -m train.measure_framing` runs both MediaPipe detectors on
400 UTKFace chips (padded by 25% grey so the tight chips are found) and averages the keypoints (std 3-5 px):

    right eye (60.9, 61.7), left eye (137.5, 60.9), mouth (100.3, 145.4); eye line tilt -0.6 deg (std 3.4)

The chips are level already and framed tight: the detector's face box is about the whole chip.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from model.detect import LEFT_EYE, MOUTH, RIGHT_EYE

CHIP_SIZE = 200
EYES_CENTER = (99.2, 61.3)  # midpoint of the eyes in the chip, px
EYE_DISTANCE = 76.8         # between the eyes, px
EYES_TO_MOUTH = 84.3        # from the eyes' midpoint to the mouth, px


def alignment_matrix(keypoints: np.ndarray, size: int = CHIP_SIZE) -> np.ndarray:
    """2x3 similarity transform from image pixels to a `size` px chip.

    Rotation levels the eyes. Scale uses eye distance plus eyes-to-mouth distance: the first shrinks when the
    head turns, the second when it nods, so their sum keeps the framing steadier than either alone."""
    right, left, mouth = (keypoints[i].astype(np.float64) for i in (RIGHT_EYE, LEFT_EYE, MOUTH))
    eyes = (right + left) / 2
    dx, dy = left - right
    angle = math.degrees(math.atan2(dy, dx))
    measured = math.hypot(dx, dy) + float(np.linalg.norm(mouth - eyes))
    scale = (EYE_DISTANCE + EYES_TO_MOUTH) / max(measured, 1e-6) * size / CHIP_SIZE
    matrix = cv2.getRotationMatrix2D((float(eyes[0]), float(eyes[1])), angle, scale)
    matrix[:, 2] += np.array(EYES_CENTER) * size / CHIP_SIZE - eyes  # move the eyes' midpoint into place
    return matrix


def whole_image_matrix(shape: tuple[int, ...], size: int = CHIP_SIZE) -> np.ndarray:
    """For an image that is already a face crop: the central square, scaled to `size`."""
    height, width = shape[:2]
    side = min(height, width)
    scale = size / side
    return np.array([[scale, 0, -(width - side) / 2 * scale], [0, scale, -(height - side) / 2 * scale]])


def warp(rgb: np.ndarray, matrix: np.ndarray, size: int = CHIP_SIZE) -> np.ndarray:
    """Cut the chip out of the full-resolution image. When shrinking a big face, warp at up to 4x the size
    and area-average down: a plain bilinear warp would alias."""
    scale = math.sqrt(abs(np.linalg.det(matrix[:, :2])))
    factor = int(min(4, max(1, math.ceil(1 / scale)))) if scale < 0.75 else 1
    big = cv2.warpAffine(rgb, matrix * factor, (size * factor, size * factor), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)
    return big if factor == 1 else cv2.resize(big, (size, size), interpolation=cv2.INTER_AREA)


def unwarp(chip_map: np.ndarray, matrix: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Put a chip-space map (any resolution, e.g. a Grad-CAM map) back into the full image's pixels.
    Outside the chip the result is 0."""
    size = chip_map.shape[0]
    to_chip = matrix * (size / CHIP_SIZE)  # the map may be smaller than the 200 px chip
    return cv2.warpAffine(chip_map, to_chip, (shape[1], shape[0]), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)
