"""Where the faces are: the face finder shared by the app and by training (one definition of the model's input).

`FaceFinder.find` is what an upload goes through (MediaPipe detectors, tiles for small faces, the padded
fallback for tight crops); `main_face` picks the one labelled face of a training crop. Training runs every
image through the same finder and model.align, so the model learns on the crops the app will give it.
"""
from __future__ import annotations

import numpy as np

from model import align
from model.detect import Detection, merge, shared_detectors, shifted

DETECTORS = ("auto", "full", "short", "both")
# What an upload goes through unless the user changes it (the app, the API and the CLI), and so what training uses.
DEFAULT_DETECTOR = "auto"
DEFAULT_MIN_SCORE = 0.5
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
# Faces known to be near a box (a video's tracked faces) are looked for in a square NEAR_BOX_CONTEXT times the
# box's side around it, at least the full-range model's 192 px input (not upscaled). Measured on the three faces
# of three_portraits.jpg shown at 640 px wide (30-70 px): best scores 0.96/0.91/0.84 (the 30 px face scored
# 0.60 in a square of 3x its side, below the small-face bar of 0.65).
NEAR_BOX_CONTEXT = 4.0
NEAR_BOX_MIN_SIDE = 192
TIGHT_CROP_SHARE = 0.5  # a face found only after padding must span this share of the shorter side
# ...and score at least this. At 0.7 (the bar until Dec 2026) it still missed 105 of the 3,998 FairFace
# validation-split crops (profiles, mostly); chosen by a rule written before the count (docs/results.md,
# `python -m train.measure_tight_crops`): the lowest bar whose false "faces" in 600 face-free squares of the
# PASCAL photos stay within 1 point of 0.7's. At 0.6: 82 of the 105 found (the scratch CNN of then read 69 of them
# right), false faces in 10 of 600 squares (dark corners, a hand) against 4 (dog close-ups) at 0.7.
TIGHT_CROP_MIN_SCORE = 0.6
# Grey border on each side, as a share of the long side. Half of 3,000 FairFace *training* crops (224 px, the
# face ~half the frame) need this fallback; with a border of 1/4 it left 4.0% of them without a face, with 1/2
# 2.8% (1,464 of the 1,548 found, against 1,428), and it found faces in 17 of 1,306 face-free crops (photo
# backgrounds, FairFace shoulders and edges) against 15. UTKFace chips: 400/400 either way.
TIGHT_CROP_PAD = 0.5
TIGHT_CROP_NOTE = ("The image looks like a tight face crop: the face was found only after padding the borders, "
                   "and was predicted as such.")


def small_face_score(min_score: float) -> float:
    """The score a face found zoomed in (small-face tiles, around a tracked face) must reach."""
    return min(1.0, min_score + SMALL_FACE_EXTRA_SCORE)


class FaceFinder:
    def __init__(self, *, max_side: int = 1280, max_faces: int = 50,
                 tight_crop_min_score: float = TIGHT_CROP_MIN_SCORE):
        """max_side: images are downscaled to this for detection (faces are always cut from the original).
        max_faces: more are cut to the most confident, with a note. tight_crop_min_score: the padded
        fallback's bar (TIGHT_CROP_MIN_SCORE; other values for train.measure_tight_crops)."""
        self.max_side, self.max_faces = max_side, max_faces
        self.tight_crop_min_score = tight_crop_min_score
        self.detectors = shared_detectors()

    def find(self, rgb: np.ndarray, min_score: float, detector: str, notes: list[str]) -> list[Detection]:
        """Detections in reading order (left to right), at most `max_faces` (the most confident)."""
        if detector not in DETECTORS:
            raise ValueError(f"detector must be one of {DETECTORS}, not {detector!r}")
        found = self._detect(rgb, detector, min_score)
        if not found and detector == "auto":
            found = self._tight_crop(rgb, min_score)
            if found:
                notes.append(TIGHT_CROP_NOTE)
        if not found:
            notes.append("No face found. If the image is a face crop, try again with face detection off.")
        small_faces_note = self._small_faces_note(rgb, found)
        if len(found) > self.max_faces:
            notes.append(f"{len(found)} faces found; showing the {self.max_faces} most confident.")
        if small_faces_note:
            notes.append(small_faces_note)
        return self._in_reading_order(found)

    def find_near(self, rgb: np.ndarray, boxes, min_score: float) -> list[Detection]:
        """The whole image (one call, or 2x2 tiles for large images) plus a square around each of `boxes` that
        is small at detection scale: a clip's frame between two full scans, where the tracker says where the
        small faces were a moment ago. ~1 + (small faces) detector calls against ~17 for `find`'s tiles on a
        640x480 frame. Same order and cap as `find`, no notes (the full scans give them)."""
        found = [self._whole_image(rgb, min_score)]
        scale, small_score = self._detection_scale(rgb), small_face_score(min_score)
        for x, y, w, h in boxes:
            if max(w, h) * scale >= SMALL_FACES_UNLIKELY:
                continue  # the whole-image pass finds faces this big
            side = max(NEAR_BOX_CONTEXT * max(w, h), NEAR_BOX_MIN_SIDE)
            x0, y0 = int(max(0, x + w / 2 - side / 2)), int(max(0, y + h / 2 - side / 2))
            region = rgb[y0:int(y0 + side), x0:int(x0 + side)]
            if min(region.shape[:2]) < 8:
                continue
            near = self.detectors.detect(region, "full", small_score, self.max_side)
            found.append([shifted(d, x0, y0) for d in near])
        return self._in_reading_order(merge(*found))

    def _in_reading_order(self, found: list[Detection]) -> list[Detection]:
        """The `max_faces` most confident, left to right."""
        kept = sorted(found, key=lambda d: -d.score)[:self.max_faces]
        return sorted(kept, key=lambda d: (d.box[0], d.box[1]))

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
        found = self._whole_image(rgb, min_score)
        if found and min(d.box[2] for d in found) * self._detection_scale(rgb) >= SMALL_FACES_UNLIKELY:
            return found  # only big faces (a portrait, a selfie): the tiles would cost ~15 detector calls for nothing
        tiles = [tile for tile in SMALL_FACE_TILES if 1.5 * tile <= self._detection_side(rgb)]
        return merge(found, *(self.detectors.detect_small_faces(rgb, "full", small_face_score(min_score),
                                                                self.max_side, tile) for tile in tiles))

    def _whole_image(self, rgb, min_score: float) -> list[Detection]:
        """The full-range model on the whole image, and on 2x2 tiles too for a large one."""
        full = self.detectors.detect_tiled if max(rgb.shape[:2]) > TILE_ABOVE else self.detectors.detect
        return full(rgb, "full", min_score, self.max_side)

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
        for d in self.detectors.detect(padded, "short", max(min_score, self.tight_crop_min_score), self.max_side):
            if d.box[2] >= TIGHT_CROP_SHARE * min(height, width):
                x, y, w, h = d.box
                found.append(Detection((x - border, y - border, w, h), d.score, d.keypoints - np.float32(border)))
        return found[:1]


def main_face(faces, shape: tuple[int, ...]):
    """The face an image is about (anything with a .box: detections or the pipeline's faces): the largest;
    of equal size, the one nearest the centre. Training keeps this face of each labelled crop, and the
    evaluation scores this face of each upload."""
    i = main_box_index([face.box for face in faces], shape)
    return None if i is None else faces[i]


def main_box_index(boxes: list, shape: tuple[int, ...]) -> int | None:
    """main_face's choice among boxes (x, y, w, h): its index, None if there are none."""
    cy, cx = shape[0] / 2, shape[1] / 2

    def key(i):
        x, y, w, h = boxes[i]
        return w * h, -np.hypot(x + w / 2 - cx, y + h / 2 - cy)

    return max(range(len(boxes)), key=key) if boxes else None


def cut_faces(rgb: np.ndarray, detections: list[Detection | None]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Each detection's alignment matrix and aligned 200 px crop; None stands for the whole image as one face
    (detection off)."""
    matrices = [align.whole_image_matrix(rgb.shape) if d is None else align.alignment_matrix(d.keypoints)
                for d in detections]
    return matrices, [align.warp(rgb, m) for m in matrices]


def clip_box(box, shape) -> tuple[int, int, int, int]:
    """A face's box (x, y, w, h) in the image: detector boxes can stick out of it (a face cut by the edge);
    the part inside. None: the whole image."""
    if box is None:
        return 0, 0, shape[1], shape[0]
    x0, y0 = max(0, round(box[0])), max(0, round(box[1]))
    x1, y1 = min(shape[1], round(box[0] + box[2])), min(shape[0], round(box[1] + box[3]))
    return x0, y0, max(0, x1 - x0), max(0, y1 - y0)
