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

from demo import align, render
from demo.detect import Detection, merge, shared_detectors
from demo.imageio import load_image
from model.cam import HEADS, explain
from model.fast import FastModel
from model.preprocess import batch_from_faces

DETECTORS = ("auto", "full", "short", "both")
TILE_ABOVE = 700       # px, long side: bigger photos are also scanned in 2x2 tiles (crowds, collages)
# Small faces: photos are also scanned in tiles of each SMALL_FACE_TILES size that is at most 2/3 of the long
# side (at detection scale): 256 px tiles find faces of ~40-85 px, 384 px ones ~60-130 px, the 2x2 tiles and
# the whole image bigger ones (python -m demo.detect_eval: an 8x8 grid of 50 px faces, 60/64 found, was 0).
# Zoomed in that far, a fist and dog fur scored up to 0.64, so a face found in those tiles must score
# SMALL_FACE_EXTRA_SCORE above the threshold: no false positive then on the test photos, and 60 of 64 faces
# of 50 px found (62 at +0.0, 58 at +0.2).
SMALL_FACE_TILES = (256, 384)
SMALL_FACE_EXTRA_SCORE = 0.15
# ...unless the whole-image pass found faces and none is smaller than this (px at detection scale): a portrait
# or a webcam frame then detects in one call (~6 ms) instead of ~17 (~100 ms on a 640x480 photo).
SMALL_FACES_UNLIKELY = 120
# A note when SMALL_FACE_NOTE_COUNT or more faces are under SMALL_FACE_NOTE px at detection scale: faces of
# 50 px are found ~94% of the time, of 40 px ~83%, so in such a photo some may well have been missed.
SMALL_FACE_NOTE = 60
SMALL_FACE_NOTE_COUNT = 3
TIGHT_CROP_SHARE = 0.5  # a face found only after padding must span this share of the shorter side
# ...and score at least this: 99% of 150 UTKFace chips score >= 0.78 that way (min 0.55), while a coffee cup
# photo scored 0.57. A chip below the bar is still predicted with detection off, as the note says.
TIGHT_CROP_MIN_SCORE = 0.7
# Grey border on each side, as a share of the long side. Half of 3,000 FairFace *training* crops (224 px, the
# face ~half the frame) need this fallback; with a border of 1/4 it left 4.0% of them without a face, with 1/2
# 2.8% (1,464 of the 1,548 found, against 1,428), and it found faces in 17 of 1,306 face-free crops (photo
# backgrounds, FairFace shoulders and edges) against 15. UTKFace chips: 400/400 either way.
TIGHT_CROP_PAD = 0.5


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
        return "female" if self.p_female >= 0.5 else "male"

    @property
    def gender_confidence(self) -> str:
        """The predicted gender with its probability, the one way the app shows it: "M 85%" is P(female) = 0.15."""
        letter, p = ("F", self.p_female) if self.p_female >= 0.5 else ("M", 1 - self.p_female)
        return f"{letter} {p:.0%}"

    def label(self, interval: bool = True) -> str:
        """e.g. "F 97% · 31 y (26-36)": gender_confidence, then age with its 80% interval (left out with
        interval=False, as on the image, where crowds leave no room)."""
        age = f"{self.age:.0f} y ({self.age_low:.0f}-{self.age_high:.0f})" if interval else f"{self.age:.0f} y"
        return f"{self.gender_confidence} · {age}"

    def to_record(self) -> dict:
        return {
            "index": self.index, "box": list(self.box), "p_female": round(self.p_female, 4), "gender": self.gender,
            "age": round(self.age, 1), "age_low": self.age_low, "age_high": self.age_high,
            "det_score": None if self.det_score is None else round(self.det_score, 4),
        }

    def cam_image(self, head: str) -> np.ndarray:
        """The aligned face with that head's Grad-CAM blended in (RGB uint8, 200x200)."""
        return render.face_overlay(self.crop, self.cams[head])


@dataclass
class Result:
    faces: list[Face]
    annotated: np.ndarray | None    # RGB uint8, the photo with boxes and labels (None if not rendered)
    notes: list[str]                # things the user should know (no face, crop used as is, faces capped, ...)
    timings_ms: dict[str, float]
    image: np.ndarray | None = field(default=None, repr=False)  # the decoded input, RGB uint8

    def cam_overlay(self, face_index: int, head: str) -> np.ndarray:
        """The full image with that face's CAM for `head` blended into the region its crop came from."""
        face = self.faces[face_index]
        if head not in face.cams:
            raise ValueError(f"no {head!r} CAM for face {face_index}: run the pipeline with cam_heads=({head!r},)")
        cam = align.unwarp(face.cams[head], face.matrix, self.image.shape)
        region = align.unwarp(np.ones_like(face.cams[head]), face.matrix, self.image.shape)
        return render.image_overlay(self.image, cam, region)


class Pipeline:
    def __init__(self, model, *, detector: str = "auto", min_score: float = 0.5, max_side: int = 1280,
                 max_faces: int = 50, precision: str | None = None):
        """`model`: an AgeGenderNet, or a spec for `model.hub.load_model` ("scratch", "vgg16", dir, hub id).

        detector: "auto" = full-range model on the whole image, plus 2x2 tiles above TILE_ABOVE px and small-face
        tiles (SMALL_FACE_TILES) on photos at least 1.5x their size, and if all that finds nothing, a padded
        short-range pass for tight face crops; "full" = the same without the crop fallback; "short" = the
        short-range model on the whole image only (fast, for webcam frames with a face near the camera);
        "both" = "full" merged with "short".
        min_score: detector confidence threshold. max_side: images are downscaled to this for detection
        (faces are always cut from the original). max_faces: more are cut to the most confident, with a note.
        precision: "auto" = bf16 where the CPU has bf16 matrix instructions, else fp32; "fp32"; "bf16"; None
        reads $FACE_PRECISION (default auto). See model/fast.py.
        """
        if model is None or isinstance(model, str):
            from model.hub import load_model
            model = load_model(model)
        if detector not in DETECTORS:
            raise ValueError(f"detector must be one of {DETECTORS}, not {detector!r}")
        self.model = model.eval()
        self.fast = FastModel(self.model, precision)  # what predicts: self.model keeps its fp32 weights
        self.detector, self.min_score, self.max_side, self.max_faces = detector, min_score, max_side, max_faces
        self.detectors = shared_detectors()
        self._lock = threading.Lock()  # one image at a time through the model

    def warm_up(self) -> None:
        """Load both detectors and run the model once with and once without Grad-CAM, e.g. at app start, so the
        first user does not wait (oneDNN prepares its kernels on a first call: 7 against 3 ms for scratch)."""
        blank = np.full((256, 256, 3), 128, np.uint8)
        for name in ("short", "full"):
            self.detectors.detect(blank, name)
        self(blank, detect=False, draw=False)
        self(blank, detect=False, cam_heads=HEADS)

    def __call__(self, image, *, detect: bool = True, cam_heads: tuple[str, ...] = (), min_score: float | None = None,
                 detector: str | None = None, draw: bool = True) -> Result:
        """Anything `load_image` accepts -> Result. Raises BadImageError (a user message) for unusable input.
        draw=False skips drawing the annotated image (Result.annotated is None): for callers that only
        need the numbers, or draw their own."""
        unknown = set(cam_heads) - set(HEADS)
        if unknown:
            raise ValueError(f"unknown CAM head(s) {sorted(unknown)}; choose from {HEADS}")
        timings: dict[str, float] = {}
        with _timed(timings, "decode"):
            rgb = load_image(image)
        notes: list[str] = []
        with _timed(timings, "detect"):
            if detect:
                detections = self.find_faces(rgb, min_score if min_score is not None else self.min_score,
                                             detector or self.detector, notes)
            else:
                detections = [None]
                notes.append("Face detection was off: the whole image was used as one face.")
        with _timed(timings, "align"):
            matrices = [align.whole_image_matrix(rgb.shape) if d is None else align.alignment_matrix(d.keypoints)
                        for d in detections]
            crops = [align.warp(rgb, m) for m in matrices]
            batch = batch_from_faces(crops, self.model.image_size).to(next(self.model.parameters()).device)
        with self._lock:
            predicted, cams = self._predict(batch, cam_heads, timings)
        faces = []
        for i, (d, crop, matrix) in enumerate(zip(detections, crops, matrices)):
            box = (0, 0, rgb.shape[1], rgb.shape[0]) if d is None else _clip(d.box, rgb.shape)
            faces.append(Face(
                index=i, box=box, p_female=float(predicted["p_female"][i]), age=float(predicted["age"][i]),
                age_low=float(predicted["age_low"][i]), age_high=float(predicted["age_high"][i]),
                det_score=None if d is None else d.score, age_probs=predicted["age_probs"][i].tolist(),
                cams={head: maps[i] for head, maps in cams.items()}, crop=crop, matrix=matrix))
        if not draw:
            return Result(faces, None, notes, timings, rgb)
        with _timed(timings, "render"):
            annotated = render.annotate(rgb, [f.box for f in faces], [f.label(interval=False) for f in faces],
                                        [render.color_for(f.p_female) for f in faces], [f.index + 1 for f in faces])
        return Result(faces, annotated, notes, timings, rgb)

    def find_faces(self, rgb: np.ndarray, min_score: float, detector: str, notes: list[str]) -> list[Detection]:
        """Detections in reading order (left to right), at most `max_faces` (the most confident)."""
        if detector not in DETECTORS:
            raise ValueError(f"detector must be one of {DETECTORS}, not {detector!r}")
        found = self._detect(rgb, detector, min_score)
        if not found and detector == "auto":
            found = self._tight_crop(rgb, min_score)
            if found:
                notes.append("The image looks like a tight face crop: the face was found only after padding "
                             "the borders, and was predicted as such.")
        if not found:
            notes.append("No face found. If the image is a face crop, try again with face detection off.")
        small_faces_note = self._small_faces_note(rgb, found)
        if len(found) > self.max_faces:
            notes.append(f"{len(found)} faces found; showing the {self.max_faces} most confident.")
            found = sorted(found, key=lambda d: -d.score)[:self.max_faces]
        if small_faces_note:
            notes.append(small_faces_note)
        return sorted(found, key=lambda d: (d.box[0], d.box[1]))

    def _detect(self, rgb, detector: str, min_score: float) -> list[Detection]:
        if detector == "short":
            return self.detectors.detect(rgb, "short", min_score, self.max_side)
        # "auto" and "full": the full-range model found 43 of the 43 faces in the annotated test photos with
        # no false positive; the short-range one 11 with 4 (python -m demo.detect_eval).
        found = self._full_range(rgb, min_score)
        if detector == "both":
            return merge(found, self.detectors.detect(rgb, "short", min_score, self.max_side))
        return found

    def _full_range(self, rgb, min_score: float) -> list[Detection]:
        """Whole image (2x2 tiles too for large photos) and small-face tiles, merged."""
        full = self.detectors.detect_tiled if max(rgb.shape[:2]) > TILE_ABOVE else self.detectors.detect
        found = full(rgb, "full", min_score, self.max_side)
        if found and min(d.box[2] for d in found) * self._detection_scale(rgb) >= SMALL_FACES_UNLIKELY:
            return found  # only big faces (a portrait, a selfie): the tiles would cost ~15 detector calls for nothing
        tiles = [tile for tile in SMALL_FACE_TILES if 1.5 * tile <= self._detection_side(rgb)]
        small_score = min(1.0, min_score + SMALL_FACE_EXTRA_SCORE)
        return merge(found, *(self.detectors.detect_small_faces(rgb, "full", small_score, self.max_side, tile)
                              for tile in tiles))

    def _detection_side(self, rgb) -> int:
        """The long side of the image as the detectors see it (downscaled to max_side)."""
        return min(max(rgb.shape[:2]), self.max_side)

    def _detection_scale(self, rgb) -> float:
        """Detection pixels per image pixel (below 1 for photos downscaled to max_side)."""
        return self._detection_side(rgb) / max(rgb.shape[:2])

    def _small_faces_note(self, rgb, found: list[Detection]) -> str | None:
        """Several faces near the detector's limit mean others, a little smaller, may have been missed."""
        scale = self._detection_scale(rgb)
        limit = SMALL_FACE_NOTE / scale  # in the photo's own pixels
        count = sum(d.box[2] < limit for d in found)
        if count < SMALL_FACE_NOTE_COUNT:
            return None
        # A downscaled photo loses detail to max_side, which a closer crop keeps; a small one lacks the pixels.
        remedy = "a closer crop helps" if scale < 1 else "a higher-resolution photo helps"
        return f"Small faces ({count} under {limit:.0f} px): some may have been missed; {remedy}."

    def _tight_crop(self, rgb, min_score: float) -> list[Detection]:
        """A face that fills the image (like a UTKFace chip) is too tight for the detectors: pad the image with
        grey and try the short-range model, which finds 400/400 UTKFace chips that way. Accept only a face
        spanning most of the image, so a random object found in the padding does not count."""
        height, width = rgb.shape[:2]
        border = int(max(height, width) * TIGHT_CROP_PAD)
        padded = np.pad(rgb, ((border, border), (border, border), (0, 0)), constant_values=128)
        found = []
        for d in self.detectors.detect(padded, "short", max(min_score, TIGHT_CROP_MIN_SCORE), self.max_side):
            if d.box[2] >= TIGHT_CROP_SHARE * min(height, width):
                x, y, w, h = d.box
                found.append(Detection((x - border, y - border, w, h), d.score, d.keypoints - np.float32(border)))
        return found[:1]

    def _predict(self, batch, cam_heads: tuple[str, ...], timings: dict[str, float]):
        if len(batch) == 0:
            timings["model"] = 0.0
            return {}, {}
        if not cam_heads:
            with _timed(timings, "model"):
                return self.fast.predict(batch), {}
        return explain(self.fast, batch, tuple(cam_heads), timings=timings)


def _clip(box, shape) -> tuple[int, int, int, int]:
    """Detector boxes can stick out of the image (a face cut by the edge): keep the part inside."""
    x0, y0 = max(0, round(box[0])), max(0, round(box[1]))
    x1, y1 = min(shape[1], round(box[0] + box[2])), min(shape[0], round(box[1] + box[3]))
    return x0, y0, max(0, x1 - x0), max(0, y1 - y0)


@contextmanager
def _timed(timings: dict[str, float], stage: str):
    """Adds the block's wall time in ms to timings[stage]."""
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[stage] = timings.get(stage, 0.0) + (time.perf_counter() - start) * 1000
