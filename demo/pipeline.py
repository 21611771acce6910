"""image -> faces -> aligned crops -> predictions (+ Grad-CAM) -> annotated image and per-face records.

Plain Python for the UI, the API and the CLI alike. A `Pipeline` holds one model and the detectors, loaded
once; all faces of an image go through the model as one batch.
"""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from demo import render
from model.imageio import load_image
from model import align
from model.cam import HEADS, explain
from model.detect import Detection
from model.faces import DEFAULT_DETECTOR, DEFAULT_MIN_SCORE, DETECTORS, FaceFinder, clip_box, cut_faces
from model.fast import TRACING, fast_model
from model.gender import gender_confidence, gender_name
from model.preprocess import batch_from_faces


@dataclass
class Face:
    index: int
    box: tuple[int, int, int, int]  # x, y, w, h in original-image pixels
    p_female: float
    age: float
    age_low: float
    age_high: float
    det_score: float | None         # None when the whole image was used as the face
    age_probs: list[float]          # 101 values, P(age = 0..100 y)
    cams: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # head -> SxS in [0, 1], chip coords
    crop: np.ndarray | None = field(default=None, repr=False)    # the aligned 200x200 RGB chip the model saw
    matrix: np.ndarray | None = field(default=None, repr=False)  # 2x3 affine, image px -> chip px

    @property
    def gender(self) -> str:
        return gender_name(self.p_female)

    @property
    def gender_confidence(self) -> str:
        """The predicted gender with its probability, the one way the app shows it: "M 85%" is P(female) = 0.15."""
        return gender_confidence(self.p_female)

    def label(self, interval: bool = True) -> str:
        """e.g. "F 97% · 31 y (26-36)": gender_confidence, then age with its 80% interval (left out with
        interval=False, as on the image, where crowds leave no room)."""
        age = f"{self.age:.0f} y ({self.age_low:.0f}-{self.age_high:.0f})" if interval else f"{self.age:.0f} y"
        return f"{self.gender_confidence} · {age}"

    def to_record(self, age_probs: bool = False) -> dict:
        """The face as plain data; age_probs: with its age distribution (101 values, `age_probs_record`)."""
        return {
            "index": self.index, "box": list(self.box), "p_female": round(self.p_female, 4), "gender": self.gender,
            "age": round(self.age, 1), "age_low": self.age_low, "age_high": self.age_high,
            "det_score": None if self.det_score is None else round(self.det_score, 4),
        } | (age_probs_record(self.age_probs) if age_probs else {})

    def cam_image(self, head: str) -> np.ndarray:
        """The aligned face with that head's Grad-CAM blended in (RGB uint8, 200x200)."""
        return render.face_overlay(self.crop, self.cams[head])


def age_probs_record(probs) -> dict:
    """{"age_probs": P(age) for 0, 1, ..., 100 years}, rounded for JSON and CSV."""
    return {"age_probs": [round(float(p), 5) for p in probs]}


def csv_row(record: dict) -> dict:
    """A record for CSV, which has no lists: its "age_probs" as columns age_p0 ... age_p100."""
    probs = record.get("age_probs")
    if probs is None:
        return record
    return {k: v for k, v in record.items() if k != "age_probs"} | {f"age_p{age}": p for age, p in enumerate(probs)}


@dataclass
class Result:
    faces: list[Face]
    annotated: np.ndarray | None    # RGB uint8, the photo with boxes and labels (None if not rendered)
    notes: list[str]                # things the user should know (no face, crop used as is, faces capped, ...)
    timings_ms: dict[str, float]
    image: np.ndarray | None = field(default=None, repr=False)  # the decoded input, RGB uint8
    precision: str = ""  # what the model ran at (model/fast.py): "int8", "bf16", "fp32"; an ensemble "int8+bf16"

    def cam_overlay(self, face_index: int, head: str) -> np.ndarray:
        """The full image with that face's CAM for `head` blended into the region its crop came from."""
        face = self.faces[face_index]
        if head not in face.cams:
            raise ValueError(f"no {head!r} CAM for face {face_index}: run the pipeline with cam_heads=({head!r},)")
        cam = align.unwarp(face.cams[head], face.matrix, self.image.shape)
        region = align.unwarp(np.ones_like(face.cams[head]), face.matrix, self.image.shape)
        return render.image_overlay(self.image, cam, region)


class Pipeline:
    def __init__(self, model, *, detector: str = DEFAULT_DETECTOR, min_score: float = DEFAULT_MIN_SCORE,
                 max_side: int = 1280, max_faces: int = 50, precision: str | None = None, reuse=()):
        """`model`: an AgeGenderNet, or a spec for `model.hub.load_model` ("scratch", "vgg16", dir, hub id).

        detector (model/faces.py): "auto" = full-range model on the whole image, plus 2x2 tiles above TILE_ABOVE
        px and small-face tiles (SMALL_FACE_TILES) on photos at least 1.5x their size, and if all that finds
        nothing, a padded short-range pass for tight face crops; "full" = the same without the crop fallback;
        "short" = the short-range model on the whole image only (fast, for webcam frames with a face near the
        camera); "both" = "full" merged with "short".
        min_score: detector confidence threshold. max_side: images are downscaled to this for detection
        (faces are always cut from the original). max_faces: more are cut to the most confident, with a note.
        precision: "auto" = int8 where the model ships int8 ranges and the CPU has int8 dot products, else bf16
        where it has bf16 matrix instructions, else fp32; "int8"; "bf16"; "fp32"; None reads $FACE_PRECISION
        (default auto). See model/fast.py.
        reuse: for an ensemble, its members' fast paths already built by other pipelines (shared, not copied).
        """
        if model is None or isinstance(model, str):
            from model.hub import load_model
            model = load_model(model)
        if detector not in DETECTORS:
            raise ValueError(f"detector must be one of {DETECTORS}, not {detector!r}")
        self.model = model.eval()
        self.fast = fast_model(self.model, precision, reuse)  # what predicts: self.model keeps its fp32 weights
        self.detector, self.min_score = detector, min_score
        self.finder = FaceFinder(max_side=max_side, max_faces=max_faces)
        self._lock = threading.Lock()  # one image at a time through the model

    def warm_up(self) -> None:
        """Load both detectors and run the model once with and once without Grad-CAM, e.g. at app start, so the
        first user does not wait (oneDNN prepares its kernels on a first call: 7 against 3 ms for scratch)."""
        blank = np.full((256, 256, 3), 128, np.uint8)
        for name in ("short", "full"):
            self.finder.detectors.detect(blank, name)
        self(blank, detect=False, draw=False)
        self(blank, detect=False, cam_heads=HEADS)

    def __call__(self, image, *, detect: bool = True, cam_heads: tuple[str, ...] = (), min_score: float | None = None,
                 detector: str | None = None, draw: bool = True, near: list | None = None) -> Result:
        """Anything `load_image` accepts -> Result. Raises BadImageError (a user message) for unusable input.
        draw=False skips drawing the annotated image (Result.annotated is None): for callers that only
        need the numbers, or draw their own. near: boxes where faces were a moment ago (a video's tracks):
        the faces are looked for there and in the whole image only (FaceFinder.find_near), not in the
        small-face tiles."""
        unknown = set(cam_heads) - set(HEADS)
        if unknown:
            raise ValueError(f"unknown CAM head(s) {sorted(unknown)}; choose from {HEADS}")
        timings: dict[str, float] = {}
        with _timed(timings, "decode"):
            rgb = load_image(image)
        notes: list[str] = []
        with _timed(timings, "detect"):
            min_score = min_score if min_score is not None else self.min_score
            if detect and near is not None:
                detections = self.finder.find_near(rgb, near, min_score)
            elif detect:
                detections = self.find_faces(rgb, min_score, detector or self.detector, notes)
            else:
                detections = [None]
                notes.append("Face detection was off: the whole image was used as one face.")
        with _timed(timings, "align"):
            matrices, crops = cut_faces(rgb, detections)
            batch = batch_from_faces(crops, self.model.image_size).to(next(self.model.parameters()).device)
        with self._lock:
            predicted, cams = self._predict(batch, cam_heads, timings)
        faces = []
        for i, (d, crop, matrix) in enumerate(zip(detections, crops, matrices)):
            box = clip_box(None if d is None else d.box, rgb.shape)
            faces.append(Face(
                index=i, box=box, p_female=float(predicted["p_female"][i]), age=float(predicted["age"][i]),
                age_low=float(predicted["age_low"][i]), age_high=float(predicted["age_high"][i]),
                det_score=None if d is None else d.score, age_probs=predicted["age_probs"][i].tolist(),
                cams={head: maps[i] for head, maps in cams.items()}, crop=crop, matrix=matrix))
        if not draw:
            return Result(faces, None, notes, timings, rgb, self.fast.precision)
        with _timed(timings, "render"):
            annotated = render.annotate(rgb, [f.box for f in faces], [f.label(interval=False) for f in faces],
                                        [render.color_for(f.p_female) for f in faces], [f.index + 1 for f in faces])
        return Result(faces, annotated, notes, timings, rgb, self.fast.precision)

    def find_faces(self, rgb: np.ndarray, min_score: float, detector: str, notes: list[str]) -> list[Detection]:
        """Detections in reading order, at most max_faces (model.faces.FaceFinder.find)."""
        return self.finder.find(rgb, min_score, detector, notes)

    def _predict(self, batch, cam_heads: tuple[str, ...], timings: dict[str, float]):
        if len(batch) == 0:
            timings["model"] = 0.0
            return {}, {}
        with TRACING.shared():  # never while another model's fast path is being traced (model/fast.py)
            if not cam_heads:
                with _timed(timings, "model"):
                    return self.fast.predict(batch), {}
            return explain(self.fast, batch, tuple(cam_heads), timings=timings)


@contextmanager
def _timed(timings: dict[str, float], stage: str):
    """Adds the block's wall time in ms to timings[stage]."""
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[stage] = timings.get(stage, 0.0) + (time.perf_counter() - start) * 1000
