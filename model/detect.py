"""Face detection with MediaPipe Tasks FaceDetector (BlazeFace), offline, with the models in assets/mediapipe/.

Two models: "short" (128 px input, faces within ~2 m: webcam, selfies) and "full" (192 px input, group
photos and small faces). Boxes and keypoints come back in the original image's pixels, even when the
image was downscaled for detection. Each model sees its whole input at 128/192 px, so faces that are small
in a large image are found in tiles: `detect_tiled` (2x2, collages) and `detect_small_faces` (small square
tiles, crowds: the pipeline's 256 and 384 px tiles find faces of ~40-130 px).
"""
from __future__ import annotations

import atexit
import contextlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

MODEL_DIR = Path(__file__).resolve().parents[1] / "assets" / "mediapipe"
MODEL_FILES = {
    "short": MODEL_DIR / "face_detection_short_range.tflite",
    "full": MODEL_DIR / "face_detection_full_range_sparse.tflite",
}
# BlazeFace keypoint order. "Right" is the person's right, i.e. the eye on the image's left.
RIGHT_EYE, LEFT_EYE, NOSE, MOUTH, RIGHT_EAR, LEFT_EAR = range(6)


@dataclass
class Detection:
    box: tuple[float, float, float, float]  # x, y, w, h in original-image pixels
    score: float
    keypoints: np.ndarray  # [6, 2] x, y in original-image pixels (order above)


@contextlib.contextmanager
def _quiet_stderr():
    """LiteRT prints pages of INFO/WARNING lines from C++ straight to fd 2 when a model loads: hide them."""
    try:
        saved = os.dup(2)
    except OSError:  # no usable fd 2 (some embedded interpreters): nothing to hide
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class FaceDetectors:
    """Both MediaPipe detectors, created on first use and reused. Thread-safe (one call at a time per model)."""

    def __init__(self, min_suppression: float = 0.3):
        self.min_suppression = min_suppression
        self._detectors: dict = {}
        self._locks = {name: threading.Lock() for name in MODEL_FILES}
        # Close before interpreter shutdown: MediaPipe's own __del__ then prints a traceback. It must run
        # before concurrent.futures stops its executors (MediaPipe calls C through one), hence threading's
        # pre-shutdown hook rather than atexit, which runs after. Those hooks run last-registered first, so
        # import concurrent.futures (which registers its own) now, not later with MediaPipe.
        import concurrent.futures.thread  # noqa: F401
        getattr(threading, "_register_atexit", atexit.register)(self.close)

    def _get(self, name: str):
        if name not in self._detectors:
            import mediapipe as mp
            from mediapipe.tasks.python import BaseOptions, vision

            options = vision.FaceDetectorOptions(
                base_options=BaseOptions(model_asset_path=str(MODEL_FILES[name])),
                # Filter on score ourselves so the caller can change the threshold without a new detector.
                min_detection_confidence=0.05,
                min_suppression_threshold=self.min_suppression,
            )
            with _quiet_stderr():
                detector = vision.FaceDetector.create_from_options(options)
                blank = np.zeros((97, 101, 3), np.uint8)  # warm-up: the first call logs too
                detector.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=blank))
            self._detectors[name] = detector
        return self._detectors[name]

    def detect(self, rgb: np.ndarray, model: str = "full", min_score: float = 0.5,
               max_side: int = 1280) -> list[Detection]:
        """Faces in an RGB uint8 image, best first. Images larger than `max_side` are downscaled for
        detection only (the detector resizes to 128/192 px anyway); coordinates are scaled back."""
        if model not in MODEL_FILES:
            raise ValueError(f"detector must be one of {sorted(MODEL_FILES)}, not {model!r}")
        import mediapipe as mp

        small, scale = downscaled(rgb, max_side)
        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(small))
        with self._locks[model]:
            result = self._get(model).detect(image)
        sh, sw = small.shape[:2]
        found = []
        for d in result.detections:
            score = d.categories[0].score
            if score < min_score:
                continue
            b = d.bounding_box
            box = (b.origin_x / scale, b.origin_y / scale, b.width / scale, b.height / scale)
            keypoints = np.array([[k.x * sw / scale, k.y * sh / scale] for k in d.keypoints], np.float32)
            found.append(Detection(box, float(score), keypoints))
        return sorted(found, key=lambda d: -d.score)

    def detect_tiled(self, rgb: np.ndarray, model: str = "full", min_score: float = 0.5,
                     max_side: int = 1280, grid: int = 2, overlap: float = 0.25) -> list[Detection]:
        """Whole image plus a grid x grid of overlapping tiles, merged. For large photos with many faces:
        the full-range model sees only 192x192 px, and in a 24-face collage it finds 16 faces whole, 24 tiled."""
        height, width = rgb.shape[:2]
        th, tw = (int(side / (grid - (grid - 1) * overlap)) for side in (height, width))
        found = [self.detect(rgb, model, min_score, max_side)]
        for i in range(grid):
            for j in range(grid):
                y, x = i * (height - th) // (grid - 1), j * (width - tw) // (grid - 1)
                found.append([shifted(d, x, y)
                              for d in self.detect(rgb[y:y + th, x:x + tw], model, min_score, max_side)])
        return merge(*found)

    def detect_small_faces(self, rgb: np.ndarray, model: str = "full", min_score: float = 0.5,
                           max_side: int = 1280, tile: int = 256, overlap: float = 1 / 3) -> list[Detection]:
        """Faces of at most `overlap` x `tile` px (at detection scale) found in overlapping square tiles of
        `tile` px, merged. The full-range model finds a face reliably once it spans ~1/6 of its 192 px input
        (64 UTKFace faces shown to it at 50 px: 64 found; at 38 px: 62; at 21 px: 25), so 256 px tiles
        reach faces of ~40-50 px. Neighbours overlap by `overlap` x tile, so every face up to that size lies
        whole in some tile. Bigger boxes are dropped: zoomed in this far, a dog's face passes for a face,
        and the whole-image passes find real big ones. Tiles are cut from the image downscaled to
        `max_side`, which bounds the cost (42 tiles for 1280x960, 12 for 640x480)."""
        small, scale = downscaled(rgb, max_side)
        found = [[shifted(d, x, y) for d in self.detect(small[y:y + h, x:x + w], model, min_score, max_side)
                  if d.box[2] <= overlap * tile]
                 for x, y, w, h in tile_grid(small.shape[:2], tile, overlap)]
        return [_scaled(d, 1 / scale) for d in merge(*found)]

    def close(self) -> None:
        with _quiet_stderr():
            for detector in self._detectors.values():
                detector.close()
        self._detectors.clear()


_shared: FaceDetectors | None = None
_shared_lock = threading.Lock()


def shared_detectors() -> FaceDetectors:
    """One set of detectors per process: they do not depend on the age/gender model, so pipelines share them."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = FaceDetectors()
        return _shared


def downscaled(rgb: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """The image with its long side at most `max_side` (area-averaged), and the scale applied (<= 1)."""
    height, width = rgb.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    if scale == 1.0:
        return rgb, scale
    return cv2.resize(rgb, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA), scale


def tile_grid(shape: tuple[int, int], side: int, overlap: float) -> list[tuple[int, int, int, int]]:
    """Square tiles (x, y, w, h) of `side` px covering an image of `shape` (h, w), evenly spread, neighbours
    overlapping by at least `overlap` x side (a tile is cut to the image where the image is narrower)."""
    def starts(length: int) -> list[int]:
        if length <= side:
            return [0]
        count = int(np.ceil((length - side) / (side * (1 - overlap)))) + 1
        return [round(i * (length - side) / (count - 1)) for i in range(count)]

    height, width = shape
    return [(x, y, min(side, width), min(side, height)) for y in starts(height) for x in starts(width)]


def shifted(d: Detection, x: float, y: float) -> Detection:
    """A detection made in a tile at (x, y), in the coordinates of the image the tile was cut from."""
    return Detection((d.box[0] + x, d.box[1] + y, d.box[2], d.box[3]), d.score, d.keypoints + np.float32([x, y]))


def _scaled(d: Detection, factor: float) -> Detection:
    """A detection made in a resized image, in the original image's pixels."""
    if factor == 1.0:
        return d
    return Detection(tuple(v * factor for v in d.box), d.score, d.keypoints * np.float32(factor))


def iou(a, b) -> float:
    """Intersection over union of two x, y, w, h boxes."""
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def containment(a, b) -> float:
    """Share of the smaller box that lies inside the other (a face cut by a tile edge lies inside the whole one)."""
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    smaller = min(a[2] * a[3], b[2] * b[3])
    return ix * iy / smaller if smaller > 0 else 0.0


def merge(*lists: list[Detection], overlap: float = 0.3, contained: float = 0.6) -> list[Detection]:
    """Greedy non-maximum suppression across several results: keep the best-scored of overlapping boxes."""
    kept: list[Detection] = []
    for d in sorted((d for ds in lists for d in ds), key=lambda d: -d.score):
        if all(iou(d.box, k.box) < overlap and containment(d.box, k.box) < contained for k in kept):
            kept.append(d)
    return kept
