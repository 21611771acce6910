"""The webcam smoothing tracker: matching by overlap, moving averages, forgetting lost faces."""
from __future__ import annotations

import pytest

from model.detect import iou  # the tracker matches faces with the detector's IoU
from demo.tracker import FaceTracker


def readout(p_female: float, age: float) -> dict[str, float]:
    return {"p_female": p_female, "age": age, "age_low": age - 5, "age_high": age + 5}


def test_iou():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == pytest.approx(1.0)
    assert iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)
    assert iou((0, 0, 10, 10), (10, 0, 10, 10)) == 0.0  # touching edges only
    assert iou((0, 0, 10, 10), (50, 50, 5, 5)) == 0.0


def test_first_frame_passes_values_through():
    tracks = FaceTracker(alpha=0.5).update([((0, 0, 10, 10), readout(0.9, 30))])
    assert tracks[0].values["p_female"] == pytest.approx(0.9)
    assert tracks[0].values["age"] == pytest.approx(30)


def test_moving_average_damps_a_one_frame_flip():
    tracker = FaceTracker(alpha=0.3)
    for _ in range(5):
        tracker.update([((100, 100, 50, 50), readout(0.9, 30))])
    # One noisy frame says "male, 60": the smoothed label must not flip.
    (track,) = tracker.update([((102, 101, 50, 50), readout(0.1, 60))])
    assert track.values["p_female"] == pytest.approx(0.3 * 0.1 + 0.7 * 0.9)
    assert track.values["p_female"] > 0.5
    assert track.values["age"] == pytest.approx(0.3 * 60 + 0.7 * 30)
    assert track.values["age_low"] == pytest.approx(0.3 * 55 + 0.7 * 25)
    assert track.hits == 6


def test_two_faces_keep_their_own_tracks_when_order_changes():
    tracker = FaceTracker(alpha=0.5)
    left, right = (0, 0, 40, 40), (200, 0, 40, 40)
    a, b = tracker.update([(left, readout(0.9, 20)), (right, readout(0.1, 60))])
    # Next frame lists the faces the other way round and slightly moved.
    b2, a2 = tracker.update([((203, 2, 40, 40), readout(0.1, 62)), ((2, 1, 40, 40), readout(0.9, 22))])
    assert (a2.id, b2.id) == (a.id, b.id)
    assert a2.values["age"] == pytest.approx(21)
    assert b2.values["age"] == pytest.approx(61)
    assert b2.box == (203, 2, 40, 40)


def test_far_away_face_starts_a_new_track():
    tracker = FaceTracker()
    (first,) = tracker.update([((0, 0, 40, 40), readout(0.9, 20))])
    (second,) = tracker.update([((300, 300, 40, 40), readout(0.1, 70))])
    assert second.id != first.id
    assert second.values["age"] == pytest.approx(70)  # no averaging with an unrelated face


def test_lost_tracks_are_forgotten_after_max_misses():
    tracker = FaceTracker(max_misses=2)
    tracker.update([((0, 0, 40, 40), readout(0.9, 20))])
    tracker.update([])
    tracker.update([])
    assert len(tracker.tracks) == 1  # two misses: still remembered (face briefly hidden)
    tracker.update([])
    assert tracker.tracks == []


def test_each_track_matches_at_most_one_face():
    tracker = FaceTracker()
    (track,) = tracker.update([((0, 0, 40, 40), readout(0.9, 20))])
    t1, t2 = tracker.update([((1, 1, 40, 40), readout(0.9, 20)), ((2, 2, 40, 40), readout(0.2, 50))])
    assert t1.id == track.id  # the closer face keeps the track
    assert t2.id != track.id  # the other one starts its own


def test_alpha_is_validated():
    with pytest.raises(ValueError):
        FaceTracker(alpha=0)
