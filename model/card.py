"""Model card (the Hub repo's README.md) from a training run directory: `model_card(run_dir) -> markdown`.

A pure function of the files in the run (no network), so it is tested like any other. Metadata goes through
huggingface_hub's ModelCardData / EvalResult, which write the YAML header and the `model-index` the Hub reads.
The card carries this model's own figures and links to the full reports published beside it (eval/); how
each figure is produced, the other model's figures and their history are on the project's results page
(docs/results.md), which it names rather than repeats.
"""
from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from model.datasets import DATASETS, trained_on
from model.nets import hub_kwargs

DATASET_NAME = "UTKFace (deduplicated), test split"
FAIRFACE_NAME = "FairFace, validation set (never trained on)"
# Files the card links to: published with it by train.push (its EVAL_FILES), so the links resolve on the Hub.
REPORT, FAIRFACE_REPORT = "eval/report.md", "eval/fairface/report.md"
RESULTS_PAGE = ("`docs/results.md` in the demo's source (the Space that uses this model, listed on this page): "
                "how each figure is produced, both models side by side, and what changed between versions")
ARCH_NAMES = {"scratch": "a small CNN trained from scratch", "vgg16": "an ImageNet VGG16 conv base, fine-tuned"}


def model_card(run_dir: str | Path, repo_id: str | None = None) -> str:
    """Markdown (YAML metadata + body) describing the model trained in `run_dir`."""
    run = Path(run_dir)
    config = json.loads((run / "model" / "config.json").read_text())
    metrics = _read_json(run / "eval" / "metrics.json")
    datasets = trained_on(_read_json(run / "data_report.json")) or [(DATASETS["utkface"], None)]
    arch, size = config["arch"], config["image_size"]
    name = repo_id.split("/")[-1] if repo_id else f"age-gender-{arch}"

    hub = hub_kwargs()
    results = _eval_results(metrics)
    model_index = {"model_name": name, "eval_results": results} if results else {}  # needs both, or neither
    data = ModelCardData(
        library_name=hub["library_name"],
        license=hub["license"],
        tags=[*hub["tags"], arch],
        datasets=[d.name for d, _ in datasets],
        metrics=["accuracy", "f1", "mae"],
        pipeline_tag="image-classification",
        **model_index,
    )
    body = "\n\n".join(part for part in [
        f"# {name}\n\nEstimates the apparent age and gender of a face crop: {ARCH_NAMES.get(arch, arch)}, "
        f"{size}x{size} px input, one shared trunk and two heads (a gender logit calibrated by temperature "
        "scaling and an offset that evens out errors on women and men; a distribution over ages 0-100 giving "
        "an estimate and an 80% interval, temperature-scaled "
        "and corrected for ages pulled to the middle, both on validation). Part of the "
        "face age & gender demo, which adds face detection and Grad-CAM.",
        _usage(repo_id),
        INTENDED_USE,
        _training_data(run, datasets),
        PREPROCESSING.format(size=size) + (MIRROR if config.get("mirror_average") else ""),
        _training(run),
        _evaluation(metrics),
        _fairness(metrics),
        LIMITATIONS,
        FILES,
    ] if part)
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}\n"))


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _eval_results(metrics: dict) -> list[EvalResult]:
    """Test metrics in the Hub's model-index form."""
    gender, age = metrics.get("gender", {}), metrics.get("age", {})
    rows = [("image-classification", "Gender classification", t, n, gender.get(k)) for k, t, n in [
        ("accuracy", "accuracy", "Gender accuracy"), ("f1_weighted", "f1", "Gender F1 (weighted)"),
        ("ece", "ece", "Gender expected calibration error")]]
    rows += [("age-estimation", "Age estimation", t, n, age.get(k)) for k, t, n in [
        ("mae", "mae", "Age MAE (years)"), ("cs5", "cs5", "Age CS(5): share within 5 years")]]
    return [EvalResult(task_type=task, task_name=task_name, dataset_type="UTKFace", dataset_name=DATASET_NAME,
                       dataset_split=metrics.get("split", "test"), metric_type=metric, metric_name=metric_name,
                       metric_value=round(float(value), 4))
            for task, task_name, metric, metric_name, value in rows if value is not None] + _fairface_results(metrics)


def _fairface_results(metrics: dict) -> list[EvalResult]:
    """FairFace val: gender accuracy of the crops and through the demo's pipeline (every image counted)."""
    ff = metrics.get("fairface_val") or {}
    end_to_end = ff.get("detection_on") or {}
    rows = [("accuracy", "Gender accuracy (face crops)", ff.get("gender_accuracy")),
            ("accuracy", "Gender accuracy (end to end, detection on)", end_to_end.get("gender_accuracy")),
            ("accuracy", "Age-range accuracy (face crops)", ff.get("age_range_accuracy"))]
    return [EvalResult(task_type="image-classification", task_name=name.split(" (")[0], dataset_type="FairFace",
                       dataset_name=FAIRFACE_NAME, dataset_split="validation", metric_type=metric, metric_name=name,
                       metric_value=round(float(value), 4))
            for metric, name, value in rows if value is not None]


def _usage(repo_id: str | None) -> str:
    spec = repo_id or "<user>/<name>"
    return f"""## How to use

With the demo's code (safetensors only, nothing is unpickled):

```python
from model.hub import load_model
from model.preprocess import batch_from_faces

model = load_model("{spec}")  # or "{spec}@<commit sha>" to pin a revision
out = model.predict(batch_from_faces([face_crop], model.image_size))  # p_female, age, age_low, age_high
```"""


INTENDED_USE = """## Intended use

A teaching and research demo of multi-task learning, calibration and explainability (Grad-CAM) on faces.
It estimates how old a face *looks* and how a face's appearance was labelled in the training data.

Out of scope: any decision about a person (access, hiring, moderation, age verification, law enforcement,
identifying or profiling anyone), surveillance, and commercial use (the training data forbids it). Only run it
on faces of people who agreed to it."""


def _training_data(run: Path, datasets: list) -> str:
    sources = "\n".join(f"- [{d.name}]({d.url}): {d.about}. Licence: **{d.licence}**."
                        + (f" {n:,} faces in the training split." if n else "") for d, n in datasets)
    text = f"""## Training data and licence

{sources}

Labels were annotated from appearance. UTKFace is for non-commercial research only, and this model inherits
that restriction (licence here: CC BY-NC 4.0). Byte-identical duplicates were removed before splitting so
that no face leaks across splits; the exact split is in `split.csv` and the dataset report in
`data_report.json`.

Please cite:

```bibtex
""" + "\n\n".join(d.citation for d, _ in datasets) + "\n```"
    counts = _split_counts(run / "split.csv")
    if counts:
        text += ("\n\n| split | data set | faces | female | male | exact age |\n|---|---|---:|---:|---:|---:|\n"
                 + "\n".join(f"| {split} | {_dataset_name(source)} | {c['n']} | {c['female']} | {c['male']} | "
                             f"{c['age']} |" for (split, source), c in counts.items()))
    return text


def _dataset_name(source: str) -> str:
    return DATASETS[source].name if source in DATASETS else source


def _split_counts(path: Path) -> dict[tuple[str, str], Counter]:
    if not path.is_file():
        return {}
    counts: dict[tuple[str, str], Counter] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            c = counts.setdefault((row["split"], row.get("source", "")), Counter())
            c["n"] += 1
            c["female" if row["gender"] == "1" else "male"] += 1
            c["age"] += int(row["age"]) >= 0  # -1 = unknown, or a range label (FairFace)
    return counts


PREPROCESSING = """## Preprocessing

Input is an RGB face crop framed like UTKFace's aligned & cropped chips (the demo detects faces with MediaPipe
and reproduces that framing), resized to {size}x{size} px, scaled to [0, 1] and normalised with the ImageNet mean
and standard deviation (`model/preprocess.py`). The training recipe and its augmentations are described in
`docs/training.md` in the demo's source."""

MIRROR = """ Each face is read twice, as it is and mirrored left to right, and the two outputs are
averaged before the calibration (`mirror_average` in `config.json`; `model.predict` does it): better ages and
gender on validation than one reading, at twice the compute."""


def training_summary(train_metrics: dict, options: dict) -> str:
    """"Trained for 2 epochs (48 min on AMD EPYC, 2 cores)." from a run's metrics.json and train_config.json;
    a warm-started run says it was its last step: "Fine-tuned for 2 epochs (...) from the weights then in
    `assets/models/vgg16` (trained by earlier runs)." "" when they do not say."""
    if not train_metrics.get("epochs_run"):
        return ""
    epochs = train_metrics["epochs_run"]
    text = f"{'Fine-tuned' if options.get('init_from') else 'Trained'} for {epochs} epoch{'s' if epochs != 1 else ''}"
    if train_metrics.get("machine"):
        text += f" ({train_metrics.get('train_minutes', 0):.0f} min on {train_metrics['machine']})"
    if options.get("init_from"):
        text += f" from the weights then in `{options['init_from']}` (trained by earlier runs)"
    return text + "."


def _training(run: Path) -> str:
    options = _read_json(run / "train_config.json")
    scalars = {k: v for k, v in options.items() if isinstance(v, (str, int, float, bool)) or v is None}
    if not scalars:
        return ""
    rows = "\n".join(f"| `{k}` | `{v}` |" for k, v in sorted(scalars.items()))
    summary = training_summary(_read_json(run / "metrics.json") or _read_json(run / "train_metrics.json"), options)
    return (f"## Training\n\n{summary + ' ' if summary else ''}Options of the training run (`train_config.json`; "
            "per-epoch metrics in `history.csv` and `curves.png`):\n\n| option | value |\n|---|---|\n" + rows)


def _evaluation(metrics: dict) -> str:
    if not metrics:
        return "## Evaluation\n\nThis run was not evaluated."
    g, a = metrics.get("gender", {}), metrics.get("age", {})
    rows = [("Gender accuracy", _pct(g.get("accuracy"))), ("Gender F1 (weighted)", _num(g.get("f1_weighted"), 3)),
            ("Gender ECE (after temperature scaling)", _num(g.get("ece"), 3)),
            ("Age MAE (years)", _num(a.get("mae"), 2)), ("Age CS(5)", _pct(a.get("cs5")))]
    table = "\n".join(f"| {name} | {value} |" for name, value in rows if value != "-")
    text = (f"## Evaluation\n\nOn the held-out {metrics.get('split', 'test')} split ({metrics.get('n', '?')} faces; "
            f"age metrics on the {a.get('n', '?')} with a known age). Full report with its plots: "
            f"[{REPORT}]({REPORT}). More on the project's results page, {RESULTS_PAGE}."
            f"\n\n| metric | value |\n|---|---:|\n{table}")
    text += _fairface_evaluation(metrics.get("fairface_val") or {})
    confusion = g.get("confusion")
    if confusion:
        (tn, fp), (fn, tp) = confusion
        text += (f"\n\nGender confusion (rows: label, columns: prediction):\n\n| | male | female |\n|---|---:|---:|\n"
                 f"| male | {tn} | {fp} |\n| female | {fn} | {tp} |")
    return text


def _fairface_evaluation(ff: dict) -> str:
    """FairFace val: a second, race-balanced source the model was never selected on, scored on its face crops
    and end to end through the demo (a crop where no face is found counts as wrong)."""
    if "gender_accuracy" not in ff:
        return ""
    on = ff.get("detection_on", {})
    rows = [("Gender accuracy, face crops", _pct(ff.get("gender_accuracy"))),
            ("Gender accuracy, end to end (every image counted)", _pct(on.get("gender_accuracy"))),
            ("Face found by the detector", _pct(on.get("face_found"))),
            ("Age-range accuracy (expected age inside the labelled range)", _pct(ff.get("age_range_accuracy"))),
            ("Weakest race group, gender accuracy (face crops)", _worst_group(ff.get("race_gap") or {}))]
    table = "\n".join(f"| {name} | {value} |" for name, value in rows if value != "-")
    return (f"\n\nOn FairFace's validation set ({ff.get('n', '?')} faces, labelled with age ranges, never used "
            f"for training or model selection; per-race and per-age tables in "
            f"[{FAIRFACE_REPORT}]({FAIRFACE_REPORT})):\n\n"
            f"| metric | value |\n|---|---:|\n{table}")


def _worst_group(gap: dict) -> str:
    """"Black 81.1% (4.7 points below the mean of groups)", or "-"."""
    if not gap.get("worst_group"):
        return "-"
    name = gap["worst_group"].replace("_", " ")
    return f"{name} {_pct(gap['worst'])} ({100 * gap['gap']:.1f} points below the mean of groups)"


def _fairness(metrics: dict) -> str:
    """Per-group results: where the model is worse, and for whom."""
    tables = []
    for key, title in (("by_race", "race (as labelled in UTKFace)"), ("by_age_band", "age band")):
        groups = metrics.get(key) or {}
        names = sorted(groups, key=_band_start) if key == "by_age_band" else list(groups)
        if names:
            rows = "\n".join(_group_row(name, groups[name]) for name in names)
            tables.append(f"By {title}:\n\n| group | faces | gender accuracy | age MAE (years) |\n"
                          f"|---|---:|---:|---:|\n{rows}")
    if not tables:
        return ""
    return ("## Fairness\n\nTest results per group. Small groups have wide uncertainty, and differences reflect the "
            "data (UTKFace's group sizes and appearance-based labels) as much as the model. Signed age errors and "
            f"per-gender figures: [{REPORT}]({REPORT}).\n\n"
            + "\n\n".join(tables))


LIMITATIONS = """## Limitations and risks

- **Appearance does not determine gender.** The model outputs the probability that a face would be labelled
  "female" in a dataset with only two gender labels. It knows nothing about anyone's gender identity and says
  nothing about non-binary people.
- **Predictions can be wrong**, sometimes confidently: age is apparent age, off by several years on average
  and more for children and older adults; makeup, lighting, pose, occlusion and image quality all move the output.
- **Dataset biases**: UTKFace and FairFace labels were assigned from appearance, UTKFace's demographics are
  unbalanced and both data sets' race categories are coarse; errors are not spread evenly across groups (see Fairness).
- Trained on web photos of faces; drawings, heavily edited images and non-frontal faces are out of distribution."""

FILES = """## Files

`config.json` + `model.safetensors` (weights, including the calibration fitted on validation: temperatures and the
age warp), `int8.json` where published (activation ranges the demo builds an int8 body from on CPUs with int8
dot products, made by `python -m train.quantize`), `split.csv` (the data split),
`train_config.json`, `history.csv`, `curves.png`, `data_report.json`, and `eval/` (metrics, report, plots)."""


def _group_row(name: str, group: dict) -> str:
    accuracy, mae = _pct(group.get("gender_accuracy")), _num(group.get("age_mae"), 2)
    return f"| {name} | {group.get('n', '?')} | {accuracy} | {mae} |"


def _band_start(band: str) -> float:
    """'3-9' -> 3, '70+' -> 70: age bands in age order, not string order ('10-19' < '3-9')."""
    digits = band.split("-")[0].rstrip("+")
    return float(digits) if digits.isdigit() else float("inf")


def _pct(value) -> str:
    return "-" if value is None else f"{100 * float(value):.1f}%"


def _num(value, digits: int) -> str:
    return "-" if value is None else f"{float(value):.{digits}f}"
