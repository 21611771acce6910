"""The files requests write and hand to Gradio, and the purge that deletes them and the uploads.

Every request writes into its own folder inside the app's Gradio folder (`Blocks.GRADIO_CACHE`: private to
the process, removed at exit), and each file is registered where Gradio lists the files it wrote
(`Blocks.temp_file_sets`), so the purge deletes it once it is `purge_after_s` old, and the emptied folder
after that.

The purge is ours (`Purge`), not Gradio's `delete_cache`: Gradio's loop walks those sets in a worker thread
while requests add to them, so "Set changed size during iteration" ends its task for good, and from then on
nothing is deleted. Measured with --purge-after 4 and 4 clients sending the four examples to /annotate for
60 s (2-core Zen 4): in each of 3 runs, files were left 34-70 s old 12 s after the traffic stopped (one run
of 30 s was clean); with `Purge`, none in 3 runs (docs/benchmarks.md has the loadtest command that counts
them). Gradio's loop run 50 times on 500 files, while another thread added one every 10 ms, raised 48
times. `Purge` deletes by the same rule from a snapshot of each set (tests/test_ui_files.py).

Images go out as files too, not as arrays: Gradio stores an array under a hash of its bytes and writes it in
place each time, so two requests with the same answer (one photo, two visitors; or one view drawn twice)
rewrite the very file a browser may be reading, which then shows a broken image. `python -m demo.loadtest
--clients 8 --requests 15 --endpoint annotate` (8 clients sending one photo, bundled scratch CNN, 2-core
Zen 4): 5 of 120 images came back empty or cut short that way (1 of 120 in another run), 0 of 120 with
files of their own. A request's own file is never rewritten (tests/test_app_api.py,
test_an_answer_is_never_rewritten_by_the_next_one).
"""
from __future__ import annotations

import collections
import logging
import os
import tempfile
import threading
import time
from pathlib import Path

import gradio as gr
import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

FOLDER_PREFIX = "out-"
JPEG_QUALITY = 75  # PIL's default, which Gradio's own encoding of these images used
KEEP_FRAMES = 30  # a webcam stream's annotated frames on disk at a time (RecentFrames)


def save_jpeg(image: np.ndarray | Image.Image, path: Path) -> None:
    """An RGB image (array or PIL) as a JPEG file."""
    pil = Image.fromarray(image) if isinstance(image, np.ndarray) else image
    pil.convert("RGB").save(path, "JPEG", quality=JPEG_QUALITY)


class OutputFiles:
    """One app's writer: request folders, images as files, the purge's list of what was written."""

    def __init__(self, app: gr.Blocks):
        self.files: set[str] = set()
        self.root = Path(app.GRADIO_CACHE)
        self._lock = threading.Lock()
        app.temp_file_sets.append(self.files)

    def folder(self) -> Path:
        """A new folder for one request's files."""
        self.root.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=FOLDER_PREFIX, dir=self.root))

    def add(self, *paths) -> None:
        """Register written files with the purge (it ages them by when they were last written)."""
        with self._lock:
            self.files.update(str(Path(p).resolve()) for p in paths)

    def images(self, *named: tuple[str, np.ndarray | Image.Image | None]) -> list[str | None]:
        """(name, RGB image) pairs -> paths of JPEG files of their own (None stays None), for gr.Image/Gallery."""
        folder = None
        paths = []
        for name, image in named:
            if image is None:
                paths.append(None)
                continue
            folder = folder or self.folder()
            path = folder / f"{name}.jpg"
            save_jpeg(image, path)
            self.add(path)
            paths.append(str(path))
        return paths

    def discard(self, path) -> None:
        """A file deleted before its time (RecentFrames): no longer the purge's."""
        with self._lock:
            self.files.discard(str(Path(path).resolve()))


class RecentFrames:
    """A webcam stream's annotated frames as files, only the newest `keep` on disk: the browser has long shown
    an older one (frames come every 0.08 s at most, demo.ui.STREAM_EVERY_S: 30 are 2.4 s or more), and a
    stream of two minutes would otherwise leave hundreds of frames of a face on disk until the purge."""

    def __init__(self, outputs: OutputFiles, keep: int = KEEP_FRAMES):
        self.outputs, self.keep = outputs, keep
        self.paths: collections.deque[Path] = collections.deque()
        self.folder: Path | None = None
        self.count = 0

    def add(self, image: np.ndarray) -> str:
        if self.folder is None or not self.folder.is_dir():  # the first frame, or swept while the stream was off
            self.folder = self.outputs.folder()
        path = self.folder / f"frame-{self.count:06d}.jpg"
        try:
            save_jpeg(image, path)
        except FileNotFoundError:  # swept between the check and the write
            self.folder = self.outputs.folder()
            path = self.folder / path.name
            save_jpeg(image, path)
        self.count += 1
        self.outputs.add(path)
        self.paths.append(path)
        while len(self.paths) > self.keep:
            old = self.paths.popleft()
            old.unlink(missing_ok=True)
            self.outputs.discard(old)
        return str(path)


class Purge(threading.Thread):
    """Deletes every file the app lists in `temp_file_sets` (uploads, what Gradio and OutputFiles wrote) once
    it is `age_s` old (by ctime, as Gradio's `delete_cache`; files a component keeps, its examples, stay),
    checking every `age_s / 2`; then the request folders that have stayed empty as long."""

    def __init__(self, app: gr.Blocks, age_s: float):
        super().__init__(name="purge", daemon=True)
        self.app, self.age_s = app, age_s

    def run(self) -> None:
        while True:
            time.sleep(max(1.0, self.age_s / 2))
            try:
                self.once()
            except Exception:  # a pass that fails must not end the purge
                log.exception("purge pass failed")

    def once(self) -> int:
        """One pass; how many files it deleted."""
        keep = set().union(*(getattr(b, "keep_in_cache", set()) for b in list(self.app.blocks.values())))
        deleted = 0
        for files in list(self.app.temp_file_sets):
            for path in list(files):  # a snapshot: requests add to the set meanwhile
                if path in keep:
                    continue
                try:
                    if time.time() - os.lstat(path).st_ctime <= self.age_s:
                        continue
                    os.remove(path)
                    deleted += 1
                except FileNotFoundError:
                    pass  # deleted through another set that listed it too
                except OSError as error:
                    log.warning("purge could not delete %s: %s", path, error)
                    continue
                files.discard(path)
        self.sweep()
        return deleted

    def sweep(self) -> None:
        """Remove request folders (OutputFiles) empty for longer than the purge age: their files were deleted,
        or never came. A new folder is younger, and a folder whose files went is as old as that."""
        for folder in Path(self.app.GRADIO_CACHE).glob(FOLDER_PREFIX + "*"):
            try:
                if time.time() - folder.stat().st_mtime > self.age_s and not any(folder.iterdir()):
                    folder.rmdir()
            except OSError:
                pass
