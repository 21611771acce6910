"""The padded fallback for tight face crops (model/faces.py) and the measurement that sets its score bar
(train.measure_tight_crops)."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from model.datasets import annotated_faces
from model.faces import DEFAULT_DETECTOR, DEFAULT_MIN_SCORE, TIGHT_CROP_MIN_SCORE, TIGHT_CROP_NOTE, FaceFinder
from model.imageio import load_image
from train import aligned
from train.measure_tight_crops import face_free_squares, lowest_bar

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wild(shared_dir):
    return shared_dir / "data" / "wild-faces"


@pytest.fixture(scope="module")
def tight_crop(wild):
    photo = np.asarray(Image.open(wild / "Tom_Cruise_avp_2014_4.jpg").convert("RGB"))
    return photo[290:650, 90:450]  # just the face, chin to forehead: the main pass misses it


def test_the_bar_decides_whether_the_fallback_face_counts(tight_crop):
    (bar,) = lowest_bar(FaceFinder(tight_crop_min_score=0.5), [tight_crop])
    assert TIGHT_CROP_MIN_SCORE <= bar < 1.0  # found by the app as shipped, only by the fallback
    for finder_bar, expected in ((bar + 0.01, 0), (bar, 1)):
        notes = []
        found = FaceFinder(tight_crop_min_score=finder_bar).find(tight_crop, DEFAULT_MIN_SCORE, DEFAULT_DETECTOR,
                                                                 notes)
        assert len(found) == expected, finder_bar
        assert (TIGHT_CROP_NOTE in notes) == bool(expected) and ("No face found" in notes[0]) != bool(expected)


def test_lowest_bar_of_a_photo_with_faces_and_of_one_without(tight_crop):
    photos = [load_image(ROOT / "assets" / "examples" / name) for name in ("three_portraits.jpg", "rocket.jpg")]
    assert list(lowest_bar(FaceFinder(tight_crop_min_score=0.5), photos)) == [np.inf, 0.0]


def test_face_free_squares_touch_no_annotated_face_and_are_the_same_each_time(wild):
    squares = face_free_squares(wild, per_photo=20)
    boxes = annotated_faces(wild)
    assert len(squares) == 20 * (len(boxes) + 1)  # every annotated photo and dogs.jpg
    assert all(s.shape[0] == s.shape[1] >= 64 for s in squares)
    again = face_free_squares(wild, per_photo=20)
    assert all(np.array_equal(a, b) for a, b in zip(squares, again))
    # each square is a piece of its photo that overlaps no face box grown by half its side
    photo = load_image(wild / "2008_001322.jpg")
    grown = [(x - w / 2, y - h / 2, 2 * w, 2 * h) for x, y, w, h in boxes["2008_001322.jpg"]]
    index = sorted(boxes).index("2008_001322.jpg") * 20  # photos in name order; dogs.jpg sorts after them
    for square in squares[index:index + 20]:
        side = square.shape[0]
        hits = [(x, y) for y in range(photo.shape[0] - side + 1) for x in range(photo.shape[1] - side + 1)
                if photo[y, x, 0] == square[0, 0, 0] and np.array_equal(photo[y:y + side, x:x + side], square)][:1]
        assert hits, "a square is cut from its photo"
        x, y = hits[0]
        assert not any(x < bx + bw and bx < x + side and y < by + bh and by < y + side for bx, by, bw, bh in grown)


def test_training_crops_are_found_again_when_the_bar_changes():
    """The fallback's settings are part of the cache key of the training crops' alignment (train/aligned.py)."""
    from model.faces import TIGHT_CROP_PAD, TIGHT_CROP_SHARE
    assert f":{TIGHT_CROP_MIN_SCORE}:{TIGHT_CROP_PAD}:{TIGHT_CROP_SHARE}:" in aligned.FINDER_SETTINGS
