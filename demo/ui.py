"""The Gradio interface: Photo and Webcam tabs, shared controls, About, and two named API endpoints.

Everything here is glue between Gradio components and demo.pipeline: handlers turn pipeline results into
what the components show, and turn the pipeline's errors into short messages (never a traceback).
"""
from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from pathlib import Path

import gradio as gr

from demo import render
from demo.imageio import BadImageError, load_image
from demo.tracker import SMOOTHED, FaceTracker
from demo.ui_about import about_markdown
from demo.ui_models import CHOICES, ModelBank, ModelLoadError
from model.cam import HEADS as CAM_HEADS

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "assets" / "examples"
HEAD_LABELS = {"gender": "Gender head", "age": "Age head"}
TABLE_HEADERS = ["face", "gender", "P(female)", "age", "age range (80%)", "detector score"]

# Webcam: ~4 frames a second keeps two CPU cores responsive for everyone; a session streams for at most
# two minutes at a time (it can be restarted), and at most two streams run at once.
STREAM_EVERY_S = 0.25
STREAM_TIME_LIMIT_S = 120
STREAM_CONCURRENCY = 2

CSS = """
.readout table { font-variant-numeric: tabular-nums; }
#latency { min-height: 1.5em; }
"""


def photo_input(**kwargs) -> gr.Image:
    """A gr.Image whose handler gets the uploaded file's path without it being opened first.

    Stock gr.Image opens uploads with PIL before the handler runs, so a broken file fails with Gradio's
    generic error and is never deleted. Here demo.imageio decides, with its user-facing messages."""
    image = gr.Image(type="filepath", **kwargs)
    stock = image.preprocess

    def preprocess(payload):
        if payload is None or payload.path is None:  # webcam snapshots arrive inline (data: URLs)
            return stock(payload)
        return str(payload.path)

    # Set on the instance: a gr.Image subclass would make Gradio write a .pyi stub next to this module.
    image.preprocess = preprocess
    return image


def gradio_temp_dir() -> Path:
    """Where Gradio keeps uploads and generated files (app.py points GRADIO_TEMP_DIR at a private folder)."""
    return Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio").resolve()


def forget_upload(path: str | None, keep: set[Path]) -> None:
    """Delete an uploaded file once it is decoded: uploads are not kept beyond the request.

    Only files inside Gradio's temporary folder are touched, and never those in `keep`: Gradio's copies of
    the examples live there too (and an upload of the same picture lands on the same path)."""
    if not path:
        return
    file = Path(path).resolve()
    if gradio_temp_dir() in file.parents and file not in keep:
        file.unlink(missing_ok=True)


def run(bank: ModelBank, model_name: str, image, **options):
    """Run the chosen model's pipeline; model and input problems become a clean gr.Error."""
    try:
        return bank.get(model_name)(image, **options)
    except (ModelLoadError, BadImageError) as error:
        raise gr.Error(str(error), print_exception=False) from None


def table_rows(faces) -> list[list]:
    return [[f"#{face.index + 1}", face.gender, f"{face.p_female:.0%}", f"{face.age:.0f} y",
             f"{face.age_low:.0f}–{face.age_high:.0f} y",
             "—" if face.det_score is None else f"{face.det_score:.2f}"]  # "—": whole image, no detector
            for face in faces]


def face_choices(faces) -> list[tuple[str, int]]:
    return [(f"#{face.index + 1} · {face.label()}", face.index) for face in faces]


def summary(result, model_name: str) -> str:
    found = len(result.faces)
    head = f"**{found} face{'s' if found != 1 else ''}** · {CHOICES[model_name].label} · " \
           f"{sum(result.timings_ms.values()):.0f} ms"
    return "  \n".join([head, *result.notes])


# ---------------------------------------------------------------- photo tab

def analyze(bank, pixels, model_name, min_score, cam_on, head, detect=True):
    """pixels -> (annotated, table, result, face picker, CAM image, summary)."""
    if pixels is None:
        return None, [], None, gr.update(choices=[], value=None), None, ""
    # Both heads' maps come from one forward pass, so switching the head later only redraws.
    result = run(bank, model_name, pixels, min_score=min_score, detect=detect,
                 cam_heads=CAM_HEADS if cam_on else ())
    first = result.faces[0].index if result.faces else None
    picker = gr.update(choices=face_choices(result.faces), value=first, interactive=bool(result.faces))
    return (result.annotated, table_rows(result.faces), result, picker,
            cam_image(result, first, cam_on, head), summary(result, model_name))


def cam_image(result, face_index, cam_on, head):
    """The chosen face, aligned as the model saw it, with the chosen head's Grad-CAM blended in."""
    if result is None or not cam_on or face_index is None or not result.faces:
        return None
    face = result.faces[int(face_index)]
    return face.cam_image(head) if head in face.cams else None


def read_upload(path, keep: set[Path]):
    """Decode the uploaded file into memory and delete it; a bad file becomes a clean error."""
    if not path:
        return None
    try:
        return load_image(path)
    except BadImageError as error:
        raise gr.Error(str(error), print_exception=False) from None
    finally:
        forget_upload(path, keep)


# ---------------------------------------------------------------- webcam tab

def smoothed_faces(tracker: FaceTracker, faces) -> list:
    """Faces with their readouts replaced by each track's moving average (steady labels)."""
    tracks = tracker.update([(face.box, {k: getattr(face, k) for k in SMOOTHED}) for face in faces])
    return [dataclasses.replace(face, **track.values) for face, track in zip(faces, tracks)]


def on_frame(bank, frame, model_name, min_score, cam_on, head, tracker):
    if frame is None:
        return gr.skip(), gr.skip(), tracker
    start = time.perf_counter()
    tracker = tracker or FaceTracker()
    try:  # the short-range detector is made for faces within ~2 m of a camera, and is the faster one
        result = run(bank, model_name, frame, min_score=min_score, detector="short",
                     cam_heads=(head,) if cam_on else ())
    except gr.Error as error:  # said in the status line: a toast on every frame would pile up
        return frame, f"⚠️ {error.message}", tracker
    faces = smoothed_faces(tracker, result.faces)
    shown = result.image
    if cam_on and faces:
        biggest = max(faces, key=lambda f: f.box[2] * f.box[3])
        shown = result.cam_overlay(biggest.index, head)
    annotated = render.annotate(shown, [f.box for f in faces], [f.label() for f in faces],
                                [render.color_for(f.p_female) for f in faces])
    total_ms = (time.perf_counter() - start) * 1000
    parts = " · ".join(f"{k} {v:.0f}" for k, v in result.timings_ms.items())
    found = len(faces)
    latency = f"**{total_ms:.0f} ms** per frame ({parts} ms) · {found} face{'s' if found != 1 else ''}"
    return annotated, latency, tracker


# ---------------------------------------------------------------- API

def api_predict(bank, keep, path, model_name, min_score, detect):
    pixels = read_upload(path, keep)
    if pixels is None:
        raise gr.Error("No image was sent.", print_exception=False)
    result = run(bank, model_name, pixels, min_score=float(min_score), detect=bool(detect))
    return result, {"model": model_name, "faces": [face.to_record() for face in result.faces],
                    "notes": list(result.notes), "timings_ms": dict(result.timings_ms)}


# ---------------------------------------------------------------- layout

def build(bank: ModelBank, default_model: str = "scratch") -> gr.Blocks:
    model_choices = [(c.label, c.name) for c in CHOICES.values()]
    # delete_cache: Gradio's generated files (annotated images sent to browsers) go after 1-2 minutes.
    with gr.Blocks(title="Face age & gender", analytics_enabled=False, delete_cache=(60, 60)) as app:
        gr.Markdown("# Face age & gender\nFinds faces, estimates age and the probability of a *female* label, "
                    "and shows with Grad-CAM what the network looked at. Predictions can be wrong; appearance "
                    "does not determine gender (see the About tab).")
        with gr.Row(equal_height=True):
            model = gr.Radio(model_choices, value=default_model, label="Model", scale=3, elem_id="model")
            min_score = gr.Slider(0.1, 0.95, value=0.5, step=0.05, label="Face detector threshold",
                                  scale=2)
            cam_on = gr.Checkbox(value=True, label="Grad-CAM", scale=1, elem_id="cam-on")
            head = gr.Radio([(v, k) for k, v in HEAD_LABELS.items()], value="gender", label="CAM head",
                            scale=2, elem_id="cam-head")

        with gr.Tab("Photo", id="photo"):
            pixels = gr.State(None)  # the decoded upload, in memory for this session only
            result = gr.State(None)
            with gr.Row():
                with gr.Column():
                    photo = photo_input(sources=["upload", "clipboard"], label="Photo", height=420,
                                        elem_id="photo-input")
                    detect = gr.Checkbox(value=True, label="Find faces (turn off for a photo that is "
                                         "already a tight face crop)")
                    gr.Examples([[str(p)] for p in sorted(EXAMPLES.glob("*.jpg"))], inputs=photo,
                                cache_examples=False, label="Examples (public domain)")
                with gr.Column():
                    annotated = gr.Image(label="Faces", height=420, interactive=False, format="jpeg",
                                         buttons=["download", "fullscreen"], elem_id="photo-output")
                    status = gr.Markdown(elem_id="photo-status")
            with gr.Row():
                table = gr.Dataframe(headers=TABLE_HEADERS, label="All faces", interactive=False, wrap=True,
                                     elem_classes="readout", elem_id="faces-table", scale=3)
                with gr.Column(scale=2):
                    face = gr.Dropdown(label="Grad-CAM for face", choices=[], interactive=True,
                                       elem_id="face-picker")
                    cam = gr.Image(label="Grad-CAM on the aligned face", height=280, interactive=False,
                                   format="jpeg", buttons=["download", "fullscreen"], elem_id="cam-output")

        with gr.Tab("Webcam", id="webcam"):
            tracker = gr.State(None)
            with gr.Row():
                webcam = gr.Image(sources=["webcam"], streaming=True, type="numpy", label="Camera",
                                  elem_id="webcam-input")
                live = gr.Image(label="Live readout", interactive=False, format="jpeg", streaming=True,
                                buttons=["fullscreen"], elem_id="webcam-output")
            latency = gr.Markdown(elem_id="latency")
            gr.Markdown("Labels are averaged over recent frames per face, so they settle instead of "
                        "flickering. With Grad-CAM on, the map is shown for the largest face.")

        with gr.Tab("About", id="about"):
            gr.Markdown(about_markdown(bank))

        # API-only endpoints: plain inputs, per-face JSON out (the UI's own events are private).
        with gr.Column(visible=False):
            api_image = photo_input(label="image")
            api_model = gr.Dropdown([c.name for c in CHOICES.values()], value=default_model, label="model")
            api_min_score = gr.Number(0.5, label="min_score")
            api_detect = gr.Checkbox(True, label="detect")
            api_faces = gr.JSON(label="faces")
            api_annotated = gr.Image(label="annotated", format="jpeg")
            predict_button, annotate_button = gr.Button(), gr.Button()

        keep: set[Path] = set()  # Gradio's cached example files, filled in below once all blocks exist
        photo_outputs = [annotated, table, result, face, cam, status]
        options = [model, min_score, cam_on, head, detect]
        private = dict(api_visibility="private")

        # In the UI a bad file or a model that will not load is a warning toast and empty outputs (an
        # exception would paint "Error" over every output); API callers get the exception itself.
        def on_photo(path, *opts):
            try:
                decoded = read_upload(path, keep)
                return (gr.skip(), decoded, *analyze(bank, decoded, *opts))
            except gr.Error as error:
                gr.Warning(error.message)
                return (None, None, *analyze(bank, None, *opts))  # also clears the unusable input

        def on_options(decoded, *opts):
            try:
                return analyze(bank, decoded, *opts)
            except gr.Error as error:
                gr.Warning(error.message)
                return analyze(bank, None, *opts)

        photo.change(on_photo, [photo, *options], [photo, pixels, *photo_outputs], **private)
        for control in (model, min_score, cam_on, detect):
            control.change(on_options, [pixels, *options], photo_outputs, **private)
        for control in (face, head):  # only the overlay changes: no need to run the model again
            control.change(cam_image, [result, face, cam_on, head], cam, **private)

        webcam.stream(lambda *a: on_frame(bank, *a), [webcam, model, min_score, cam_on, head, tracker],
                      [live, latency, tracker], stream_every=STREAM_EVERY_S, time_limit=STREAM_TIME_LIMIT_S,
                      concurrency_limit=STREAM_CONCURRENCY, show_progress="hidden", **private)

        # Named parameters, so clients can call predict(image=..., model=..., min_score=..., detect=...).
        def predict(image, model, min_score, detect):
            return api_predict(bank, keep, image, model, min_score, detect)[1]

        def annotate(image, model, min_score, detect):
            res, faces = api_predict(bank, keep, image, model, min_score, detect)
            return res.annotated, faces

        api_inputs = [api_image, api_model, api_min_score, api_detect]
        predict_button.click(predict, api_inputs, api_faces, api_name="predict",
                             api_description="Faces in an image: box, P(female), gender, age with its 80% "
                                             "interval, detector score.")
        annotate_button.click(annotate, api_inputs, [api_annotated, api_faces], api_name="annotate",
                              api_description="Like /predict, plus the annotated image.")
    keep.update(Path(p).resolve() for block in app.blocks.values() for p in block.keep_in_cache)
    return app
