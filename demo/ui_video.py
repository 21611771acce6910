"""The Video tab and the /video endpoint: a clip in, the annotated clip, one row per person, downloads out.

Handlers get the upload unprocessed (Gradio's Video preprocessing would try to convert formats with a system
ffmpeg) and open it only after demo.ui's `uploaded_path` check. What a request writes (the annotated clip,
the CSV/JSON tables, the images) goes into a folder of its own and is purged with the rest
(demo.ui_files).
"""
from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import gradio as gr

from demo import ui_age, video, videoio
from demo.pipeline import csv_row
from demo.ui_age import age_table
from demo.ui_files import OutputFiles
from demo.ui_models import ModelLoadError
from model.cam import HEADS as CAM_HEADS

TABLE_HEADERS = ["person", "first seen (s)", "last seen (s)", "frames", "gender (confidence)", "age",
                 "age range (80%)"]
CONCURRENCY = 1  # a clip keeps a core busy for as long as it plays: one at a time
# Frames the app analyses per second of clip (every 5th of 30 frames/s; boxes are interpolated between).
# python -m demo.video_bench --scan-seconds 1 --every 1 --every 3 --every 5, scratch CNN, 640x480 at 30 frames/s,
# 2-core AMD EPYC Zen 1: every frame 13.4 frames/s, every 3rd 27.3, every 5th 36.8 (1.23x real time); against
# every frame the people's answers move by <= 0.006 / 0.049 in P(female) and <= 0.33 / 2.1 y.
ANALYSED_PER_SECOND = 6


def analysis_step(fps: float) -> int:
    """Analyse every N-th frame: ANALYSED_PER_SECOND frames a second, every frame of a slower clip."""
    return max(1, round(fps / ANALYSED_PER_SECOND))


def people_rows(result) -> list[list]:
    rows = []
    for person in result.people:
        low, high = person.age_interval
        rows.append([f"#{person.track}", f"{person.first_s:.1f}", f"{person.last_s:.1f}", person.frames,
                     person.gender_confidence, f"{person.age:.0f} y", f"{low:.0f}–{high:.0f} y"])
    return rows


def write_table(records: list[dict], path_stem: Path) -> list[Path]:
    """records -> <stem>.csv and <stem>.json (the same rows; an age distribution as columns in the CSV)."""
    csv_path, json_path = (path_stem.parent / f"{path_stem.name}{suffix}" for suffix in (".csv", ".json"))
    rows = [csv_row(record) for record in records]
    with open(csv_path, "w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]) if rows else ["none"])
        writer.writeheader()
        writer.writerows(rows)
    json_path.write_text(json.dumps(records, indent=1))
    return [csv_path, json_path]


def faces_downloads(outputs: OutputFiles, result) -> list[str] | None:
    """The Photo tab's faces table as CSV and JSON (demo.pipeline.Face.to_record rows)."""
    if result is None:
        return None
    folder = outputs.folder()
    files = write_table([face.to_record(age_probs=True) for face in result.faces], folder / "faces")
    outputs.add(*files)
    return [str(f) for f in files]


def video_path(payload) -> str:
    from demo.ui import upload_source  # demo.ui imports this module

    if isinstance(payload, dict) and isinstance(payload.get("video"), dict):  # gr.Video's {video, subtitles}
        payload = payload["video"]
    source = upload_source(payload)
    if source is None:
        raise gr.Error("No video was sent.", print_exception=False)
    if not isinstance(source, str):
        raise gr.Error("Send the video as a file.", print_exception=False)
    return source


def process(bank, outputs: OutputFiles, payload, model_name: str, min_score: float, progress=None):
    """A vetted upload -> (VideoResult, annotated clip path, the people as JSON, download paths)."""
    path = video_path(payload)
    folder = outputs.folder()
    stem = Path(path).stem[:60] or "video"
    annotated = folder / f"{stem}.annotated{videoio.SUFFIX}"

    def report(done, total, stage):
        if progress is not None:
            progress((done, total), desc=stage, unit="frames")

    # The upload is purged `purge_after_s` after it arrived, and a long clip takes longer than that: work on a
    # hard link of our own (the data stays while we read it), removed when done.
    own = folder / f"input{Path(path).suffix.lower()}"
    try:
        os.link(path, own)
    except OSError:  # another file system
        shutil.copyfile(path, own)
    try:
        try:
            info = videoio.probe(own)
            result = video.analyze(bank.get(model_name), own, every=analysis_step(info.fps), output=annotated,
                                   progress=report, min_score=float(min_score), info=info)
        finally:
            own.unlink(missing_ok=True)
            outputs.add(*folder.iterdir())  # only now: the purge ages files by when they were last written
    except (ModelLoadError, videoio.BadVideoError) as error:
        shutil.rmtree(folder, ignore_errors=True)
        raise gr.Error(str(error), print_exception=False) from None
    record = {"model": model_name, "fps": round(result.info.fps, 3), "frames": result.decoded_frames,
              "duration_s": round(result.info.duration_s, 3),
              "people": [p.to_record(age_probs=True) for p in result.people],
              "notes": result.notes, "precision": result.precision}
    downloads = (write_table(record["people"], folder / f"{stem}.people")
                 + write_table([r.to_record() for r in result.rows], folder / f"{stem}.frames"))
    outputs.add(*downloads)
    return result, str(annotated), record, [str(p) for p in downloads]


def precision_note(result) -> str:
    """" · model in int8": the arithmetic the model ran in on this CPU (model/fast.py), which sets its speed. For
    every tab's status line (demo.ui imports it from here)."""
    return f" · model in {result.precision}" if result.precision else ""


def summary(result) -> str:
    found = len(result.people)
    head = (f"**{found} {'person' if found == 1 else 'people'}** in {result.decoded_frames} frames "
            f"({result.info.duration_s:.1f} s, {result.info.width}x{result.info.height}) · "
            f"{sum(result.timings_s.values()):.1f} s{precision_note(result)}")
    return "  \n".join([head, *result.notes])


def person_views(bank, model_name, result, track) -> tuple:
    """What the Video tab shows of the chosen person: Grad-CAM of both heads on their sharpest face, and the
    age distribution of their answer (averaged over the frames they were seen in)."""
    person = find_person(result, track)
    age = None if person is None else age_table(person.age_probs, *person.age_interval)
    return (*person_cams(bank, model_name, person), age)


def find_person(result, track):
    if result is None or track is None:
        return None
    return next((p for p in result.people if p.track == int(track)), None)


def person_cams(bank, model_name, person) -> tuple:
    """Grad-CAM of both heads on the person's sharpest aligned face (None, None without a person)."""
    if person is None or person.crop is None:
        return None, None
    try:
        face = bank.get(model_name)(person.crop, detect=False, cam_heads=CAM_HEADS, draw=False).faces[0]
    except ModelLoadError as error:
        raise gr.Error(str(error), print_exception=False) from None
    return tuple(face.cam_image(head) for head in CAM_HEADS)


def build_tab(bank, outputs: OutputFiles, model, min_score) -> None:
    """The Video tab's components and events (inside a gr.Tab of demo.ui.build)."""
    state = gr.State(None)
    with gr.Row():
        with gr.Column():
            clip = gr.Video(sources=["upload"], label="Video (mp4, webm, mov, avi)", height=360,
                            elem_id="video-input")
            gr.Markdown(f"Up to {videoio.MAX_BYTES / 1e6:.0f} MB and {videoio.MAX_SECONDS / 60:.0f} minutes. Each "
                        "person is followed through the clip and gets one answer, averaged over the frames "
                        f"they were seen in ({ANALYSED_PER_SECOND} a second are analysed).")
        with gr.Column():
            annotated = gr.Video(label="Annotated", height=360, interactive=False, elem_id="video-output",
                                 autoplay=False)
            status = gr.Markdown(elem_id="video-status")
    table = gr.Dataframe(headers=TABLE_HEADERS, label="People", interactive=False, wrap=True,
                         elem_classes="readout", elem_id="people-table")
    with gr.Row():
        thumbs = gr.Gallery(label="Each person's sharpest frame", columns=6, height=180, format="jpeg",
                            elem_id="people-thumbs")
        downloads = gr.File(label="Tables (CSV, JSON): people and per-frame faces", file_count="multiple",
                            interactive=False, elem_id="video-downloads")
    with gr.Row():
        person = gr.Dropdown(label="Grad-CAM for person (sharpest frame)", choices=[], elem_id="person-picker")
        cam_gender = gr.Image(label="What drove the gender call", height=200, interactive=False, format="jpeg")
        cam_age = gr.Image(label="What drove the age estimate", height=200, interactive=False, format="jpeg")
    age_plot = ui_age.age_plot("person-age-distribution")

    def views(model_name, result, track) -> tuple:
        """person_views with its images as files of this request's own (demo/ui_files.py)."""
        cam_g, cam_a, age = person_views(bank, model_name, result, track)
        return (*outputs.images(("gradcam-gender", cam_g), ("gradcam-age", cam_a)), age)

    def on_video(payload, model_name, score, progress=gr.Progress()):
        empty = (None, None, [], [], None, gr.update(choices=[], value=None), None, None, None, "")
        if payload is None:
            return empty
        try:
            result, out, _, files = process(bank, outputs, payload, model_name, score, progress)
        except gr.Error as error:
            gr.Warning(error.message)
            return empty
        choices = [(f"#{p.track} · {p.label()}", p.track) for p in result.people]
        first = choices[0][1] if choices else None
        thumb_files = outputs.images(*((f"person-{p.track}", p.thumb) for p in result.people))
        gallery = [(path, f"#{p.track} · {p.label()}") for p, path in zip(result.people, thumb_files)]
        return (result, out, people_rows(result), gallery, files, gr.update(choices=choices, value=first),
                *views(model_name, result, first), summary(result))

    clip.change(on_video, [clip, model, min_score],
                [state, annotated, table, thumbs, downloads, person, cam_gender, cam_age, age_plot, status],
                preprocess=False, concurrency_limit=CONCURRENCY, concurrency_id="video", api_visibility="private")
    # A person's pick, not the clip's answer setting the first person (that one's views came with it).
    person.input(views, [model, state, person], [cam_gender, cam_age, age_plot], api_visibility="private")


def build_api(bank, outputs: OutputFiles, model_choices: list[str], default_model: str) -> None:
    """The /video endpoint: (video, model, min_score) -> (annotated clip, people as JSON)."""
    with gr.Column(visible=False):
        api_video = gr.Video(label="video")
        api_model = gr.Dropdown(model_choices, value=default_model, label="model")
        api_min_score = gr.Number(0.5, label="min_score")
        api_annotated = gr.Video(label="annotated")
        api_people = gr.JSON(label="people")
        button = gr.Button()

    def video_api(video, model, min_score):
        _, out, record, _ = process(bank, outputs, video, model, min_score)
        return out, record

    button.click(video_api, [api_video, api_model, api_min_score], [api_annotated, api_people], api_name="video",
                 preprocess=False, concurrency_limit=CONCURRENCY, concurrency_id="video",
                 api_description="Every person tracked through a video: the annotated clip (VP9 webm) and one "
                                 "record per person (track, frames, first_s, last_s, p_female, gender, age, "
                                 "age_low, age_high, age_probs).")

