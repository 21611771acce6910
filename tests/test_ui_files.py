"""demo/ui_files.py: images as files of a request's own, and the purge that keeps deleting under traffic."""
from __future__ import annotations

import os
import shutil
import threading
import time
from types import SimpleNamespace

import numpy as np
from PIL import Image

from demo.ui_files import OutputFiles, Purge, RecentFrames


def fake_app(tmp_path, *file_sets, keep=()):
    """What OutputFiles and Purge read of a gr.Blocks: its folder, its lists of written files, its blocks."""
    return SimpleNamespace(GRADIO_CACHE=str(tmp_path), temp_file_sets=list(file_sets),
                           blocks={1: SimpleNamespace(keep_in_cache=set(keep))})


def write_files(folder, prefix, n) -> set[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {str(folder / f"{prefix}{i}") for i in range(n)}
    for path in paths:
        open(path, "wb").close()
    return paths


def test_images_are_files_of_their_own(tmp_path):
    outputs = OutputFiles(fake_app(tmp_path))
    face = np.zeros((40, 30, 3), np.uint8)
    face[:, :15] = (200, 30, 30)
    first = outputs.images(("faces", face), ("gradcam-age", None))
    second = outputs.images(("faces", face))
    assert first[1] is None and first[0] != second[0]  # the same answer twice: two files
    for path in (first[0], second[0]):
        assert path.endswith("/faces.jpg") and path in outputs.files  # named, and listed for the purge
        with Image.open(path) as image:
            assert image.format == "JPEG" and image.size == (30, 40)
            assert np.abs(np.asarray(image, np.float32) - face).mean() < 8  # JPEG; swapped channels: ~57


def test_a_stream_keeps_only_its_newest_frames_on_disk(tmp_path):
    outputs = OutputFiles(fake_app(tmp_path))
    frames = RecentFrames(outputs, keep=5)
    shown = [frames.add(np.full((8, 8, 3), i, np.uint8)) for i in range(12)]
    assert len(set(shown)) == 12  # each frame a file of its own
    on_disk = sorted(str(p) for p in tmp_path.rglob("frame-*.jpg"))
    assert on_disk == sorted(shown[-5:]) and outputs.files == set(shown[-5:])  # the purge lists only those
    shutil.rmtree(frames.folder)  # the stream was off long enough for its folder to be swept
    later = frames.add(np.zeros((8, 8, 3), np.uint8))
    assert os.path.isfile(later) and os.path.dirname(later) != os.path.dirname(shown[0])


def test_the_purge_deletes_old_files_and_keeps_young_and_kept_ones(tmp_path):
    old = write_files(tmp_path / "old", "f", 20)
    kept = sorted(old)[0]  # a component's own file (an example), never purged
    app = fake_app(tmp_path, set(old), keep={kept})
    time.sleep(0.3)
    young = write_files(tmp_path / "young", "f", 5)
    app.temp_file_sets[0] |= young
    assert Purge(app, age_s=0.2).once() == 19
    assert app.temp_file_sets[0] == young | {kept}
    assert {str(p) for p in tmp_path.rglob("f*")} == young | {kept}


def test_the_purge_goes_on_while_requests_add_files(tmp_path):
    """Gradio's delete_cache walks the live set and fails here ("Set changed size during iteration"), then
    never runs again; Purge works on a snapshot."""
    files = write_files(tmp_path / "old", "f", 500)
    app = fake_app(tmp_path, files)
    time.sleep(0.3)
    stop = threading.Event()

    def requests():  # a file every millisecond, as under traffic
        i = 0
        while not stop.is_set():
            path = tmp_path / "new" / f"g{i}"
            path.parent.mkdir(exist_ok=True)
            path.touch()
            files.add(str(path))
            i += 1
            time.sleep(0.001)

    adder = threading.Thread(target=requests)
    adder.start()
    try:
        purge = Purge(app, age_s=0.2)
        deleted = sum(purge.once() for _ in range(30))
    finally:
        stop.set()
        adder.join()
    assert deleted >= 500 and not list((tmp_path / "old").iterdir())


def test_the_purge_removes_request_folders_left_empty(tmp_path):
    app = fake_app(tmp_path)
    outputs = OutputFiles(app)
    emptied, in_use, new = outputs.folder(), outputs.folder(), outputs.folder()
    (in_use / "faces.jpg").touch()
    for folder in (emptied, in_use):
        os.utime(folder, (time.time() - 10, time.time() - 10))
    Purge(app, age_s=5).once()
    assert not emptied.exists() and in_use.is_dir() and new.is_dir()  # the new one is younger than the age


def test_a_file_that_cannot_be_deleted_does_not_stop_the_others(tmp_path, caplog):
    old = write_files(tmp_path / "old", "f", 3)
    stuck = tmp_path / "old" / "a-folder"  # os.remove fails on it
    stuck.mkdir()
    app = fake_app(tmp_path, old | {str(stuck)})
    time.sleep(0.3)
    assert Purge(app, age_s=0.2).once() == 3
    assert app.temp_file_sets[0] == {str(stuck)} and "could not delete" in caplog.text
    assert os.listdir(tmp_path / "old") == ["a-folder"]
