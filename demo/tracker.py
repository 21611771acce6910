"""Per-face smoothing for the webcam stream: a small IoU tracker with exponential moving averages.

Single frames are noisy (a blink, a half-turned head), so raw labels flicker from frame to frame. Faces
are matched to the previous frame's tracks by box overlap, and each track keeps a running average of
its readouts. No identity is learned or stored: a track is forgotten after a few frames without a match.
"""
from __future__ import annotations

from dataclasses import dataclass

from model.detect import iou

Box = tuple[float, float, float, float]  # x, y, w, h in pixels

SMOOTHED = ("p_female", "age", "age_low", "age_high")


@dataclass
class Track:
    id: int
    box: Box
    values: dict[str, float]  # smoothed readouts, keys from SMOOTHED
    hits: int = 1  # frames this face was seen in
    misses: int = 0  # consecutive frames without a match


class FaceTracker:
    """Matches each frame's faces to tracks (greedy, highest IoU first) and smooths their readouts.

    alpha is the weight of the newest frame: 1.0 = no smoothing, smaller = steadier but slower to react.
    """

    def __init__(self, alpha: float = 0.35, min_iou: float = 0.3, max_misses: int = 5):
        if not 0 < alpha <= 1:
            raise ValueError("alpha must be in (0, 1]")
        self.alpha = alpha
        self.min_iou = min_iou
        self.max_misses = max_misses
        self.tracks: list[Track] = []
        self._next_id = 1

    def update(self, faces: list[tuple[Box, dict[str, float]]]) -> list[Track]:
        """Feed one frame's faces as (box, readouts); returns one track per face, in the same order."""
        pairs = sorted(((iou(t.box, box), ti, fi) for ti, t in enumerate(self.tracks)
                        for fi, (box, _) in enumerate(faces)), reverse=True)
        track_of: dict[int, Track] = {}
        used: set[int] = set()
        for overlap, ti, fi in pairs:
            if overlap < self.min_iou:
                break
            if ti in used or fi in track_of:
                continue
            used.add(ti)
            track_of[fi] = self.tracks[ti]

        for ti, track in enumerate(self.tracks):
            if ti not in used:
                track.misses += 1
        self.tracks = [t for t in self.tracks if t.misses <= self.max_misses]

        out = []
        for fi, (box, values) in enumerate(faces):
            new = {k: float(values[k]) for k in SMOOTHED}
            track = track_of.get(fi)
            if track is None:
                track = Track(self._next_id, tuple(box), new)
                self._next_id += 1
                self.tracks.append(track)
            else:
                a = self.alpha
                track.values = {k: a * new[k] + (1 - a) * track.values[k] for k in SMOOTHED}
                track.box = tuple(box)
                track.hits += 1
                track.misses = 0
            out.append(track)
        return out
