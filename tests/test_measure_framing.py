"""The framing arithmetic behind train.data.FRAMING_CROP (the detectors themselves are not run here)."""
from __future__ import annotations

import numpy as np
import pytest

from train.measure_framing import fairface_paths, framing, matching_crop, spread

# Right eye, left eye, nose, mouth, and a face box, in a 200 px UTKFace-like chip (model/align.py's template).
CHIP_POINTS = np.array([[60.9, 61.7], [137.5, 60.9], [100.0, 108.0], [100.3, 145.4]])
CHIP_BOX = np.array([5.0, 0.0, 190.0, 190.0])


def faces(points: np.ndarray, box: np.ndarray, n: int = 5) -> dict:
    jitter = np.linspace(-2, 2, n)[:, None, None]  # a few faces, symmetric about the template
    return {"points": points[None] + jitter, "boxes": np.tile(box, (n, 1))}


def loosen(points: np.ndarray, box: np.ndarray, fraction: float, offset: tuple[float, float], side: int):
    """The chip's content placed in a bigger frame: the chip is the `fraction` crop centred at 0.5 + offset."""
    centre = 0.5 + np.array(offset)
    loose_points = ((points / 200 - 0.5) * fraction + centre) * side
    xy = ((box[:2] / 200 - 0.5) * fraction + centre) * side
    return loose_points, np.concatenate([xy, box[2:] / 200 * fraction * side])


@pytest.mark.parametrize("fraction, offset", [(0.91, (0.0, 0.0)), (0.8, (0.01, -0.03)), (0.7, (-0.02, 0.05))])
def test_matching_crop_recovers_the_framing(fraction, offset):
    tight = framing(faces(CHIP_POINTS, CHIP_BOX), 200)
    loose = framing(faces(*loosen(CHIP_POINTS, CHIP_BOX, fraction, offset, 224)), 224)
    assert loose["size"] == pytest.approx(tight["size"] * fraction, rel=1e-3)
    assert loose["box_size"] == pytest.approx(tight["box_size"] * fraction, rel=1e-6)
    found = matching_crop(loose, tight)
    assert found == pytest.approx((fraction, *offset), abs=2e-3)


def test_framing_is_in_fractions_of_the_side():
    f = framing(faces(CHIP_POINTS, CHIP_BOX), 200)
    assert f["eyes"] == pytest.approx([(60.9 + 137.5) / 400, (61.7 + 60.9) / 400], abs=1e-3)
    eyes = (CHIP_POINTS[0] + CHIP_POINTS[1]) / 2
    size = np.linalg.norm(CHIP_POINTS[1] - CHIP_POINTS[0]) + np.linalg.norm(CHIP_POINTS[3] - eyes)
    assert f["size"] == pytest.approx(size / 200, rel=1e-3)  # model/align.py's scale: ~161 px in a chip
    assert f["box_size"] == pytest.approx([0.95, 0.95])


def test_fairface_sample_is_numeric_spread_and_disjoint(tmp_path):
    folder = tmp_path / "fair_face" / "train"
    folder.mkdir(parents=True)
    for i in range(1, 101):
        (folder / f"{i}.jpg").write_bytes(b"")
    paths = fairface_paths(tmp_path)
    assert [p.stem for p in paths[:3]] == ["1", "2", "3"] and paths[-1].stem == "100"  # not 1, 10, 100
    measured, checked = spread(paths, 10), spread(paths, 10, shift=0.5)
    assert [p.stem for p in measured] == [str(1 + 10 * i) for i in range(10)]
    assert not set(measured) & set(checked) and len(checked) == 10


def test_missing_fairface_folder_says_what_to_pass(tmp_path):
    with pytest.raises(SystemExit, match="fair_face"):
        fairface_paths(tmp_path)
