"""The About text: what the models are, how well they measured, where they are weak, and the caveats.

Numbers come from each bundled model's eval/metrics.json (written by the training side), never from
this file, so the page cannot drift from the models that are actually shipped.
"""
from __future__ import annotations

import math

from demo.ui_models import CHOICES, ModelBank
from model.card import training_summary
from model.datasets import DATASETS, describe, trained_on

def architecture(name: str, options: dict, size: int | None = None) -> str:
    """What the model is, from its training options (how many VGG16 blocks were tuned) and the input size its
    evaluation recorded (a network's face size is its main cost and a reason for its accuracy)."""
    reads = f" It reads each face at {size}x{size} px." if size else ""
    if name == "scratch":
        return "A small convolutional network trained from scratch: quick on a CPU." + reads
    if name == "ensemble":
        return ("Both networks above read each face: their calibrated gender scores are averaged and their age "
                "distributions combined into one. It costs both models' time.")
    blocks = int(options.get("tuned_blocks") or 1)
    tuned = "its last block" if blocks == 1 else f"its last {blocks} blocks"
    return (f"VGG16's ImageNet-pretrained convolutional base, {tuned} fine-tuned with two small heads: "
            "several times slower on a CPU." + reads)

CAVEATS = """
### Please read
- **Appearance does not determine gender.** The model outputs the probability that the data sets' annotators
  would have labelled a face "female" or "male"; it knows nothing about how a person identifies, and the data
  has only those two labels.
- **Predictions can be wrong**, sometimes confidently: lighting, pose, make-up, glasses, image quality and
  under-represented groups all move them. The age interval is the central 80% of the model's own
  distribution, not a guarantee.
- Do not use this demo to make decisions about people.

### Data
{data}

The models inherit the data sets' biases, including their two-valued gender labels, their appearance-based
race labels and UTKFace's uneven coverage of ages and ethnicities.

### Privacy
Photos and webcam frames are processed in memory and not kept: uploads and generated images are deleted
from the server's temporary folder within about two minutes. The camera's frames are never written; of the
annotated frames sent back, only a stream's newest 30 are on disk at a time, gone two minutes after it stops.
There is no flagging, no analytics, and no run history.
"""


def _test_metrics(metrics: dict) -> dict | None:
    """The block with overall gender/age metrics: at the top level or under a split name such as "test"."""
    if "gender" in metrics and "age" in metrics:
        return metrics
    for key in ("test", "eval", "metrics"):
        if isinstance(metrics.get(key), dict):
            return _test_metrics(metrics[key])
    return None


MIN_GROUP = 30  # smaller groups' numbers are mostly noise: not named as weak spots


def _weakest(groups: dict, key: str, worst) -> tuple[str, float] | None:
    scored = [(name, g[key]) for name, g in groups.items()
              if isinstance(g, dict) and isinstance(g.get(key), (int, float)) and math.isfinite(g[key])
              and g.get("n", 0) >= MIN_GROUP]
    return worst(scored, key=lambda item: item[1]) if scored else None


def data_markdown(datasets) -> str:
    """The data sets, with their licence and reference."""
    return "\n".join(f"- [{d.name}]({d.url}): {d.about}. Licence: **{d.licence}**. {d.reference}."
                     for d in datasets)


def model_section(name: str, metrics: dict | None, data_report: dict | None = None,
                  training: tuple[dict, dict] = ({}, {})) -> str:
    choice = CHOICES[name]
    size = ((metrics or {}).get("model") or {}).get("image_size")
    lines = [f"### {choice.label}", architecture(name, training[1], size)]
    datasets = trained_on(data_report or {})
    if datasets:
        lines.append(f"Trained on {describe(datasets)}.")
    if training_summary(*training):
        lines.append(training_summary(*training))
    block = _test_metrics(metrics) if metrics else None
    if block is None:
        lines.append("\n*No evaluation results are bundled with this model.*")
        return "\n".join(lines)
    gender, age = block["gender"], block["age"]
    if metrics.get("flip_average"):
        lines.append("It reads each face twice, as it is and mirrored, and averages the two: better on validation "
                     "than one reading, at twice the compute. The figures below were measured that way.")
    lines.append(f"\nMeasured on the held-out UTKFace {block.get('split', 'test')} split ({block.get('n', '?')} "
                 f"faces): gender accuracy **{gender['accuracy']:.1%}**, age mean absolute error "
                 f"**{age['mae']:.1f} years** ({age.get('cs5', float('nan')):.0%} of faces within 5 years).")
    if isinstance(age.get("interval_coverage"), float) and math.isfinite(age["interval_coverage"]):
        lines.append(f"The 80% age interval contained the true age for {age['interval_coverage']:.0%} of them.")
    weak = []
    for table, what in (("by_race", "ethnicity group"), ("by_age_band", "age band")):
        groups = block.get(table) or {}
        worst_age = _weakest(groups, "age_mae", max)
        worst_gender = _weakest(groups, "gender_accuracy", min)
        if worst_age:
            weak.append(f"- largest age error by {what}: **{worst_age[0]}** ({worst_age[1]:.1f} years)")
        if worst_gender:
            weak.append(f"- lowest gender accuracy by {what}: **{worst_gender[0]}** ({worst_gender[1]:.1%})")
    if weak:
        lines += [f"\nWhere it is weakest (groups of at least {MIN_GROUP} test faces):", *weak]
    lines += _fairface_lines(metrics.get("fairface_val") or {})
    return "\n".join(lines)


def _fairface_lines(ff: dict) -> list[str]:
    """FairFace val: photos unlike UTKFace's, balanced over race groups, never trained or selected on."""
    if not isinstance(ff.get("gender_accuracy"), float):
        return []
    line = (f"\nOn FairFace's validation set ({ff['n']:,} faces from a different, race-balanced collection, never "
            f"trained on): gender accuracy **{ff['gender_accuracy']:.1%}** on its face crops")
    on = ff.get("detection_on") or {}
    if isinstance(on.get("gender_accuracy"), float):
        line += (f", **{on['gender_accuracy']:.1%}** through this app (faces found in {on['face_found']:.1%} "
                 "of the crops; a miss counts as wrong)")
    line += f"; the expected age falls in the labelled age range for {ff['age_range_accuracy']:.0%}."
    gap = ff.get("race_gap") or {}
    if gap.get("worst_group"):
        line += (f" Lowest gender accuracy by race group: **{gap['worst_group'].replace('_', ' ')}** "
                 f"({gap['worst']:.1%}, {100 * gap['gap']:.1f} points below the mean of groups).")
    return [line]


def about_markdown(bank: ModelBank) -> str:
    sections = ["## About the models",
                "Each face is found with MediaPipe's BlazeFace detector, aligned, and read by one network with "
                "two heads: the probability that the face would be labelled female, and a distribution over "
                "ages 0–100 (its mean is the age shown; the interval covers the central 80%, widened where "
                "needed so that it holds the age shown). Grad-CAM shows "
                "which pixels pushed the chosen head's output up."]
    reports = {name: bank.data_report(name) or {} for name in CHOICES}
    sections += [model_section(name, bank.metrics(name), reports[name], bank.training(name)) for name in CHOICES]
    used = {d.key for report in reports.values() for d, _ in trained_on(report)} or {"utkface"}
    sections.append(CAVEATS.format(data=data_markdown(d for key, d in DATASETS.items() if key in used)))
    return "\n\n".join(sections)
