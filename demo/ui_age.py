"""The age distribution plot the Photo and Video tabs draw for the chosen face or person.

The age shown is the mean of a distribution over 0-100 years and its 80% interval that distribution's 10th-90th
percentile (model/age.py): the plot shows the whole of it, so a reading like "somewhere from 18 to 40" is seen
as such. Drawn by Gradio's own BarPlot from a small table.
"""
from __future__ import annotations

import gradio as gr
import numpy as np
import pandas as pd

INTERVAL_PART = "in the 80% interval"
LABEL = "Age distribution (orange: the 80% interval; the age shown is its mean)"


def age_plot(elem_id: str, height: int = 240) -> gr.BarPlot:
    # No legend: Gradio clips it under the plot at this size, so the label says what orange means.
    return gr.BarPlot(x="age", y="probability", color="years", x_title="age (years)", y_title="probability",
                      x_lim=[0, 100], height=height, color_map={INTERVAL_PART: "#ea580c", "outside": "#94a3b8"},
                      colors_in_legend=[], label=LABEL, elem_id=elem_id)


def age_table(probs, low: float, high: float) -> pd.DataFrame:
    """P(age) for each year 0-100, each year marked in or outside the interval [low, high] (whole years)."""
    ages = np.arange(len(probs))
    inside = (ages >= round(low)) & (ages <= round(high))
    return pd.DataFrame({"age": ages, "probability": np.round(np.asarray(probs, dtype=float), 5),
                         "years": np.where(inside, INTERVAL_PART, "outside")})
