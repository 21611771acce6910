"""How fast a clip is processed against how long it plays, per model and detection interval.

    python -m demo.video_bench [--model scratch --model vgg16] [--every 1 --every 3] [--seconds 10]
                               [--clip CLIP] [--threads 1]

Without --clip it makes a 640x480, 30 frames/s clip of assets/examples/three_portraits.jpg panning across
the frame (three faces, entering and leaving). Prints, per model and --every, the frames processed per
second, the ratio of play time to processing time (>= 1: at least as fast as it plays), the seconds per
stage, and how much each person's answer moves against detecting on every frame.

Measured 2026-12-03 on a 2-core AMD EPYC Zen 1 (AVX2, fp32), idle, 2 threads. With a full scan for small
faces on every analysed frame (--scan-seconds 0; ~17 detector calls a frame): scratch CNN 5.7 frames/s on every
frame, 13.5 on every 3rd, and 9 people for the clip's 3 (tracks broken where a scan missed a face). With the
app's scan once a second and only the whole frame and the tracked faces' surroundings in between
(--scan-seconds 1): 13.4 / 27.3 frames/s on every frame / every 3rd, 36.8 on every 5th (the app's rate at 30
frames/s: 1.23x real time), 3 people; VGG16 2.6 / 12.5 on every frame / every 5th (0.42x real time).
docs/benchmarks.md has the table.
"""
from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from demo import video, videoio

EXAMPLE = Path(__file__).resolve().parents[1] / "assets" / "examples" / "three_portraits.jpg"


def make_clip(path: Path, seconds: float = 10, fps: int = 30, size=(640, 480)) -> Path:
    width, height = size
    photo = Image.open(EXAMPLE).convert("RGB")
    photo = np.asarray(photo.resize((int(photo.width * 0.9 * height / photo.height), int(0.9 * height))))
    frames = int(seconds * fps)
    with videoio.Writer(path, width, height, fps) as writer:
        for i in range(frames):
            canvas = np.full((height, width, 3), 110, np.uint8)
            x = int(-(photo.shape[1] - width) * i / max(1, frames - 1))  # pan from left edge to right edge
            canvas[(height - photo.shape[0]) // 2:][:photo.shape[0], :] = photo[:, -x:-x + width]
            writer.write(canvas)
    return path


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m demo.video_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", help="scratch, vgg16, a Hub id or folder (default: scratch)")
    parser.add_argument("--every", action="append", type=int, help="detect on every N-th frame (default: 1 and 3)")
    parser.add_argument("--scan-seconds", action="append", type=float,
                        help="full small-face scan every S seconds of clip, 0 = every analysed frame (default: 0 and "
                             f"{video.FULL_SCAN_SECONDS:g}, the app's)")
    parser.add_argument("--seconds", type=float, default=10, help="length of the made clip")
    parser.add_argument("--clip", type=Path, help="a clip of your own instead")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the app uses 1 per request)")
    args = parser.parse_args(argv)
    import torch

    from demo.pipeline import Pipeline

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        clip = args.clip or make_clip(Path(tmp) / "pan.webm", args.seconds)
        info = videoio.probe(clip, max_bytes=float("inf"), max_seconds=float("inf"))
        print(f"clip: {info.width}x{info.height}, {info.fps:g} frames/s, {info.duration_s:.1f} s; "
              f"torch threads {args.threads}")
        for spec in args.model or ["scratch"]:
            pipeline = Pipeline(spec)
            pipeline.warm_up()
            baseline = None
            for every, scan in itertools.product(args.every or [1, 3], args.scan_seconds or [0, video.FULL_SCAN_SECONDS]):
                start = time.perf_counter()
                result = video.analyze(pipeline, clip, every=every, output=Path(tmp) / "out.webm", scan_seconds=scan)
                seconds = time.perf_counter() - start
                stages = " ".join(f"{k} {v:.1f}" for k, v in result.timings_s.items())
                line = (f"{spec} every {every}, scan {scan:g} s: {result.decoded_frames / seconds:.1f} frames/s, "
                        f"{info.duration_s / seconds:.2f}x real time ({seconds:.1f} s; {stages} s), "
                        f"{len(result.people)} people")
                if baseline is None:
                    baseline = result
                elif len(baseline.people) == len(result.people):
                    dp = max(abs(a.p_female - b.p_female) for a, b in zip(baseline.people, result.people))
                    da = max(abs(a.age - b.age) for a, b in zip(baseline.people, result.people))
                    line += f"; against the first row: P(female) moves <= {dp:.3f}, age <= {da:.2f} y"
                else:
                    line += f"; the first row found {len(baseline.people)} people"
                print(line, flush=True)


if __name__ == "__main__":
    main()
