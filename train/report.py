"""The evaluation reports as Markdown: UTKFace's (report.md, shipped with a model) and FairFace's.

Plain functions of the metrics dicts that train/evaluate.py computes and writes as metrics.json, so a report
can be rebuilt from a metrics.json alone.
"""
from __future__ import annotations

from train.data import RACES
from train.metrics import worst_band

MIN_GROUP = 30  # the worst-group gap ignores smaller groups (their accuracy is mostly noise)
END_TO_END_MODES = {"detection_on": True, "detection_off": False}


def ordered(table: dict, order) -> dict:
    """The table's groups in `order`, others after it (alphabetically)."""
    return {name: table[name] for name in [o for o in order if o in table] + sorted(set(table) - set(order))}


def band_order(bands) -> list[str]:
    return sorted(bands, key=lambda b: int(b.split("-")[0].rstrip("+")) if b[0].isdigit() else 999)


def _table(title: str, table: dict[str, dict], order: list[str]) -> str:
    """Markdown table of a group table; the age columns are those of the label kinds present."""
    columns = [("n", "n", "{}"), ("gender_accuracy", "gender accuracy", "{:.3f}"),
               ("age_mae", "age MAE (years)", "{:.2f}"), ("age_range_accuracy", "age range accuracy", "{:.3f}"),
               ("age_interval_overlap", "80% interval overlap", "{:.3f}"),
               ("age_signed_error", "age signed error (years)", "{:+.2f}")]
    first = next(iter(table.values()), {})
    columns = [c for c in columns if c[0] in first]
    rows = [f"| {title} | " + " | ".join(c[1] for c in columns) + " |", "|---|" + "---:|" * len(columns)]
    for name in ordered(table, order):
        rows.append(f"| {name} | " + " | ".join(fmt.format(table[name][key]) for key, _, fmt in columns) + " |")
    return "\n".join(rows)


def _fairness(m: dict) -> str:
    return f"""{_table("race", m['by_race'], list(RACES))}

{_table("age band", m['by_age_band'], band_order(m['by_age_band']))}

{_table("gender", m['by_gender'], ["male", "female"])}"""


def _worst_band(m: dict) -> str:
    """"10-19: +5.6" (train.metrics.worst_band), or "n/a" without any face in those bands."""
    worst = worst_band(m["by_age_band"])
    return "n/a" if worst is None else f"{worst[0]}: {worst[1]:+.1f}"


def _age_calibration(m: dict) -> str:
    """" (calibrated, T = 0.856)" for a model whose age distribution was temperature-scaled, else ""."""
    t = m["model"].get("age_temperature", 1.0)
    return "" if t == 1.0 else f" (calibrated, T = {t:.3f})"


def _offset(m: dict) -> str:
    """", offset +0.13" for a model whose 50% line was moved to even out women's and men's errors, else ""."""
    b = m["model"].get("gender_offset", 0.0)
    return "" if b == 0.0 else f", offset {b:+.2f}"


def _gender_rows(m: dict) -> str:
    g = m["gender"]
    return f"""| gender accuracy | {g['accuracy']:.4f} |
| gender F1 (weighted) | {g['f1_weighted']:.4f} |
| gender ECE (calibrated, T = {m['model']['gender_temperature']:.3f}{_offset(m)}) | {g['ece']:.4f} |
| gender ECE (before calibration) | {g['ece_uncalibrated']:.4f} |"""


def _confusion(m: dict) -> str:
    (tn, fp), (fn, tp) = m["gender"]["confusion"]
    return (f"Confusion (rows true, columns predicted): male→male {tn}, male→female {fp}, female→male {fn}, "
            f"female→female {tp}.")


def report_markdown(title: str, m: dict) -> str:
    a = m["age"]
    kids = a["ages_0_12"]
    flip = " (outputs averaged with the mirror image)" if m.get("flip_average") else ""
    about = (f"\nData: {m['data']}." if m.get("data") else "") + \
        (f"\nCommand: `{m['command']}`" if m.get("command") else "")
    text = f"""# Evaluation: {title} ({m['model']['arch']}, {m['model']['image_size']} px) on the {m['split']} split{flip}

n = {m['n']} faces (deduplicated UTKFace, split file `split.csv`).{about}

| metric | value |
|---|---:|
{_gender_rows(m)}
| age MAE (years) | {a['mae']:.2f} |
| age CS@5 (share within 5 years) | {a['cs5']:.3f} |
| 80% age interval coverage{_age_calibration(m)} | {a['interval_coverage']:.3f} |
| age mean signed error (years, + = reads older) | {a['mean_signed_error']:+.2f} |
| ages 0-12 (n = {kids['n']}): age MAE (years) | {kids['mae']:.2f} |
| ages 0-12: age mean signed error (years) | {kids['mean_signed_error']:+.2f} |
| worst age band, 3-9 to 60-69 (mean signed error, years) | {_worst_band(m)} |

{_confusion(m)}

## Fairness

{_fairness(m)}

![confusion](confusion.png) ![reliability](reliability.png) ![age](age_scatter.png)
![by race](by_race.png) ![by age band](by_age_band.png)
"""
    if "not_evaluated" in m.get("fairface_val", {}):
        text += f"\nFairFace validation set: not evaluated ({m['fairface_val']['not_evaluated']}).\n"
    elif "fairface_val" in m:
        f = m["fairface_val"]
        lines = [f"\n## FairFace validation set (another source, n = {f['n']})\n",
                 f"Model on the crops: gender accuracy {f['gender_accuracy']:.4f}, age range accuracy "
                 f"{f['age_range_accuracy']:.3f}, interval overlap {f['age_interval_overlap']:.3f}, mean signed "
                 f"error vs the range's middle {f['age_mean_signed_error']:+.2f} years."]
        for name in END_TO_END_MODES:
            if name in f:
                e = f[name]
                lines.append(f"App path, {name.replace('_', ' ')}: face found {e['face_found']:.3f}, gender accuracy "
                             f"{e['gender_accuracy']:.4f}, age range accuracy {e['age_range_accuracy']:.3f} "
                             f"(every image counted; no face = wrong).")
        lines.append("Details: [fairface/report.md](fairface/report.md).")
        text += "\n".join(lines) + "\n"
    return text


def _gap(gap: dict) -> str:
    """A worst-group gap as "0.031 (Black)", or "n/a" when no group is big enough to name."""
    return f"{gap['gap']:.3f} ({gap['worst_group']})" if gap["worst_group"] else f"n/a (no group of {MIN_GROUP}+)"


def fairface_report(m: dict) -> str:
    r, d = m["age_range"], m["data"]
    subset = (f"a seeded race-stratified subset of {d['chosen']} of the {d['usable']} usable rows (--limit)"
              if d["limit"] and d["chosen"] < d["usable"] else f"all {d['usable']} usable rows")
    skipped = {k: v for k, v in d["skipped"].items() if v}
    rows = f"{d['rows']} rows" + (f", skipped {skipped}" if skipped else "")
    flip = " (outputs averaged with the mirror image)" if m.get("flip_average") else ""
    gap = m["race_gap"]
    framing = f"the central {d['framing_crop']:.0%} of each side (train.data.FRAMING_CROP)" if d.get("framing_crop") \
        else "the whole image"
    if d.get("crops") == "app":  # train/aligned.py: as training cuts them since the models train on app crops
        framing = f"each face found and aligned as the app does (where no face is found: {framing})"
    text = f"""# Evaluation: {m['model']['arch']} ({m['model']['image_size']} px) on FairFace's validation set{flip}

n = {m['n']} faces.
Data: FairFace's validation set (`{d['root']}`, `fairface_label_val.csv`: {rows}), {subset};
{d['unreadable']} unreadable.
FairFace val is for evaluation only: nothing in training or model selection saw it.
Ages are labelled as ranges ("20-29"; "70+" is taken as 70-100, so its middle is 85).
Command: `{m['command']}`

## The model on the crops

The 224 px crops (0.25 margin around the face) read as training reads FairFace: {framing}, resized to
{m['model']['image_size']} px.

| metric | value |
|---|---:|
{_gender_rows(m)}
| age range accuracy (expected age, to the year, inside the range) | {r['range_accuracy']:.3f} |
| 80% interval overlaps the range | {r['interval_overlap']:.3f} |
| age mean signed error vs the range's middle (years) | {r['mean_signed_error']:+.2f} |
| worst age band, 3-9 to 60-69 (mean signed error vs the range's middle, years) | {_worst_band(m)} |
| worst race's gender-accuracy gap to the mean of races | {_gap(gap)} |

{_confusion(m)}

{_fairness(m)}

![confusion](confusion.png) ![reliability](reliability.png) ![age by range](age_by_range.png)
![by race](by_race.png) ![by age band](by_age_band.png)
"""
    if "end_to_end" in m:
        e2e = m["end_to_end"]
        rows = ["| | face found | gender accuracy | gender accuracy where found | age range accuracy | worst race gap "
                "| s per image |", "|---|---:|---:|---:|---:|---:|---:|"]
        for name, e in e2e.items():
            rows.append(f"| {name.replace('_', ' ')} | {e['face_found']:.3f} | {e['gender_accuracy']:.4f} | "
                        f"{e['gender_accuracy_where_found']:.4f} | "
                        f"{e['age_range_accuracy']:.3f} | {_gap(e['race_gap'])} "
                        f"| {e['ms_per_image'] / 1000:.3f} |")
        races = [race for race in RACES if race in m["by_race"]]
        by_race = ["| race | n | model on crops | " + " | ".join(f"{n.replace('_', ' ')}: found, gender accuracy"
                                                              for n in e2e) + " |",
                   "|---|---:|---:|" + "---:|" * len(e2e)]
        for race in races:
            by_race.append(f"| {race} | {m['by_race'][race]['n']} | {m['by_race'][race]['gender_accuracy']:.3f} | "
                           + " | ".join(f"{e['by_race'][race]['face_found']:.3f}, "
                                        f"{e['by_race'][race]['gender_accuracy']:.3f}" for e in e2e.values()) + " |")
        text += f"""
## End to end: the demo's path (demo.pipeline), as an upload

Each image goes through `Pipeline(model)` as an upload would: detection on (the auto detector; the largest
face, of equal size the most central, is the one scored), and detection off (the whole image is the face).
Every image counts: one with no face found is wrong for gender and for age. The model ran at the app's
precision ({next(iter(e2e.values()))['precision']}; demo/pipeline.py, model/fast.py).

{chr(10).join(rows)}

{chr(10).join(by_race)}

![end to end by race](end_to_end_by_race.png)
"""
    return text
