"""The /video endpoint against the running app (tests/appserver.py), with a clip the test makes."""
from __future__ import annotations

import time

import gradio as gr
import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from demo.ui import NOT_UPLOADED
from demo.ui_files import FOLDER_PREFIX
from demo.ui_video import analysis_step
from model.fast import float_precision
from videoclips import ENTERS, FRAMES, FPS, clip_frame_count, two_people_clip

pytest_plugins = ["appserver"]


@pytest.fixture(scope="module")
def client(app_url) -> Client:
    return Client(app_url, verbose=False)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return two_people_clip(tmp_path_factory.mktemp("clip") / "street.mp4")


def call(client: Client, path, **options):
    return client.predict(video=handle_file(str(path)), api_name="/video", **options)


def test_video_endpoint_returns_the_annotated_clip_and_each_person(client, clip, app_temp_dir, app_purge_after_s):
    annotated, out = call(client, clip, model="scratch")
    assert (out["model"], out["frames"], out["fps"]) == ("scratch", FRAMES, FPS)
    assert out["precision"] == float_precision()  # the scratch CNN ships no int8 ranges: bf16 or fp32 by CPU
    step = analysis_step(FPS)  # frames analysed: every step-th (2 at this clip's 10 frames/s)
    assert step == 2 and ENTERS % step == 0
    assert [(p["track"], p["frames"], p["first_s"]) for p in out["people"]] == [
        (1, len(range(0, FRAMES, step)), 0.0), (2, len(range(ENTERS, FRAMES, step)), ENTERS / FPS)]
    for p in out["people"]:
        assert set(p) >= {"track", "frames", "first_s", "last_s", "p_female", "gender", "age", "age_low", "age_high"}
        probs = np.array(p["age_probs"])  # the distribution the person's answer comes from
        assert len(probs) == 101 and abs(probs.sum() - 1) < 1e-3 and abs(probs @ np.arange(101) - p["age"]) < 0.1
    path = annotated["video"] if isinstance(annotated, dict) else annotated
    assert path.endswith(".webm") and clip_frame_count(path) == FRAMES
    # what the request wrote (annotated clip, CSV/JSON tables) goes with Gradio's purge
    written = lambda: [p for p in app_temp_dir.glob(f"face-app-*/{FOLDER_PREFIX}*/*") if p.is_file()]  # noqa: E731
    assert written()
    deadline = time.monotonic() + 4 * app_purge_after_s
    while written() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert written() == []


def test_bad_video_is_one_sentence_and_the_server_keeps_serving(client, tmp_path, clip):
    bad = tmp_path / "holiday.mp4"
    bad.write_text("this is not a video")
    with pytest.raises(AppError, match=r"This file is not a video \(or not a format we can read\)\."):
        call(client, bad)
    assert len(call(client, clip)[1]["people"]) == 2


FILE_DATA = {"_type": "gradio.FileData"}


@pytest.mark.parametrize("payload", [{"path": "/etc/passwd"}, {"url": "file:///etc/passwd"},
                                     {"video": {"path": "/etc/hostname", "meta": FILE_DATA}},
                                     {"video": {"path": "/etc/hostname"}}])
def test_files_not_uploaded_are_refused(client, payload, clip):
    """gr.Video's payloads are validated by Gradio before the handler runs (untagged ones are malformed, tagged
    ones outside its upload folder are refused by its own rule); whatever passes meets demo.ui.uploaded_path."""
    with pytest.raises(AppError) as error:
        client.predict(payload, api_name="/video")
    reply = str(error.value)
    assert not any(text in reply for text in ("Errno", "No such file", "Traceback", "passwd", "hostname")), reply
    assert len(call(client, clip)[1]["people"]) == 2  # still serving


def test_handler_checks_the_path_itself(tmp_path):
    from demo.ui_video import video_path

    for payload in ({"video": {"path": "/etc/passwd"}}, "/etc/passwd", {"path": str(tmp_path)}):
        with pytest.raises(gr.Error) as error:
            video_path(payload)
        assert error.value.message == NOT_UPLOADED


def test_tables_carry_the_age_distribution_as_a_list_in_json_and_as_columns_in_csv(tmp_path):
    import csv
    import json

    from demo.ui_video import write_table
    probs = np.full(101, 1 / 101).round(5).tolist()
    records = [{"track": 1, "age": 50.0, "age_probs": probs}, {"track": 2, "age": 50.0, "age_probs": probs}]
    csv_path, json_path = write_table(records, tmp_path / "people")
    assert json.loads(json_path.read_text()) == records
    rows = list(csv.DictReader(csv_path.open()))
    assert list(rows[0]) == ["track", "age"] + [f"age_p{age}" for age in range(101)]
    assert [float(rows[1][f"age_p{age}"]) for age in range(101)] == probs
