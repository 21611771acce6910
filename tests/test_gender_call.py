"""One 50% line: a face at exactly P(female) = 0.5 is labelled, explained, exported and scored as female."""
import numpy as np
import torch

from demo.pipeline import Face
from demo.video import Person
from model.cam import targets_for
from model.gender import gender_confidence, gender_name, says_female
from train.metrics import confusion, gender_correct


def test_the_line_is_inclusive_and_nan_is_no_call():
    assert says_female(0.5) and not says_female(0.4999)
    assert says_female(np.array([0.5, 0.49, np.nan])).tolist() == [True, False, False]
    assert gender_name(0.5) == "female" and gender_name(0.2) == "male"
    assert gender_confidence(0.5) == "F 50%" and gender_confidence(0.15) == "M 85%"


def test_label_gradcam_and_metrics_agree_at_the_line():
    p = torch.tensor([0.5, 0.3])
    signs = [t.sign for t in targets_for("gender", {"p_female": p})]
    assert signs == [1.0, -1.0]  # Grad-CAM explains the call the label shows
    assert gender_correct(p.numpy(), np.array([1, 0])).tolist() == [True, True]
    assert confusion(p.numpy(), np.array([1, 0])) == [[1, 0], [0, 1]]


def test_the_app_the_api_and_the_video_say_the_same():
    face = Face(index=0, box=(0, 0, 10, 10), p_female=0.5, age=30.0, age_low=25.0, age_high=35.0,
                      det_score=None, age_probs=[1 / 101] * 101)
    assert face.gender == "female" and face.to_record()["gender"] == "female"
    assert face.label().startswith("F 50%")
    person = Person(track=0, first_s=0.0, frames=2, p_female_sum=1.0)
    person.age_probs_sum[30] = 1.0
    assert person.to_record()["gender"] == "female" and person.label().startswith("F 50%")
