"""Small video clips the tests make themselves: the example portraits moving across a grey frame.

`two_people`: the astronaut on screen for the whole clip, drifting right, and Grace Hopper entering at
frame ENTERS, drifting left; they never overlap, so the tracker must see exactly two people.
"""
from __future__ import annotations

import struct
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from PIL import Image

EXAMPLES = Path(__file__).resolve().parents[1] / "assets" / "examples"
# Face boxes the detector finds in the examples (x, y, w, h); each portrait is cut at twice its face's size.
FACES = {"astronaut": (172, 67, 103, 103), "grace_hopper": (166, 129, 199, 199)}
SIZE = (320, 240)
FRAMES, FPS, ENTERS = 30, 10, 10


def portrait(name: str, side: int) -> np.ndarray:
    x, y, w, h = FACES[name]
    image = Image.open(EXAMPLES / f"{name}.jpg").convert("RGB")
    cx, cy = x + w / 2, y + h / 2
    crop = image.crop((int(cx - w), int(cy - h), int(cx + w), int(cy + h)))
    return np.asarray(crop.resize((side, side), Image.LANCZOS))


def two_people_frames(size=SIZE, frames: int = FRAMES, enters: int = ENTERS) -> list[np.ndarray]:
    width, height = size
    side = int(0.55 * height)
    astronaut, grace = portrait("astronaut", side), portrait("grace_hopper", side)
    out = []
    for i in range(frames):
        canvas = np.full((height, width, 3), 128, np.uint8)
        x = int(0.02 * width + i * 0.1 * width / frames)
        canvas[10:10 + side, x:x + side] = astronaut
        if i >= enters:
            x = int(0.95 * width - side - (i - enters) * 0.1 * width / frames)
            y = height - side - 10
            canvas[y:y + side, x:x + side] = grace
        out.append(canvas)
    return out


def write_clip(path: Path, frames: list[np.ndarray], fps: float = FPS, codec: str = "libx264",
               times: list[float] | None = None) -> Path:
    """Frames -> a video file (H.264 in mp4 by default, as phones write). `times` (s) makes a variable
    frame rate clip: each frame gets that presentation time."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = "yuv420p"
        if times is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            if times is not None:
                frame.pts, frame.time_base = round(times[i] * 1000), Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def two_people_clip(path: Path, **kwargs) -> Path:
    return write_clip(path, two_people_frames(), **kwargs)


def rotate_90(path: Path, dest: Path) -> Path:
    """A copy of an mp4 whose track header says "show me turned 90 degrees clockwise", as a phone held
    upright writes it (the pixels stay as the sensor saw them)."""
    data = bytearray(path.read_bytes())
    at = data.find(b"tkhd")
    version = data[at + 4]
    # tkhd: version+flags, creation, modification, track id, reserved, duration, reserved x2, layer,
    # alternate group, volume, reserved, then the 3x3 matrix
    matrix = at + 4 + 4 + (12 if version == 0 else 20) + 4 + (4 if version == 0 else 8) + 8 + 8
    data[matrix:matrix + 36] = struct.pack(">9i", 0, 0x10000, 0, -0x10000, 0, 0, 0, 0, 0x40000000)
    dest.write_bytes(bytes(data))
    return dest


def clip_frame_count(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def first_frame(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return next(container.decode(video=0)).to_ndarray(format="rgb24")


def resized(frames: list[np.ndarray], size) -> list[np.ndarray]:
    return [cv2.resize(f, size, interpolation=cv2.INTER_LINEAR) for f in frames]
