"""The Gradio interface: Photo, Webcam and Video tabs, shared controls, About, and four named API endpoints.

Everything here is glue between Gradio components and demo.pipeline: handlers turn pipeline results into
what the components show, and turn the pipeline's errors into short messages (never a traceback).

Uploads reach the handlers unprocessed (`preprocess=False`): Gradio's own image preprocessing would open the
file with PIL first, so a broken file would fail with Gradio's generic error instead of model.imageio's
sentence. Gradio vets a payload's path only when the payload is tagged as FileData; an untagged
{"path": ...} would be opened as is (by its preprocessing, or by a handler), so `upload_source` opens a path
only if Gradio accepted that file for this app (`uploaded_path`). Uploaded files are never deleted by a
handler: identical uploads share one stored path, so a request that deleted "its" file could pull it from
under another request. demo.ui_files.Purge deletes them (and every generated image) within
`purge_after_s` (PURGE_AFTER_S by default). Generated images go out as files of the request's own
(demo/ui_files.py), never rewritten while a browser reads them.
"""
from __future__ import annotations

import base64
import collections
import dataclasses
import logging
import os
import time
from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd
from gradio.utils import get_upload_folder, is_allowed_file

from demo import render, ui_age, ui_video
from demo.ui_video import precision_note
from demo.ui_age import age_table
from model.imageio import BadImageError
from demo.pipeline import DETECTORS
from demo.tracker import SMOOTHED, FaceTracker
from demo.ui_about import about_markdown
from demo.ui_files import OutputFiles, Purge, RecentFrames
from demo.ui_models import CHOICES, ModelBank, ModelLoadError
from model.cam import HEADS as CAM_HEADS
from model.hub import DEFAULT_ARCH

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "assets" / "examples"
HEAD_LABELS = {"gender": "Gender head", "age": "Age head"}
TABLE_HEADERS = ["face", "gender (confidence)", "age", "age range (80%)", "detector score"]
TABLE_WIDTHS = ["11%", "30%", "12%", "25%", "22%"]  # left to the browser, "face" broke as "fac / e"
DETECTOR_LABELS = {
    "auto": "Auto: whole photo + tiles for small faces",
    "full": "Full-range model only",
    "short": "Short-range (faces near the camera)",
    "both": "Both models, merged",
}

# Uploads and generated images are deleted this long after they were written (checked every half of it).
PURGE_AFTER_S = 120

# Webcam: a frame every 0.08 s: 12 frames/s shown in Chromium (9.8 with 0.1 s: frames also wait on the
# network). The scratch model needs 17-60 ms per frame here; a frame that arrives while the previous one is
# still running waits for it (one at a time per stream). A stream runs for
# at most two minutes (it can be restarted), and at most two streams run at once on two cores.
STREAM_EVERY_S = 0.08
STREAM_TIME_LIMIT_S = 120
STREAM_CONCURRENCY = 2

# The one answer to any file a request names that Gradio did not accept for this app, existing or not.
NOT_UPLOADED = "This file was not uploaded to this app."

log = logging.getLogger(__name__)

CSS = """
.readout table { font-variant-numeric: tabular-nums; }
#latency { min-height: 1.5em; }
"""


def uploaded_path(path) -> str:
    """The real path of a file Gradio accepted for this app; anything else is gr.Error(NOT_UPLOADED).

    Gradio's own rule for a payload's file (`is_allowed_file`, as its preprocessing applies it): only files in
    its upload folder (GRADIO_TEMP_DIR: uploads, and its copies of the examples), plus the bundled examples.
    Judged on the real path, so `..` and symlinks cannot lead out, and checked before anything is opened, so
    a missing file gets the same answer as a forbidden one (no oracle, no OS error text).
    """
    try:
        real = os.path.realpath(path)
        allowed, _ = is_allowed_file(Path(real), blocked_paths=[], allowed_paths=[EXAMPLES],
                                     created_paths=[get_upload_folder()])
        allowed = allowed and os.path.isfile(real)
    except (OSError, TypeError, ValueError):  # e.g. a NUL byte in the path
        allowed = False
    if not allowed:
        log.warning("Refused a request for a file Gradio did not accept for this app: %r", path)
        raise gr.Error(NOT_UPLOADED, print_exception=False)
    return real


def upload_source(payload) -> str | bytes | None:
    """An unprocessed image payload (Gradio's FileData as a dict, or a plain path) -> path or bytes to decode."""
    if payload is None:
        return None
    if isinstance(payload, (str, Path)):
        return uploaded_path(payload)
    if isinstance(payload, dict):
        if payload.get("path"):
            return uploaded_path(payload["path"])
        url = payload.get("url") or ""
        if url.startswith("data:") and "," in url:  # inline images (e.g. pasted) arrive as data: URLs
            try:
                return base64.b64decode(url.split(",", 1)[1], validate=False)
            except ValueError:
                raise gr.Error("This file is not an image (or not a format we can read)",
                               print_exception=False) from None
        if url:  # a URL names a file too (file://, /gradio_api/file=..., http): only data: URLs are read
            log.warning("Refused a request for a URL: %r", url[:200])
            raise gr.Error(NOT_UPLOADED, print_exception=False)
    raise gr.Error("No image was sent.", print_exception=False)


def run(bank: ModelBank, model_name: str, image, **options):
    """Run the chosen model's pipeline; model and input problems become a clean gr.Error."""
    try:
        return bank.get(model_name)(image, **options)
    except (ModelLoadError, BadImageError) as error:
        raise gr.Error(str(error), print_exception=False) from None


def table_rows(faces) -> list[list]:
    return [[f"#{face.index + 1}", face.gender_confidence, f"{face.age:.0f} y",
             f"{face.age_low:.0f}–{face.age_high:.0f} y",
             "—" if face.det_score is None else f"{face.det_score:.2f}"]  # "—": whole image, no detector
            for face in faces]


def face_choices(faces) -> list[tuple[str, int]]:
    return [(f"#{face.index + 1} · {face.gender_confidence} · {face.age:.0f} y", face.index) for face in faces]


def summary(result, model_name: str) -> str:
    found = len(result.faces)
    head = f"**{found} face{'s' if found != 1 else ''}** · {CHOICES[model_name].label} · " \
           f"{sum(result.timings_ms.values()):.0f} ms{precision_note(result)}"
    return "  \n".join([head, *result.notes])


def face_at(result, x: float, y: float) -> int | None:
    """The face whose box contains image pixel (x, y); the smallest one if boxes overlap."""
    if result is None:
        return None
    hits = [f for f in result.faces if f.box[0] <= x <= f.box[0] + f.box[2] and f.box[1] <= y <= f.box[1] + f.box[3]]
    return min(hits, key=lambda f: f.box[2] * f.box[3]).index if hits else None


# ---------------------------------------------------------------- photo tab

def in_memory(*named) -> list:
    """The images of (name, image) pairs as they are: for callers that keep them in memory. The app hands
    them to Gradio as files instead (demo.ui_files.OutputFiles.images, the same call)."""
    return [image for _, image in named]


def analyze(bank, image, model_name, min_score, cam_on, detect, detector, images=in_memory):
    """image -> (decoded pixels, annotated, table, result, face picker, gender CAM, age CAM, age distribution,
    summary); the images go through `images`."""
    if image is None:
        return None, None, [], None, gr.update(choices=[], value=None), None, None, None, ""
    # Both heads' maps come from one forward pass.
    result = run(bank, model_name, image, min_score=min_score, detect=detect, detector=detector,
                 cam_heads=CAM_HEADS if cam_on else ())
    first = result.faces[0].index if result.faces else None
    picker = gr.update(choices=face_choices(result.faces), value=first, interactive=bool(result.faces))
    [annotated] = images(("faces", result.annotated))
    return (result.image, annotated, table_rows(result.faces), result, picker,
            *face_views(result, first, images), summary(result, model_name))


def face_views(result, face_index, images=in_memory) -> tuple:
    """What the Photo tab shows of the chosen face: its gender and age Grad-CAM, its age distribution."""
    gender, age = cam_images(result, face_index)
    return (*images(("gradcam-gender", gender), ("gradcam-age", age)), age_distribution(result, face_index))


def chosen_face(result, face_index):
    """The face the picker names; None before any photo, or where it has no face."""
    if result is None or face_index is None or not result.faces:
        return None
    return result.faces[int(face_index)]


def cam_images(result, face_index) -> tuple:
    """The chosen face, aligned as the model saw it, with each head's Grad-CAM blended in: (gender, age)."""
    face = chosen_face(result, face_index)
    if face is None:
        return None, None
    return tuple(face.cam_image(head) if head in face.cams else None for head in CAM_HEADS)


def age_distribution(result, face_index) -> pd.DataFrame | None:
    """The chosen face's age distribution, as demo.ui_age draws it."""
    face = chosen_face(result, face_index)
    return None if face is None else age_table(face.age_probs, face.age_low, face.age_high)


# ---------------------------------------------------------------- webcam tab

@dataclasses.dataclass
class Stream:
    """One webcam session's state: the face tracker and the arrival times of recent frames."""
    tracker: FaceTracker = dataclasses.field(default_factory=FaceTracker)
    arrivals: collections.deque = dataclasses.field(default_factory=lambda: collections.deque(maxlen=20))
    frames: RecentFrames | None = None  # the annotated frames sent back, the newest few on disk

    def tick(self) -> float | None:
        """Record a frame's arrival; the frame rate over the recent frames (None until there are two)."""
        self.arrivals.append(time.monotonic())
        span = self.arrivals[-1] - self.arrivals[0]
        return (len(self.arrivals) - 1) / span if span > 0 else None


def smoothed_faces(tracker: FaceTracker, faces) -> list:
    """Faces with their readouts replaced by each track's moving average (steady labels)."""
    tracks = tracker.update([(face.box, {k: getattr(face, k) for k in SMOOTHED}) for face in faces])
    return [dataclasses.replace(face, **track.values) for face, track in zip(faces, tracks)]


def on_frame(bank, frame, model_name, min_score, cam_on, head, stream):
    """One webcam frame, unprocessed like the photo uploads: its file is vetted by upload_source too."""
    if frame is None:
        return gr.skip(), gr.skip(), stream
    start = time.perf_counter()
    stream = stream or Stream()
    rate = stream.tick()
    try:  # the short-range detector is made for faces within ~2 m of a camera, and is the faster one
        result = run(bank, model_name, upload_source(frame), min_score=min_score, detector="short",
                     cam_heads=(head,) if cam_on else (), draw=False)
    except gr.Error as error:  # said in the status line: a toast on every frame would pile up
        return gr.skip(), f"⚠️ {error.message}", stream
    faces = smoothed_faces(stream.tracker, result.faces)
    shown = result.image
    if cam_on and faces:
        biggest = max(faces, key=lambda f: f.box[2] * f.box[3])
        shown = result.cam_overlay(biggest.index, head)
    annotated = render.annotate(shown, [f.box for f in faces], [f.label() for f in faces],
                                [render.color_for(f.p_female) for f in faces], numbers=[f.index + 1 for f in faces])
    total_ms = (time.perf_counter() - start) * 1000
    parts = " · ".join(f"{k} {v:.0f}" for k, v in result.timings_ms.items())
    found = len(faces)
    fps = f" · {rate:.1f} frames/s" if rate else ""
    latency = f"**{total_ms:.0f} ms** per frame ({parts} ms){fps} · {found} face{'s' if found != 1 else ''}" \
              f"{precision_note(result)}"
    return annotated, latency, stream


# ---------------------------------------------------------------- API

def api_result(bank, payload, model_name, min_score, detect, detector, *, cams=False, draw=False):
    image = upload_source(payload)
    if image is None:
        raise gr.Error("No image was sent.", print_exception=False)
    if detector not in DETECTORS:
        raise gr.Error(f"detector must be one of {', '.join(DETECTORS)}", print_exception=False)
    result = run(bank, model_name, image, min_score=float(min_score), detect=bool(detect), detector=detector,
                 cam_heads=CAM_HEADS if cams else (), draw=draw)
    return result, {"model": model_name, "faces": [face.to_record(age_probs=True) for face in result.faces],
                    "notes": list(result.notes), "timings_ms": dict(result.timings_ms),
                    "precision": result.precision}


def explain_outputs(result, record: dict, images=in_memory) -> tuple[list, dict]:
    """Gallery items (overlay, caption) for every face and head, and the records pointing at them."""
    named, captions = [], []
    for face, face_record in zip(result.faces, record["faces"]):
        face_record["cams"] = {}
        for head in CAM_HEADS:
            face_record["cams"][head] = len(named)
            named.append((f"face-{face.index + 1}-{head}", face.cam_image(head)))
            captions.append(f"#{face.index + 1} {head}")
    return list(zip(images(*named), captions)), record


# ---------------------------------------------------------------- layout

def build(bank: ModelBank, default_model: str = DEFAULT_ARCH, purge_after_s: int = PURGE_AFTER_S) -> gr.Blocks:
    model_choices = [(c.label, c.name) for c in CHOICES.values()]
    detector_choices = [(label, name) for name, label in DETECTOR_LABELS.items()]
    # Uploads and what requests wrote are deleted by our Purge, not Gradio's delete_cache (demo/ui_files.py).
    with gr.Blocks(title="Face age & gender", analytics_enabled=False) as app:
        gr.Markdown("# Face age & gender\nFinds faces, estimates age and the probability of a *female* label, "
                    "and shows with Grad-CAM what the network looked at. Predictions can be wrong; appearance "
                    "does not determine gender (see the About tab).")
        with gr.Row(equal_height=True):
            model = gr.Radio(model_choices, value=default_model, label="Model", scale=3, elem_id="model")
            min_score = gr.Slider(0.1, 0.95, value=0.5, step=0.05, label="Face detector threshold",
                                  scale=2, elem_id="min-score")
            cam_on = gr.Checkbox(value=True, label="Grad-CAM", scale=1, elem_id="cam-on")

        with gr.Tab("Photo", id="photo"):
            pixels = gr.State(None)  # the decoded upload, in memory for this session only
            result = gr.State(None)
            with gr.Row():
                with gr.Column():
                    photo = gr.Image(type="filepath", sources=["upload", "clipboard"], label="Photo", height=420,
                                     elem_id="photo-input")
                    with gr.Row():
                        detect = gr.Checkbox(value=True, label="Find faces (off: the photo is one tight face crop)",
                                             elem_id="detect")
                        detector = gr.Dropdown(detector_choices, value="auto", label="Face finder",
                                               elem_id="detector")
                    gr.Examples([[str(p)] for p in sorted(EXAMPLES.glob("*.jpg"))], inputs=photo,
                                           cache_examples=False, label="Examples (public domain)")
                with gr.Column():
                    annotated = gr.Image(label="Faces (click one for its Grad-CAM)", height=420, interactive=False,
                                         format="jpeg", buttons=["download", "fullscreen"], elem_id="photo-output")
                    status = gr.Markdown(elem_id="photo-status")
            with gr.Row():
                table = gr.Dataframe(headers=TABLE_HEADERS, label="All faces (click a row for its Grad-CAM)",
                                     interactive=False, wrap=True, elem_classes="readout", elem_id="faces-table",
                                     column_widths=TABLE_WIDTHS, scale=3)
                with gr.Column(scale=3):
                    face = gr.Dropdown(label="Grad-CAM for face", choices=[], interactive=True,
                                       elem_id="face-picker")
                    with gr.Row():
                        cam_gender = gr.Image(label="What drove the gender call", height=240, interactive=False,
                                              format="jpeg", buttons=["download", "fullscreen"],
                                              elem_id="cam-gender")
                        cam_age = gr.Image(label="What drove the age estimate", height=240, interactive=False,
                                           format="jpeg", buttons=["download", "fullscreen"], elem_id="cam-age")
                    age_plot = ui_age.age_plot("age-distribution")  # the whole distribution, not only its mean
                    faces_files = gr.File(label="The faces table (CSV, JSON)", file_count="multiple",
                                          interactive=False, elem_id="faces-downloads")

        with gr.Tab("Webcam", id="webcam"):
            stream = gr.State(None)
            head = gr.Radio([(v, k) for k, v in HEAD_LABELS.items()], value="gender", label="Grad-CAM head",
                            elem_id="cam-head")
            with gr.Row():
                webcam = gr.Image(sources=["webcam"], streaming=True, label="Camera",
                                  elem_id="webcam-input")
                live = gr.Image(label="Live readout", interactive=False, format="jpeg", streaming=True,
                                buttons=["fullscreen"], elem_id="webcam-output")
            latency = gr.Markdown(elem_id="latency")
            gr.Markdown("Labels are averaged over recent frames per face, so they settle instead of "
                        "flickering. With Grad-CAM on, the map is shown for the largest face.")

        outputs = OutputFiles(app)  # what requests write: images, clips, tables
        with gr.Tab("Video", id="video"):
            ui_video.build_tab(bank, outputs, model, min_score)

        with gr.Tab("About", id="about"):
            gr.Markdown(about_markdown(bank))

        # API-only endpoints: plain inputs, per-face JSON out (the UI's own events are private).
        with gr.Column(visible=False):
            api_image = gr.Image(type="filepath", label="image")
            api_model = gr.Dropdown([c.name for c in CHOICES.values()], value=default_model, label="model")
            api_min_score = gr.Number(0.5, label="min_score")
            api_detect = gr.Checkbox(True, label="detect")
            api_detector = gr.Dropdown(list(DETECTORS), value="auto", label="detector")
            api_faces = gr.JSON(label="faces")
            api_annotated = gr.Image(label="annotated", format="jpeg")
            api_cams = gr.Gallery(label="cams", format="jpeg")
            predict_button, annotate_button, explain_button = gr.Button(), gr.Button(), gr.Button()

        photo_outputs = [pixels, annotated, table, result, face, cam_gender, cam_age, age_plot, status]
        options = [model, min_score, cam_on, detect, detector]
        private = dict(api_visibility="private")

        # In the UI a bad file or a model that will not load is a warning toast and empty outputs (an
        # exception would paint "Error" over every output); API callers get the exception itself.
        def on_photo(payload, *opts):
            try:
                return (gr.skip(), *analyze(bank, upload_source(payload), *opts, images=outputs.images))
            except gr.Error as error:
                gr.Warning(error.message)
                return (None, *analyze(bank, None, *opts))  # also clears the unusable input

        def on_options(decoded, *opts):
            try:
                return analyze(bank, decoded, *opts, images=outputs.images)
            except gr.Error as error:
                gr.Warning(error.message)
                return analyze(bank, None, *opts)

        def tables(res):
            return ui_video.faces_downloads(outputs, res)

        photo.change(on_photo, [photo, *options], [photo, *photo_outputs], preprocess=False, **private) \
            .then(tables, result, faces_files, **private)
        for control in (model, min_score, cam_on, detect, detector):
            control.change(on_options, [pixels, *options], photo_outputs, **private) \
                .then(tables, result, faces_files, **private)
        # The chosen face's views are drawn once per choice: by the photo's own event, or here. So
        # `face.input`, a person's pick: `face.change` fires on the photo's event too, and drew them twice.
        views = [cam_gender, cam_age, age_plot]

        def served_views(res, index):
            return face_views(res, index, outputs.images)

        face.input(served_views, [result, face], views, **private)

        def pick(res, shown, index):
            if index is None or index == shown:
                return (gr.skip(),) * (1 + len(views))
            return index, *served_views(res, index)

        def pick_row(res, shown, evt: gr.SelectData):
            return pick(res, shown, evt.index[0] if evt.index else None)

        def pick_on_image(res, shown, evt: gr.SelectData):
            return pick(res, shown, face_at(res, *evt.index) if evt.index else None)

        table.select(pick_row, [result, face], [face, *views], **private)
        annotated.select(pick_on_image, [result, face], [face, *views], **private)

        def on_stream(*args):
            shown, latency, state = on_frame(bank, *args)
            if isinstance(shown, np.ndarray):
                state.frames = state.frames or RecentFrames(outputs)
                shown = state.frames.add(shown)
            return shown, latency, state

        webcam.stream(on_stream, [webcam, model, min_score, cam_on, head, stream],
                      [live, latency, stream], stream_every=STREAM_EVERY_S, time_limit=STREAM_TIME_LIMIT_S,
                      concurrency_limit=STREAM_CONCURRENCY, show_progress="hidden", preprocess=False, **private)

        # Named parameters, so clients can call predict(image=..., model=..., min_score=..., detect=...).
        def predict(image, model, min_score, detect, detector):
            return api_result(bank, image, model, min_score, detect, detector)[1]

        def annotate(image, model, min_score, detect, detector):
            res, record = api_result(bank, image, model, min_score, detect, detector, draw=True)
            [annotated] = outputs.images(("faces", res.annotated))
            return annotated, record

        def explain(image, model, min_score, detect, detector):
            res, record = api_result(bank, image, model, min_score, detect, detector, cams=True)
            return explain_outputs(res, record, outputs.images)

        api_inputs = [api_image, api_model, api_min_score, api_detect, api_detector]
        api = dict(preprocess=False, concurrency_limit=2)
        predict_button.click(predict, api_inputs, api_faces, api_name="predict", **api,
                             api_description="Faces in an image: box, P(female), gender, age with its 80% "
                                             "interval and its distribution (P(age) for 0-100 y), detector "
                                             "score.")
        annotate_button.click(annotate, api_inputs, [api_annotated, api_faces], api_name="annotate", **api,
                              api_description="Like /predict, plus the annotated image.")
        explain_button.click(explain, api_inputs, [api_cams, api_faces], api_name="explain", **api,
                             api_description="Like /predict, plus each face's Grad-CAM overlays (gender and age "
                                             "heads) as a gallery; each face's `cams` gives their gallery "
                                             "positions.")
        ui_video.build_api(bank, outputs, [c.name for c in CHOICES.values()], default_model)
    Purge(app, purge_after_s).start()
    return app
