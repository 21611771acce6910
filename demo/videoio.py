"""Video in and out: probe and decode a clip into RGB frames with their times, and encode the annotated clip.

Both directions use PyAV (FFmpeg's libraries, bundled in its wheels; no system ffmpeg is needed). Why PyAV and
not OpenCV's bundled FFmpeg, already a dependency: OpenCV's VideoWriter cannot pass encoder options, and the
only codecs Chromium plays that its wheel can write here are VP8 and VP9 in webm at libvpx's slow default
deadline (36 and 232 ms per 640x480 frame on this busy 2-core machine: slower than the clip plays), while
PyAV's libvpx-vp9 in realtime mode took 7.6 ms (libx264 veryfast 7.1 ms; VP8 realtime 121 ms). VP9 in webm
is what we write: Chromium plays it with no proprietary codec, and libvpx is BSD-licensed. Decoding with PyAV
also gives each frame's own time stamp (variable frame rate clips keep true times) and the rotation a phone
stores in the file's display matrix, which `frames` applies.

Every way a clip can be unusable ends in `BadVideoError`, whose message is one sentence fit for a user.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

VIDEO_SUFFIXES = {".mp4", ".webm", ".mov", ".avi", ".mkv", ".m4v"}
# Caps (settings; the app reads FACE_VIDEO_MAX_MB / FACE_VIDEO_MAX_S): a phone's 3-minute 1080p clip is
# ~200 MB at the bit rates phones record at.
MAX_BYTES = int(float(os.environ.get("FACE_VIDEO_MAX_MB", "200")) * 1_000_000)
MAX_SECONDS = float(os.environ.get("FACE_VIDEO_MAX_S", "180"))
MAX_PIXELS = 8192 * 4320  # one frame; 8K is the largest a camera records
OUTPUT_MAX_SIDE = 1280    # the annotated clip is written at most this big (a 4K clip's boxes stay readable)
CODEC, SUFFIX = "libvpx-vp9", ".webm"
ENCODER_OPTIONS = {"deadline": "realtime", "cpu-used": "8", "crf": "32", "b": "0"}


class BadVideoError(ValueError):
    """A file that is not a usable video. The message is shown to users verbatim."""


@dataclass(frozen=True)
class VideoInfo:
    width: int        # as shown, after rotation
    height: int
    fps: float        # average frame rate (frames may come at uneven times: see each frame's time)
    frames: int       # the container's count, or an estimate from duration x fps (0 = unknown)
    duration_s: float
    rotation: int     # degrees applied to every frame (0, 90, 180, 270)


def probe(path, *, max_bytes: int = MAX_BYTES, max_seconds: float = MAX_SECONDS) -> VideoInfo:
    """Checks the file against the caps before any frame is decoded; raises BadVideoError."""
    path = Path(path)
    if not path.is_file():
        raise BadVideoError("File not found.")
    size = path.stat().st_size
    if size == 0:
        raise BadVideoError("The file is empty (0 bytes).")
    if size > max_bytes:
        raise BadVideoError(f"The video is too large ({size / 1e6:.0f} MB); the limit is {max_bytes / 1e6:.0f} MB.")
    with _open(path) as container:
        stream = _video_stream(container)
        duration = _duration(container, stream)
        if duration > max_seconds:
            raise BadVideoError(f"The video is too long ({duration:.0f} s); the limit is {max_seconds:.0f} s.")
        ctx = stream.codec_context
        if not ctx.width or not ctx.height:
            raise BadVideoError("The video has no picture size: the file is damaged or not a video.")
        if ctx.width * ctx.height > MAX_PIXELS:
            raise BadVideoError(f"The video's frames are too large ({ctx.width}x{ctx.height} px).")
        fps = float(stream.average_rate or stream.guessed_rate or 0) or 30.0
        frames = stream.frames or round(duration * fps)
        rotation = _rotation(container)
        width, height = (ctx.height, ctx.width) if rotation % 180 else (ctx.width, ctx.height)
        return VideoInfo(width, height, fps, frames, duration, rotation)


def frames(path, rotation: int = 0) -> Iterator[tuple[float, np.ndarray]]:
    """(time in s, RGB uint8 HxWx3) for every frame, rotated upright by `rotation` degrees (probe's).
    A clip that breaks off part way ends there (the frames before it are kept); no frame at all is an error."""
    import av

    count = 0
    with _open(path) as container:
        stream = _video_stream(container)
        stream.thread_type = "AUTO"
        start = None
        try:
            for frame in container.decode(stream):
                t = frame.time if frame.time is not None else count / float(stream.average_rate or 30)
                start = t if start is None else start
                rgb = frame.to_ndarray(format="rgb24")
                if rotation:
                    rgb = np.ascontiguousarray(np.rot90(rgb, k=rotation // 90))
                count += 1
                yield max(0.0, t - start), rgb
        except av.FFmpegError:
            if not count:
                raise BadVideoError("The video file is damaged or truncated: no frame could be read.") from None
    if not count:
        raise BadVideoError("The video has no frames.")


class Writer:
    """Encodes RGB frames as VP9 in webm at a fixed frame rate; frames bigger than OUTPUT_MAX_SIDE are
    scaled down (sides rounded to even numbers, as yuv420p needs)."""

    def __init__(self, path, width: int, height: int, fps: float):
        import av

        scale = min(1.0, OUTPUT_MAX_SIDE / max(width, height))
        self.size = (max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2))
        self.container = av.open(str(path), "w")
        rate = Fraction(fps).limit_denominator(1001) if fps > 0 else Fraction(30)
        self.stream = self.container.add_stream(CODEC, rate=rate, options=ENCODER_OPTIONS)
        self.stream.width, self.stream.height = self.size
        self.stream.pix_fmt = "yuv420p"

    def write(self, rgb: np.ndarray) -> None:
        import av
        import cv2

        if (rgb.shape[1], rgb.shape[0]) != self.size:
            rgb = cv2.resize(rgb, self.size, interpolation=cv2.INTER_AREA)
        for packet in self.stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")):
            self.container.mux(packet)

    def close(self) -> None:
        try:
            for packet in self.stream.encode():
                self.container.mux(packet)
        finally:
            self.container.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _open(path):
    import av

    try:
        return av.open(str(path), "r", metadata_errors="ignore")
    except (av.FFmpegError, UnicodeDecodeError, ValueError):
        raise BadVideoError("This file is not a video (or not a format we can read).") from None


def _video_stream(container):
    if container.format.name == "image2" or container.format.name.endswith("_pipe"):  # FFmpeg reads photos too
        container.close()
        raise BadVideoError("This file is a still image, not a video.")
    if not container.streams.video:
        container.close()
        raise BadVideoError("The file has no video stream (sound only, or not a video).")
    return container.streams.video[0]


def _duration(container, stream) -> float:
    if stream.duration is not None and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000  # av.time_base is microseconds
    return 0.0


def _rotation(container) -> int:
    """The display rotation of the first frame (PyAV reads the display matrix side data), as np.rot90
    quarter turns in degrees, normalised to 0..270; 0 where there is none."""
    try:
        for frame in container.decode(video=0):
            return round(frame.rotation or 0) % 360
    except Exception:  # the decode error, if any, is reported by `frames`
        return 0
    return 0
