"""The files requests write and hand to Gradio: images, clips, tables, each request in a folder of its own.

Every request writes into its own folder inside the app's Gradio folder (`Blocks.GRADIO_CACHE`: private to
the process, removed at exit), and each file is registered with Gradio's `delete_cache` purge
(`Blocks.temp_file_sets`, by age) when written, so none outlives `purge_after_s`. Emptied folders are swept on
later requests.

Images go out as files too, not as arrays: Gradio stores an array under a hash of its bytes and writes it in
place each time, so two requests with the same answer (one photo, two visitors; or one view drawn twice)
rewrite the very file a browser may be reading, which then shows a broken image. Measured with 8 clients
sending one photo to /annotate 15 times each, on the bundled scratch CNN (2-core Zen 4): 1 of 120 images
came back empty or cut short that way, 0 of 120 with files of their own. A request's own file is never
rewritten (tests/test_app_api.py, test_an_answer_is_never_rewritten_by_the_next_one).
"""
from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

import gradio as gr
import numpy as np
from PIL import Image

FOLDER_PREFIX = "out-"
JPEG_QUALITY = 75  # what Gradio's own JPEG encoding (PIL's default) gave the same outputs


class OutputFiles:
    def __init__(self, app: gr.Blocks, purge_after_s: int):
        self.files: set[str] = set()
        self.purge_after_s = purge_after_s
        self.root = Path(app.GRADIO_CACHE)
        self._lock = threading.Lock()
        app.temp_file_sets.append(self.files)

    def folder(self) -> Path:
        """A new folder for one request's files."""
        self.sweep()
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
            pil = Image.fromarray(image) if isinstance(image, np.ndarray) else image
            pil.convert("RGB").save(path, "JPEG", quality=JPEG_QUALITY)
            self.add(path)
            paths.append(str(path))
        return paths

    def sweep(self) -> None:
        """Remove request folders older than the purge age whose files Gradio has deleted (or never came)."""
        for folder in self.root.glob(FOLDER_PREFIX + "*"):
            try:
                if time.time() - folder.stat().st_mtime > self.purge_after_s and not any(folder.iterdir()):
                    folder.rmdir()
            except OSError:
                pass
