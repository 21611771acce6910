"""A clip -> every person tracked through it, one steady answer per person, and the annotated clip.

Two passes over the decoded frames. Pass 1 finds and predicts faces (every `every`-th frame; the tracker in
demo/tracker.py links them into people) and accumulates each person's readouts. Pass 2 decodes again and
draws every person with their final, whole-clip answer, so a label never changes while the person is on
screen; boxes on frames between two analysed ones are interpolated. Decoding twice costs ~2 ms a 640x480
frame; keeping the frames instead would cost memory in proportion to the clip.

How a person's readouts are combined (`Person`): the per-frame age distributions (101 bins) are averaged and
the age and its 80% interval are read from the average; the gender probabilities are averaged. Measured with
`python -m train.measure_video_combine` (1,000 UTKFace validation faces as the app crops them, each made into
8 frames with small shifts, turns, light changes, blur and JPEG; scratch CNN): averaging probabilities gave
92.7% gender, log loss 0.192, age MAE 5.84 y, interval coverage 90.5%; averaging logits 92.6%, 0.192, 5.88 y,
88.9%; one frame alone 91.5%, 0.203, 6.19 y, 86.4%. Combining frames helps; the two rules are within noise of
each other, so the app keeps the probabilities, whose average also shows where the frames disagree.
tests/test_video.py checks that the answer is the mean of the frames and that detecting every third frame
moves it by < 0.05 in P(female) and < 2 y; `python -m demo.video_bench` reports both on a longer clip.
"""
from __future__ import annotations

import bisect
import dataclasses
import time
from dataclasses import dataclass, field
from typing import Callable

import cv2
import numpy as np
import torch

from demo import render, videoio
from demo.pipeline import age_probs_record
from model.imageio import BadImageError
from demo.tracker import SMOOTHED, FaceTracker
from model.age import AGE_BINS, age_interval, mean_age
from model.gender import gender_confidence, gender_name

THUMB_SIDE = 112  # px, the thumbnail of a person's sharpest frame
VIDEO_DETECTOR = "full"  # whole frame (+ 2x2 tiles above 700 px) and small-face tiles, as for a photo
# The small-face tiles (~17 detector calls on a 640x480 frame) run once per FULL_SCAN_SECONDS of clip; on the
# frames between, faces are looked for in the whole frame and around the tracked ones (1 + small faces calls).
# A small face entering the frame is found within that time.
FULL_SCAN_SECONDS = 1.0

Progress = Callable[[int, int, str], None]  # (frames done, frames in all, stage)


@dataclass
class FrameRow:
    frame: int
    time_s: float
    track: int
    box: tuple[int, int, int, int]
    p_female: float
    age: float
    age_low: float
    age_high: float
    det_score: float | None

    def to_record(self) -> dict:
        x, y, w, h = self.box
        return {"frame": self.frame, "time_s": round(self.time_s, 3), "track": self.track, "x": x, "y": y,
                "w": w, "h": h, "p_female": round(self.p_female, 4), "age": round(self.age, 1),
                "age_low": self.age_low, "age_high": self.age_high,
                "det_score": None if self.det_score is None else round(self.det_score, 4)}


@dataclass
class Person:
    """One track: its readouts summed over the frames it was analysed in, and its sharpest face."""
    track: int
    first_s: float
    last_s: float = 0.0
    frames: int = 0
    p_female_sum: float = 0.0
    age_probs_sum: np.ndarray = field(default_factory=lambda: np.zeros(AGE_BINS), repr=False)
    sharpness: float = -1.0
    crop: np.ndarray | None = field(default=None, repr=False)   # the sharpest aligned chip (for Grad-CAM)
    thumb: np.ndarray | None = field(default=None, repr=False)  # the sharpest frame's face, THUMB_SIDE px
    sharpest_s: float = 0.0

    def add(self, t: float, face, rgb: np.ndarray) -> None:
        self.last_s, self.frames = t, self.frames + 1
        self.p_female_sum += face.p_female
        self.age_probs_sum += np.asarray(face.age_probs)
        score = sharpness(face.crop)
        if score > self.sharpness:
            self.sharpness, self.crop, self.sharpest_s = score, face.crop, t
            self.thumb = thumbnail(rgb, face.box)

    @property
    def p_female(self) -> float:
        return self.p_female_sum / max(1, self.frames)

    @property
    def age_probs(self) -> np.ndarray:
        return self.age_probs_sum / max(1e-12, self.age_probs_sum.sum())

    @property
    def age(self) -> float:
        return float(mean_age(torch.from_numpy(self.age_probs)))

    @property
    def age_interval(self) -> tuple[float, float]:
        low, high = age_interval(torch.from_numpy(self.age_probs)[None])
        return float(low), float(high)

    @property
    def gender_confidence(self) -> str:
        return gender_confidence(self.p_female)

    def label(self) -> str:
        return f"{self.gender_confidence} · {self.age:.0f} y"

    def to_record(self, age_probs: bool = False) -> dict:
        """The person as plain data; age_probs: with the age distribution their answer comes from."""
        low, high = self.age_interval
        return {"track": self.track, "frames": self.frames, "first_s": round(self.first_s, 3),
                "last_s": round(self.last_s, 3), "p_female": round(self.p_female, 4),
                "gender": gender_name(self.p_female), "age": round(self.age, 1),
                "age_low": low, "age_high": high} | (age_probs_record(self.age_probs) if age_probs else {})


@dataclass
class VideoResult:
    info: videoio.VideoInfo
    people: list[Person]
    rows: list[FrameRow]
    analysed_frames: int
    decoded_frames: int
    notes: list[str]
    timings_s: dict[str, float]
    annotated: str | None = None  # path of the annotated clip, when one was asked for
    precision: str = ""  # what the model ran at (demo.pipeline.Result.precision)


def sharpness(crop: np.ndarray) -> float:
    """Variance of the Laplacian of the aligned chip: higher = sharper (chips are all one size, so comparable)."""
    return float(cv2.Laplacian(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var())


def thumbnail(rgb: np.ndarray, box, margin: float = 0.25) -> np.ndarray:
    x, y, w, h = box
    x0, y0 = max(0, int(x - margin * w)), max(0, int(y - margin * h))
    x1, y1 = min(rgb.shape[1], int(x + w * (1 + margin))), min(rgb.shape[0], int(y + h * (1 + margin)))
    face = rgb[y0:y1, x0:x1]
    if face.size == 0:
        face = rgb
    scale = THUMB_SIDE / max(face.shape[:2])
    return cv2.resize(face, (max(1, round(face.shape[1] * scale)), max(1, round(face.shape[0] * scale))),
                      interpolation=cv2.INTER_AREA)


def analyze(pipeline, path, *, every: int = 1, output: str | None = None, progress: Progress | None = None,
            min_score: float | None = None, detector: str = VIDEO_DETECTOR, info: videoio.VideoInfo | None = None,
            max_bytes: int = videoio.MAX_BYTES, max_seconds: float = videoio.MAX_SECONDS,
            scan_seconds: float = FULL_SCAN_SECONDS) -> VideoResult:
    """Track and predict every face of the clip at `path`; with `output`, also write the annotated clip there.
    scan_seconds: how often the finder scans the whole frame for small faces (its tiles); in between it looks
    only around the tracked faces and in the whole frame at once (0 = a full scan on every analysed frame).
    Raises videoio.BadVideoError (a user message) for unusable input."""
    if every < 1:
        raise ValueError("every must be >= 1")
    info = info or videoio.probe(path, max_bytes=max_bytes, max_seconds=max_seconds)
    total = max(1, info.frames)
    tracker = FaceTracker(alpha=1.0)
    people: dict[int, Person] = {}
    rows: list[FrameRow] = []
    notes: set[str] = set()
    timings = {"decode": 0.0, "faces": 0.0, "draw": 0.0, "encode": 0.0}
    analysed = decoded = 0
    last_scan = -np.inf
    clock = time.perf_counter()
    for index, (t, rgb) in enumerate(videoio.frames(path, info.rotation)):
        timings["decode"] += time.perf_counter() - clock
        decoded += 1
        if index % every == 0:
            start = time.perf_counter()
            full_scan = t - last_scan >= scan_seconds or detector not in ("full", "auto")
            near = None if full_scan else [track.box for track in tracker.tracks]
            last_scan = t if full_scan else last_scan
            try:
                result = pipeline(rgb, min_score=min_score, detector=detector, draw=False, near=near)
            except BadImageError as error:  # e.g. frames of a few pixels
                raise videoio.BadVideoError(f"The video's frames cannot be used: {error}.") from None
            notes.update(result.notes)
            tracks = tracker.update([(f.box, {k: getattr(f, k) for k in SMOOTHED}) for f in result.faces])
            for face, track in zip(result.faces, tracks):
                person = people.setdefault(track.id, Person(track.id, first_s=t))
                person.add(t, face, rgb)
                rows.append(FrameRow(index, t, track.id, face.box, face.p_female, face.age, face.age_low,
                                     face.age_high, face.det_score))
            analysed += 1
            timings["faces"] += time.perf_counter() - start
        if progress:
            progress(index + 1, max(total, index + 1), "finding faces")
        clock = time.perf_counter()
    numbered = renumber(people, rows)
    result = VideoResult(info, numbered, rows, analysed, decoded, sorted(notes), timings,
                         precision=pipeline.fast.precision)
    if output:
        write_annotated(path, output, result, every, progress, timings)
        result.annotated = str(output)
    return result


def renumber(people: dict[int, Person], rows: list[FrameRow]) -> list[Person]:
    """People numbered 1, 2, ... in order of first appearance (tracker ids skip numbers); rows follow."""
    ordered = sorted(people.values(), key=lambda p: (p.first_s, p.track))
    new = {p.track: i + 1 for i, p in enumerate(ordered)}
    for row in rows:
        row.track = new[row.track]
    return [dataclasses.replace(p, track=new[p.track]) for p in ordered]


def write_annotated(path, output, result: VideoResult, every: int, progress: Progress | None,
                    timings: dict[str, float]) -> None:
    """Pass 2: every frame with each person's box (interpolated between analysed frames) and final answer."""
    boxes = BoxTimeline(result.rows, every)
    by_track = {p.track: p for p in result.people}
    total = max(1, result.decoded_frames)
    with videoio.Writer(output, result.info.width, result.info.height, result.info.fps) as writer:
        scale = writer.size[0] / result.info.width
        clock = time.perf_counter()
        for index, (_, rgb) in enumerate(videoio.frames(path, result.info.rotation)):
            timings["decode"] += time.perf_counter() - clock
            start = time.perf_counter()
            if (rgb.shape[1], rgb.shape[0]) != writer.size:
                rgb = cv2.resize(rgb, writer.size, interpolation=cv2.INTER_AREA)
            shown = boxes.at(index)
            people = [by_track[track] for track, _ in shown]
            frame = render.annotate(rgb, [tuple(v * scale for v in box) for _, box in shown],
                                    [p.label() for p in people], [render.color_for(p.p_female) for p in people],
                                    [p.track for p in people]) if shown else rgb
            timings["draw"] += time.perf_counter() - start
            start = time.perf_counter()
            writer.write(frame)
            timings["encode"] += time.perf_counter() - start
            if progress:
                progress(index + 1, max(total, index + 1), "writing the annotated video")
            clock = time.perf_counter()


class BoxTimeline:
    """Each track's box on any frame: detected on analysed frames, linearly interpolated between two
    analysed frames `every` apart, held for up to `every - 1` frames after its last one."""

    def __init__(self, rows: list[FrameRow], every: int):
        self.every = every
        self.keys: dict[int, tuple[list[int], list[tuple]]] = {}
        for row in rows:
            frames, boxes = self.keys.setdefault(row.track, ([], []))
            frames.append(row.frame)
            boxes.append(row.box)

    def at(self, frame: int) -> list[tuple[int, tuple[float, float, float, float]]]:
        shown = []
        for track, (frames, boxes) in self.keys.items():
            i = bisect.bisect_right(frames, frame) - 1
            if i < 0 or frame - frames[i] >= self.every:
                continue
            box = boxes[i]
            if frame != frames[i] and i + 1 < len(frames) and frames[i + 1] - frames[i] == self.every:
                w = (frame - frames[i]) / self.every
                box = tuple((1 - w) * a + w * b for a, b in zip(boxes[i], boxes[i + 1]))
            shown.append((track, box))
        return shown
