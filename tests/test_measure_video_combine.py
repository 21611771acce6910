"""train.measure_video_combine's rules for one answer from a person's frames, on outputs worked by hand."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from model.age import AGE_BINS
from model.nets import ScratchNet
from train.measure_video_combine import combine, scores


def frames_output(gender_logits, age_peaks) -> torch.Tensor:
    """[1, frames, 1 + AGE_BINS] raw outputs: each frame's gender logit and an age distribution peaked at an age."""
    rows = []
    for logit, peak in zip(gender_logits, age_peaks):
        age = torch.full((AGE_BINS,), -30.0)
        age[peak] = 0.0
        rows.append(torch.cat([torch.tensor([float(logit)]), age]))
    return torch.stack(rows).unsqueeze(0)


def test_rules_agree_on_identical_frames_and_differ_as_worked_out_on_disagreeing_ones():
    model = ScratchNet(image_size=32, widths=(4, 8), hidden=8).eval()  # temperatures 1, identity warp
    same = frames_output([1.0] * 4, [30] * 4)
    answers = [combine(model, same, rule) for rule in ("probabilities", "logits", "one frame")]
    for a in answers[1:]:
        for key in ("p_female", "age", "age_low", "age_high"):
            assert a[key] == pytest.approx(answers[0][key], abs=1e-4)

    split = frames_output([3.0, -1.0], [20, 40])  # two frames that disagree
    by_probs, by_logits = combine(model, split, "probabilities"), combine(model, split, "logits")
    sigmoid = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    assert by_probs["p_female"][0] == pytest.approx((sigmoid(3.0) + sigmoid(-1.0)) / 2, abs=1e-5)
    assert by_logits["p_female"][0] == pytest.approx(sigmoid(1.0), abs=1e-5)
    # the mixture keeps both frames' ages: half the mass at 20 and half at 40
    assert by_probs["age"][0] == pytest.approx(30.0, abs=1e-3)
    assert (by_probs["age_low"][0], by_probs["age_high"][0]) == (20.0, 40.0)


def test_scores_on_a_worked_example():
    pred = {"p_female": np.array([0.9, 0.2]), "age": np.array([30.0, 50.0]), "age_low": np.array([25.0, 40.0]),
            "age_high": np.array([35.0, 45.0])}
    s = scores(pred, np.array([1, 1]), np.array([32, 50]))
    assert s["gender accuracy"] == 0.5
    assert s["log loss"] == pytest.approx(-(np.log(0.9) + np.log(0.2)) / 2)
    assert s["age MAE"] == 1.0 and s["80% coverage"] == 0.5 and s["interval width"] == 7.5


def test_frames_are_read_as_the_app_reads_them(monkeypatch):
    """A model with mirror_average reads every frame with its mirror image (the reference and the fast path
    alike), or once where asked."""
    import copy

    from train import measure_video_combine
    monkeypatch.setattr(measure_video_combine, "BatchAugment", lambda **_: (lambda x: x))  # frames = the face
    plain = ScratchNet(image_size=32, widths=(4, 8), hidden=8).eval()
    mirrored = copy.deepcopy(plain)
    mirrored.mirror_average = True
    faces = torch.rand(5, 3, 32, 32)
    with torch.no_grad():
        one, both = plain(faces), (plain(faces) + plain(faces.flip(-1))) / 2
    read = measure_video_combine.frame_outputs
    for out, expected in ((read(plain, faces, 2), one), (read(mirrored, faces, 2), both),
                          (read(mirrored, faces, 2, once=True), one),  # --read-once
                          (read(mirrored, faces, 2, precision="fp32"), both)):  # through the app's fast path
        assert out.shape == (5, 2, 1 + AGE_BINS)
        for frame in range(2):
            torch.testing.assert_close(out[:, frame], expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(one, both, atol=1e-3)
