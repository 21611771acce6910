"""Video clips: tracking people through a clip the test makes (tests/videoclips.py), the annotated clip, the
CLI on videos, and every kind of bad video input."""
from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import av
import numpy as np
import pytest

from demo import cli, video, videoio
from demo.pipeline import Pipeline
from videoclips import (ENTERS, EXAMPLES, FPS, FRAMES, clip_frame_count, first_frame, resized, rotate_90,
                        two_people_clip, two_people_frames, write_clip)

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def pipeline(model_dir):
    return Pipeline(str(model_dir))


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return two_people_clip(tmp_path_factory.mktemp("clips") / "two.mp4")


@pytest.fixture(scope="module")
def analysed(pipeline, clip, tmp_path_factory):
    out = tmp_path_factory.mktemp("out") / "annotated.webm"
    seen = []
    result = video.analyze(pipeline, clip, output=out, progress=lambda *a: seen.append(a))
    return result, seen


def test_two_people_counted_with_their_frames_and_times(analysed):
    result, _ = analysed
    assert (result.decoded_frames, result.analysed_frames) == (FRAMES, FRAMES)
    people = [p.to_record() for p in result.people]
    assert [(p["track"], p["frames"], p["first_s"], p["last_s"]) for p in people] == [
        (1, FRAMES, 0.0, (FRAMES - 1) / FPS), (2, FRAMES - ENTERS, ENTERS / FPS, (FRAMES - 1) / FPS)]
    for p in people:
        assert 0 <= p["p_female"] <= 1 and 0 <= p["age_low"] <= p["age"] <= p["age_high"] <= 100
    assert len(result.rows) == FRAMES + FRAMES - ENTERS
    assert all(p.thumb is not None and max(p.thumb.shape[:2]) == video.THUMB_SIDE for p in result.people)


def test_one_readout_per_person_is_the_average_of_its_frames(analysed):
    """The per-frame readouts move (a face drifting over the frame); the person's one answer is their mean."""
    result, _ = analysed
    first = result.people[0]
    p_frames = [r.p_female for r in result.rows if r.track == first.track]
    assert np.std(p_frames) > 0  # the frames do differ...
    assert first.p_female == pytest.approx(np.mean(p_frames))  # ...the answer is one number
    low, high = first.age_interval
    assert low <= first.age <= high


def test_annotated_clip_plays_every_frame_and_progress_counts_up(analysed):
    result, seen = analysed
    out = Path(result.annotated)
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, container.format.name.split(",")[0]) == ("vp9", "matroska")
        assert (stream.codec_context.width, stream.codec_context.height) == (320, 240)
    assert clip_frame_count(out) == FRAMES
    stages = {stage for *_, stage in seen}
    assert stages == {"finding faces", "writing the annotated video"}
    assert seen[-1][:2] == (FRAMES, FRAMES)
    # the first frame shows person 1's box, drawn in a label colour where the grey background was
    assert (np.abs(first_frame(out).astype(int) - 128).sum(axis=2) > 150).any()


def test_detecting_every_third_frame_barely_moves_the_answers(pipeline, clip, analysed):
    full, _ = analysed
    sparse = video.analyze(pipeline, clip, every=3)
    assert sparse.analysed_frames == FRAMES // 3
    assert [p.frames for p in sparse.people] == [10, 6]  # frames 0, 3, ..., 27; 12, ..., 27
    for a, b in zip(full.people, sparse.people):
        assert abs(a.p_female - b.p_female) < 0.05 and abs(a.age - b.age) < 2


def test_box_timeline_interpolates_between_analysed_frames():
    rows = [video.FrameRow(0, 0, 1, (0, 0, 10, 10), .5, 30, 20, 40, .9),
            video.FrameRow(3, .1, 1, (30, 0, 10, 10), .5, 30, 20, 40, .9)]
    timeline = video.BoxTimeline(rows, every=3)
    assert timeline.at(1) == [(1, (10.0, 0.0, 10.0, 10.0))]
    assert timeline.at(5) == [(1, (30, 0, 10, 10))]  # held after the last analysed frame...
    assert timeline.at(6) == []  # ...for every - 1 frames only


def test_rotated_phone_clip_is_turned_upright(pipeline, tmp_path, analysed):
    """Sensor pixels stored sideways with a 90 degree display matrix, as phones write portrait clips."""
    sideways = [np.ascontiguousarray(np.rot90(f, k=1)) for f in two_people_frames()]
    clip = rotate_90(write_clip(tmp_path / "raw.mp4", sideways), tmp_path / "rotated.mp4")
    result = video.analyze(pipeline, clip)
    assert (result.info.width, result.info.height, result.info.rotation) == (320, 240, 270)
    assert [p.frames for p in result.people] == [p.frames for p in analysed[0].people]


def test_variable_frame_rate_keeps_true_times(pipeline, tmp_path):
    times = [0.0, 0.05, 0.1, 0.4, 0.45, 1.0, 1.5, 1.55, 1.6, 2.5]
    clip = write_clip(tmp_path / "vfr.mp4", two_people_frames(frames=len(times), enters=5), times=times)
    result = video.analyze(pipeline, clip)
    assert [(p.first_s, p.last_s) for p in result.people] == [(0.0, 2.5), (1.0, 2.5)]


def test_4k_clip_detects_downscaled_and_writes_at_most_1280(pipeline, tmp_path):
    frames = resized(two_people_frames(frames=3, enters=0), (3840, 2160))
    clip = write_clip(tmp_path / "uhd.mp4", frames)
    out = tmp_path / "uhd.webm"
    # min_score 0.7: the portraits blown up 12x are blurry, and the full-range model's 2x2 tiles then see a
    # "face" in the astronaut's suit at 0.57
    result = video.analyze(pipeline, clip, output=out, min_score=0.7)
    assert len(result.people) == 2 and all(p.frames == 3 for p in result.people)
    assert max(r.box[2] for r in result.rows) > 600  # full-resolution pixels (~240 at 1280 px)
    assert first_frame(out).shape == (720, 1280, 3)


def audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    return path


def no_frames(path: Path) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        container.start_encoding()
    return path


@pytest.mark.parametrize("make, message", [
    (lambda d, clip: d.joinpath("text.mp4").write_text("not a video") and d / "text.mp4", "not a video"),
    (lambda d, clip: shutil.copy(EXAMPLES / "astronaut.jpg", d / "photo.mov"), "still image, not a video"),
    (lambda d, clip: d.joinpath("empty.webm").write_bytes(b"") == 0 and d / "empty.webm", "empty"),
    (lambda d, clip: d.joinpath("cut.mp4").write_bytes(clip.read_bytes()[:2000]) and d / "cut.mp4",
     "not a video|damaged or truncated|no frames"),
    (lambda d, clip: audio_only(d / "sound.wav"), "no video stream"),
    (lambda d, clip: no_frames(d / "none.mp4"), "no video stream"),  # FFmpeg drops a track without samples
])
def test_bad_videos_give_one_sentence(pipeline, clip, tmp_path, make, message):
    with pytest.raises(videoio.BadVideoError, match=message) as caught:
        video.analyze(pipeline, make(tmp_path, clip))
    assert caught.value.args[0].endswith(".") and "\n" not in caught.value.args[0]


def test_clip_truncated_midway_keeps_the_frames_before_the_break(pipeline, clip, tmp_path):
    data = clip.read_bytes()
    cut = tmp_path / "half.mp4"
    cut.write_bytes(data[:len(data) * 2 // 3])
    try:
        result = video.analyze(pipeline, cut)
    except videoio.BadVideoError as error:  # mp4 keeps its index at the end: a cut file may not open at all
        assert "truncated" in str(error) or "not a video" in str(error)
    else:
        assert 0 < result.decoded_frames <= FRAMES


def test_over_the_caps(pipeline, clip):
    with pytest.raises(videoio.BadVideoError, match=r"too large \(0 MB\); the limit is 0 MB"):
        video.analyze(pipeline, clip, max_bytes=1000)
    with pytest.raises(videoio.BadVideoError, match=r"too long \(3 s\); the limit is 2 s"):
        video.analyze(pipeline, clip, max_seconds=2)


# ---------------------------------------------------------------- CLI

def test_cli_prints_one_record_per_person(clip, model_dir, capsys):
    assert cli.main([str(clip), "--model", str(model_dir)]) == 0
    people = json.loads(capsys.readouterr().out)
    assert [(p["file"], p["track"], p["frames"]) for p in people] == [(str(clip), 1, 30), (str(clip), 2, 20)]
    assert set(people[0]) >= {"file", "track", "frames", "first_s", "last_s", "p_female", "age", "age_low",
                              "age_high"}
    assert cli.main([str(clip), "--model", str(model_dir), "--age-probs"]) == 0  # each person's distribution
    for person in json.loads(capsys.readouterr().out):
        probs = np.array(person["age_probs"])
        assert len(probs) == 101 and abs(probs @ np.arange(101) - person["age"]) < 0.1


def test_cli_folder_with_photos_and_videos_csv_per_frame(clip, model_dir, tmp_path, capsys):
    shutil.copy(clip, tmp_path / "clip.mp4")
    shutil.copy(EXAMPLES / "three_portraits.jpg", tmp_path / "photo.jpg")
    assert cli.main([str(tmp_path), "--model", str(model_dir), "--format", "csv", "--per-frame",
                     "--max-faces", "2"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    photo = [r for r in rows if r["file"].endswith("photo.jpg")]
    frames = [r for r in rows if r["file"].endswith("clip.mp4")]
    assert len(photo) == 2  # --max-faces: the two most confident of three
    assert len(frames) == 50 and {r["track"] for r in frames} == {"1", "2"}
    assert frames[0]["frame"] == "0" and frames[0]["face"] == "" and photo[0]["frame"] == ""


def test_each_persons_age_distribution_is_the_one_their_answer_comes_from(analysed):
    """What the Video tab draws for a person (demo.ui_age.age_table): the distribution averaged over their
    frames, its mean their age, the years of their 80% interval marked and holding at least 80% of it."""
    from demo.ui_age import INTERVAL_PART, age_table
    result, _ = analysed
    for person in result.people:
        table = age_table(person.age_probs, *person.age_interval)
        assert abs(table["probability"].sum() - 1) < 1e-3
        assert abs((table["age"] * table["probability"]).sum() - person.age) < 0.05
        low, high = person.age_interval
        inside = table["years"] == INTERVAL_PART
        assert list(table["age"][inside]) == list(range(round(low), round(high) + 1))
        assert table["probability"][inside].sum() >= 0.8 - 1e-3
