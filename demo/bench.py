"""Time the pipeline per stage: decode, detect, align, model, cam, render (medians over many runs).

    python -m demo.bench [--model scratch --model vgg16] [--runs 30] [--threads N]

Cases: a 640x480 JPEG frame with one face (detect + predict; with Grad-CAM for both heads) and a photo with
10 faces (batched: should cost far less than 10 single faces). The frames are built from
../shared/data/wild-faces/Tom_Cruise_avp_2014_4.jpg. Timing does not depend on the weights, so a model that
cannot be loaded (no trained weights yet) is replaced by an untrained one of the same architecture, with a note.
"""
from __future__ import annotations

import argparse
import os
import io
import statistics
import time
from pathlib import Path

import torch
from PIL import Image

from demo.pipeline import Pipeline

SHARED = Path(os.environ.get("FACE_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared"))  # as in tests
FACE_PHOTO = SHARED / "data" / "wild-faces" / "Tom_Cruise_avp_2014_4.jpg"
STAGES = ("decode", "detect", "align", "model", "cam", "render")
BUDGET_MS = {("scratch", False): 40, ("scratch", True): 80, ("vgg16", True): 300}  # from issue #4


def jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def frames(photo: Path) -> dict[str, bytes]:
    """'1 face': 640x480 webcam-like frame, the face about a third of its height. '10 faces': 5x2 of them."""
    face = Image.open(photo).convert("RGB")
    face.thumbnail((300, 420))
    frame = Image.new("RGB", (640, 480), (96, 104, 112))
    frame.paste(face, ((640 - face.width) // 2, 480 - face.height))
    small = face.copy()
    small.thumbnail((200, 250))
    group = Image.new("RGB", (5 * 240, 2 * 270), (96, 104, 112))
    for i in range(5):
        for j in range(2):
            group.paste(small, (i * 240 + 20, j * 270 + 10))
    return {"1 face": jpeg(frame), "10 faces": jpeg(group)}


def load(spec: str):
    try:
        from model.hub import load_model
        return load_model(spec), ""
    except Exception as e:
        from model.nets import build_model
        return build_model(spec).eval(), f"untrained {spec} (could not load weights: {e})"


def run(pipeline: Pipeline, data: bytes, cam: bool, runs: int) -> tuple[dict[str, float], float, int]:
    """Median ms per stage, median total, faces found."""
    heads = ("gender", "age") if cam else ()
    for _ in range(3):  # warm-up: first calls allocate and load
        result = pipeline(data, cam_heads=heads)
    per_stage = {s: [] for s in STAGES}
    totals = []
    for _ in range(runs):
        start = time.perf_counter()
        result = pipeline(data, cam_heads=heads)
        totals.append((time.perf_counter() - start) * 1000)
        for stage in STAGES:
            per_stage[stage].append(result.timings_ms.get(stage, 0.0))
    return {s: statistics.median(v) for s, v in per_stage.items()}, statistics.median(totals), len(result.faces)


def cam_speed(model, runs: int) -> tuple[float, float]:
    """Median ms for readouts + both heads' maps on one face: pytorch-grad-cam (predict, then one backward to
    the input per head) vs model.cam.explain (one forward, backward only through pool + heads)."""
    from model.cam import explain, library_cams, targets_for

    batch = torch.randn(1, 3, model.image_size, model.image_size)

    def library():
        predicted = model.predict(batch)
        return [library_cams(model, batch, targets_for(head, predicted)) for head in ("gender", "age")]

    medians = []
    for fn in (library, lambda: explain(model, batch)):
        fn()
        times = []
        for _ in range(max(3, runs // 3)):
            start = time.perf_counter()
            fn()
            times.append((time.perf_counter() - start) * 1000)
        medians.append(statistics.median(times))
    return medians[0], medians[1]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", help="scratch, vgg16, a Hub id or a folder (repeatable)")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--photo", type=Path, default=FACE_PHOTO, help="a photo with one face to build frames")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    images = frames(args.photo)
    print(f"torch threads: {torch.get_num_threads()}, runs per case: {args.runs} (medians, ms)")
    print(f"{'case':34s} {'faces':>5s} " + " ".join(f"{s:>7s}" for s in STAGES) + f" {'total':>8s}  budget")
    for spec in args.model or ["scratch", "vgg16"]:
        model, note = load(spec)
        if note:
            print(f"note: {note}")
        pipeline = Pipeline(model)
        arch = getattr(model, "arch", spec)
        single = {}
        for name, data in images.items():
            for cam in (False, True):
                stages, total, faces = run(pipeline, data, cam, args.runs)
                budget = BUDGET_MS.get((arch, cam)) if name == "1 face" else None
                verdict = "" if budget is None else f"<= {budget}: {'ok' if total <= budget else 'OVER'}"
                if name == "1 face":
                    single[cam] = total
                else:
                    verdict = f"{total / single[cam]:.1f}x one face"
                label = f"{arch} {name}{' + Grad-CAM' if cam else ''}"
                print(f"{label:34s} {faces:5d} " + " ".join(f"{stages[s]:7.1f}" for s in STAGES)
                      + f" {total:8.1f}  {verdict}")
        library, fast = cam_speed(model, args.runs)
        print(f"{arch} readouts + 2 CAMs, 1 face: pytorch-grad-cam {library:.1f} ms, model.cam.explain {fast:.1f} ms")


if __name__ == "__main__":
    main()
