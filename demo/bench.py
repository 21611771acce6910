"""Time the pipeline per stage: decode, detect, align, model, cam, render (medians over many runs), in fp32 and
on the fast path (model/fast.py: int8 for a model that ships int8 ranges where the CPU has int8 dot products,
else bf16 where it has bf16 matrix instructions), side by side.

    python -m demo.bench [--model scratch --model vgg16] [--runs 30] [--threads N] [--precision auto|int8|bf16|fp32]

Cases: a 640x480 JPEG frame with one face (detect + predict; with Grad-CAM for both heads) and a photo with
10 faces (batched: should cost far less than 10 single faces). The frames are built from
../shared/data/wild-faces/Tom_Cruise_avp_2014_4.jpg. Timing does not depend on the weights, so a model that
cannot be loaded (no trained weights yet) is replaced by an untrained one of the same architecture, with a note.
The fast path's rows are checked against the release floors (FLOORS_MS); --precision fp32 times the fp32 path
alone, as on a CPU without bf16 or int8 instructions.
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
from model.fast import PRECISIONS, bf16_features, cpuinfo, int8_features
from model.paths import SHARED_DIR

FACE_PHOTO = SHARED_DIR / "data" / "wild-faces" / "Tom_Cruise_avp_2014_4.jpg"
STAGES = ("decode", "detect", "align", "model", "cam", "render")
# Release floors for end-to-end ms (issue #14; scratch with Grad-CAM: issue #4), keyed (arch, case, Grad-CAM),
# and for VGG16's model time on one face.
FLOORS_MS = {("scratch", "1 face", False): 12, ("scratch", "1 face", True): 80, ("vgg16", "1 face", False): 30,
             ("vgg16", "1 face", True): 40, ("vgg16", "10 faces", False): 150}
MODEL_FLOORS_MS = {("vgg16", "1 face", False): 20}


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


def run(pipelines: dict[str, Pipeline], data: bytes, cam: bool, runs: int
        ) -> dict[str, tuple[dict[str, float], float, float, int]]:
    """Per path: median ms per stage, median total, median CPU ms of this process, faces found. The paths take
    turns, run by run, so that a shared machine's load weighs on them alike. CPU time (MediaPipe's own threads
    included) shows the cost that other work on the machine does not inflate."""
    heads = ("gender", "age") if cam else ()
    for pipeline in pipelines.values():
        for _ in range(3):  # warm-up: first calls allocate and load
            pipeline(data, cam_heads=heads)
    per_stage = {path: {s: [] for s in STAGES} for path in pipelines}
    totals = {path: [] for path in pipelines}
    cpu = {path: [] for path in pipelines}
    faces = {}
    for _ in range(runs):
        for path, pipeline in pipelines.items():
            start, cpu_start = time.perf_counter(), time.process_time()
            result = pipeline(data, cam_heads=heads)
            totals[path].append((time.perf_counter() - start) * 1000)
            cpu[path].append((time.process_time() - cpu_start) * 1000)
            for stage in STAGES:
                per_stage[path][stage].append(result.timings_ms.get(stage, 0.0))
            faces[path] = len(result.faces)
    return {path: ({s: statistics.median(v) for s, v in per_stage[path].items()}, statistics.median(totals[path]),
                   statistics.median(cpu[path]), faces[path]) for path in pipelines}


def cam_speed(model, fast_models: dict, runs: int) -> dict[str, float]:
    """Median ms for readouts + both heads' maps on one face: pytorch-grad-cam (predict, then one backward to
    the input per head) vs model.cam.explain (one forward, backward only through pool + heads) per path."""
    from model.cam import explain, library_cams, targets_for

    batch = torch.randn(1, 3, model.image_size, model.image_size)

    def library():
        predicted = model.predict(batch)
        return [library_cams(model, batch, targets_for(head, predicted)) for head in ("gender", "age")]

    ways = {"pytorch-grad-cam": library}
    ways.update({f"explain {name}": (lambda fast=fast: explain(fast, batch)) for name, fast in fast_models.items()})
    medians = {}
    for name, fn in ways.items():
        fn()
        times = []
        for _ in range(max(3, runs // 3)):
            start = time.perf_counter()
            fn()
            times.append((time.perf_counter() - start) * 1000)
        medians[name] = statistics.median(times)
    return medians


def verdict(arch: str, name: str, cam: bool, stages: dict, total: float) -> str:
    """The fast path against the release floors, e.g. "<= 30: OVER, model <= 20: ok"."""
    key = (arch, name, cam)
    checks = [("", FLOORS_MS.get(key), total), ("model ", MODEL_FLOORS_MS.get(key), stages["model"])]
    return ", ".join(f"{what}<= {floor}: {'ok' if value <= floor else 'OVER'}"
                     for what, floor, value in checks if floor is not None)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", help="scratch, vgg16, a Hub id or a folder (repeatable)")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--photo", type=Path, default=FACE_PHOTO, help="a photo with one face to build frames")
    parser.add_argument("--precision", choices=PRECISIONS, default=None,
                        help="the fast path's precision (default: $FACE_PRECISION, else auto); fp32 = fp32 only")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    images = frames(args.photo)
    print(f"torch {torch.__version__}, threads: {torch.get_num_threads()}, runs per case: {args.runs} (medians, ms)"
          f"; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores at the start")
    print(f"CPU: {cpuinfo('model name') or 'unknown'}; bf16 matrix instructions: "
          f"{', '.join(bf16_features()) or 'none'}; int8 dot products: {', '.join(int8_features()) or 'none'}")
    print(f"{'case':28s} {'path':>9s} {'faces':>5s} " + " ".join(f"{s:>7s}" for s in STAGES)
          + f" {'total':>8s} {'cpu':>7s}  fast path: speed-up, release floor")
    for spec in args.model or ["scratch", "vgg16"]:
        model, note = load(spec)
        if note:
            print(f"note: {note}")
        fast = Pipeline(model, precision=args.precision)  # the app's path, e.g. "int8+bf16" for the ensemble
        pipelines = {"fp32": fast if fast.fast.precision == "fp32" else Pipeline(model, precision="fp32")}
        pipelines[fast.fast.precision] = fast
        paths = list(pipelines)
        arch = getattr(model, "arch", spec)
        for name, data in images.items():
            for cam in (False, True):
                label = f"{arch} {name}{' + Grad-CAM' if cam else ''}"
                measured = run(pipelines, data, cam, args.runs)
                for path, (stages, total, cpu, faces) in measured.items():
                    notes = ""
                    if path == paths[-1]:  # the fast path, which the app runs
                        if path != "fp32":
                            fp32_stages, fp32_total, _, _ = measured["fp32"]
                            notes = (f"model {fp32_stages['model'] / stages['model']:.1f}x, total "
                                     f"{fp32_total / total:.1f}x; ")
                        notes += verdict(arch, name, cam, stages, total)
                    print(f"{label:28s} {path:>9s} {faces:5d} " + " ".join(f"{stages[s]:7.1f}" for s in STAGES)
                          + f" {total:8.1f} {cpu:7.1f}  {notes}".rstrip(), flush=True)
        speeds = cam_speed(model, {path: pipeline.fast for path, pipeline in pipelines.items()}, args.runs)
        print(f"{arch} readouts + 2 CAMs, 1 face: " + ", ".join(f"{k} {v:.1f} ms" for k, v in speeds.items()))
    print(f"load average {os.getloadavg()[0]:.1f} at the end (above 1 per core, other work shared the CPU)")


if __name__ == "__main__":
    main()
