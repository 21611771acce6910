"""The data sets a model can be trained on: name, link, licence and citation, in one place.

A model says what it was trained on in its data_report.json (written by `python -m train`, shipped with the
weights); the model card and the app's About tab read it through `trained_on`, so neither can name a data set
the model never saw.
"""
from __future__ import annotations

import io
import tarfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Dataset:
    key: str      # the source name in split.csv and data_report.json ("utkface", "fairface")
    name: str
    url: str
    licence: str  # as the data set states it
    about: str    # one sentence: what it is
    reference: str  # authors, title, venue: one line for the app
    citation: str  # BibTeX


DATASETS = {d.key: d for d in [
    Dataset("utkface", "UTKFace", "https://susanqq.github.io/UTKFace/", "non-commercial research only",
            "about 23,700 aligned and cropped web faces, ages 1-116, labelled with exact age, a binary gender "
            "and one of five race groups; image copyrights stay with their owners",
            "Zhang, Song, Qi, *Age Progression/Regression by Conditional Adversarial Autoencoder*, CVPR 2017",
            """@inproceedings{zhang2017age,
  title     = {Age Progression/Regression by Conditional Adversarial Autoencoder},
  author    = {Zhang, Zhifei and Song, Yang and Qi, Hairong},
  booktitle = {IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2017}
}"""),
    Dataset("fairface", "FairFace", "https://github.com/joojs/fairface", "CC BY 4.0",
            "108,501 faces from public Flickr photos (40,000 of its training crops used here), balanced over seven "
            "race groups, labelled with age ranges (0-2 ... 70+) and a binary gender",
            "Kärkkäinen, Joo, *FairFace: Face Attribute Dataset for Balanced Race, Gender, and Age for Bias "
            "Measurement and Mitigation*, WACV 2021",
            """@inproceedings{karkkainen2021fairface,
  title     = {FairFace: Face Attribute Dataset for Balanced Race, Gender, and Age for Bias Measurement and Mitigation},
  author    = {K{\\"a}rkk{\\"a}inen, Kimmo and Joo, Jungseock},
  booktitle = {IEEE/CVF Winter Conference on Applications of Computer Vision (WACV)},
  year      = {2021}
}"""),
]}


def trained_on(data_report: dict) -> list[tuple[Dataset, int | None]]:
    """(data set, training faces) per known source of a run's data_report.json, in training order. The face
    count is None where the report predates per-source counts (a single source: its train total)."""
    sources = [s.get("layout") for s in data_report.get("sources", [])]
    by_source = data_report.get("counts", {}).get("train", {}).get("by_source", {})
    found = []
    for key in sources:
        if key in DATASETS:
            n = by_source.get(key, {}).get("n")
            if n is None and len(sources) == 1:
                n = data_report.get("train_images")
            found.append((DATASETS[key], n))
    return found


def describe(datasets: list[tuple[Dataset, int | None]]) -> str:
    """"UTKFace (16,141 training faces) and FairFace (36,002 training faces)"."""
    parts = [d.name + (f" ({n:,} training faces)" if n else "") for d, n in datasets]
    return " and ".join(parts) if len(parts) < 3 else ", ".join(parts[:-1]) + " and " + parts[-1]


def utkface_chips(tar_path: str | Path, n: int, every: int = 50):
    """(name, RGB array) of every `every`-th chip of a UTKFace archive, n at most, read in memory (nothing is
    extracted). The names are sorted by age and identity, so the sample spreads over both. For measuring the
    detector and the chips' framing (demo/detect_eval.py, train/measure_framing.py)."""
    import numpy as np
    from PIL import Image

    with tarfile.open(tar_path, "r:gz") as tar:
        count = 0
        for i, member in enumerate(tar):
            if member.isfile() and member.name.endswith(".jpg") and i % every == 0:
                yield member.name, np.asarray(Image.open(io.BytesIO(tar.extractfile(member).read())).convert("RGB"))
                count += 1
                if count >= n:
                    return


def annotated_faces(wild: Path) -> dict[str, list[tuple[float, ...]]]:
    """file -> boxes (x, y, w, h) from dlib's training.xml / testing.xml (`<box top left width height>`)."""
    truth = {}
    for name in ("training.xml", "testing.xml"):
        for image in ET.parse(wild / name).getroot().iter("image"):
            truth[image.get("file")] = [tuple(float(b.get(k)) for k in ("left", "top", "width", "height"))
                                        for b in image.iter("box")]
    return truth
