"""The gender call: one 50% line for the label, the API's "gender" field, Grad-CAM's target and the metrics.

The model gives P(female); the call is "female" from FEMALE_AT up, so a face at exactly 50% is labelled,
explained and scored the same way everywhere (Grad-CAM once explained "male" for a face labelled "F 50%").
"""
from __future__ import annotations

import numpy as np

FEMALE_AT = 0.5


def says_female(p_female):
    """Whether P(female) is called female: a bool for a number, a bool array for an array (NaN: False)."""
    return np.asarray(p_female) >= FEMALE_AT if np.ndim(p_female) else bool(p_female >= FEMALE_AT)


def gender_name(p_female: float) -> str:
    return "female" if says_female(p_female) else "male"


def gender_confidence(p_female: float) -> str:
    """The call with its probability, the one way the app shows it: "M 85%" is P(female) = 0.15."""
    letter, p = ("F", p_female) if says_female(p_female) else ("M", 1 - p_female)
    return f"{letter} {p:.0%}"
