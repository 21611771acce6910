"""The app's models: one Pipeline per model choice, each loaded once and shared by every request.

The default model loads before the server starts; the other loads in a background thread right after,
so switching models later costs nothing and start-up stays short.
"""
from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from demo.pipeline import Pipeline
from model.hub import ENSEMBLE, ModelLoadError, load_bundled_ensemble

ROOT = Path(__file__).resolve().parents[1]
MODELS_DIR = ROOT / "assets" / "models"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Choice:
    name: str  # short id, used by the API ("scratch", "vgg16", "ensemble")
    label: str  # what the UI shows
    spec: str  # what model.hub.load_model receives (bundled name, local folder or Hub repo id)


CHOICES = {
    # Labels say what was measured: VGG16 is better on both evaluation sets beyond their noise, and the scratch
    # CNN runs several times faster on a CPU (README; docs/results.md, "Which model is the default").
    "scratch": Choice("scratch", "Scratch CNN · fast", "scratch"),
    "vgg16": Choice("vgg16", "VGG16 · more accurate, slower", "vgg16"),
    # Both networks on every face, answers averaged (model/ensemble.py): better than VGG16 on FairFace's gender
    # beyond the noise, no different on UTKFace, and the slowest (it runs both).
    "ensemble": Choice("ensemble", "Both together · best on FairFace, slowest", "ensemble"),
}


class ModelBank:
    """Pipelines by choice name. `loader(spec) -> model` is model.hub.load_model in the app."""

    def __init__(self, loader: Callable, specs: dict[str, str] | None = None, **pipeline_kwargs):
        self._loader = loader
        self._specs = {name: (specs or {}).get(name, c.spec) for name, c in CHOICES.items()}
        self._pipeline_kwargs = pipeline_kwargs
        self._pipelines: dict[str, Pipeline] = {}
        self._errors: dict[str, str] = {}
        self._locks = {name: threading.Lock() for name in CHOICES}

    def get(self, name: str) -> Pipeline:
        """The pipeline for `name`, loading it on first use; raises ModelLoadError with a clean message."""
        if name not in CHOICES:
            raise ModelLoadError(f"Unknown model {name!r}: choose one of {', '.join(CHOICES)}.")
        with self._locks[name]:  # two first requests must not load the same model twice
            if name not in self._pipelines:
                if name in self._errors:  # a failed load is not retried on every frame
                    raise ModelLoadError(self._errors[name])
                try:
                    model = self._load(name)
                except Exception as error:  # any loader failure becomes one readable sentence
                    if not isinstance(error, ModelLoadError):  # unexpected: keep the traceback in the log
                        log.exception("loading model %s failed", name)
                    self._errors[name] = f"The {CHOICES[name].label} model could not be loaded: {error}"
                    raise ModelLoadError(self._errors[name]) from None
                # the ensemble's members are the other pipelines' models: their fast paths are shared too
                reuse = [p.fast for p in self._pipelines.values() if not hasattr(p.model, "members")]
                self._pipelines[name] = Pipeline(model, reuse=reuse, **self._pipeline_kwargs)
            return self._pipelines[name]

    def _load(self, name: str):
        """The model for `name`. The ensemble is built from this bank's own two models (their specs, loaded once
        and shared) with the bundled ensemble's calibration."""
        if name == ENSEMBLE and self._specs[name] == CHOICES[name].spec:
            return load_bundled_ensemble(MODELS_DIR, lambda spec: self.get(spec).model if spec in CHOICES
                                         else self._loader(spec))
        return self._loader(self._specs[name])

    def preload(self, names) -> threading.Thread:
        """Load `names` in a background thread and warm each up (Pipeline.warm_up: detectors, model, Grad-CAM):
        the first real request then pays for none of it. Load errors are kept and reported when the model
        is used."""
        def run():
            for name in names:
                try:
                    self.get(name).warm_up()
                except ModelLoadError:
                    pass
        thread = threading.Thread(target=run, name="preload-models", daemon=True)
        thread.start()
        return thread


    def metrics(self, name: str) -> dict | None:
        """Measured test metrics for a model, as written by train/evaluate.py (eval/metrics.json)."""
        return self._model_json(name, "eval/metrics.json")

    def data_report(self, name: str) -> dict | None:
        """What the model was trained on, as written by python -m train (data_report.json)."""
        return self._model_json(name, "data_report.json")

    def training(self, name: str) -> tuple[dict, dict]:
        """How the model was trained: (train_metrics.json, train_config.json), each {} when not shipped."""
        return self._model_json(name, "train_metrics.json") or {}, self._model_json(name, "train_config.json") or {}

    def _bundled_members(self) -> bool:
        """Whether the app's ensemble is the bundled one's: its members are the other two choices, as shipped (its
        evaluation says nothing about an ensemble of other models)."""
        return all(self._specs[name] == CHOICES[name].spec for name in CHOICES if name != ENSEMBLE)

    def _model_json(self, name: str, path: str) -> dict | None:
        """A JSON file shipped with a model: in the model's own folder (a local model folder given as its spec;
        the bundled assets/models/<name>/ for the default spec; for the ensemble, only with the bundled members).
        None when not known, e.g. a Hub repo id: never another model's file."""
        spec = self._specs[name]
        if Path(spec).is_dir():
            folder = Path(spec)
        elif spec == CHOICES[name].spec and (name != ENSEMBLE or self._bundled_members()):
            folder = MODELS_DIR / name
        else:
            return None
        try:
            return json.loads((folder / path).read_text())
        except (OSError, ValueError):
            return None
