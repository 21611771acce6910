"""Face age & gender demo: `python app.py` serves the Gradio app on http://127.0.0.1:7860.

Also the Hugging Face Spaces entry point. `python app.py --help` lists the options; each also has an
environment variable (Spaces sets GRADIO_SERVER_NAME=0.0.0.0).
"""
from __future__ import annotations

import argparse
import atexit
import importlib
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time

START = time.perf_counter()

# Privacy and quiet before Gradio is imported (it reads these at import time): no analytics, and
# uploads / generated images go to a private folder that is purged while running (--purge-after) and
# removed at exit.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
TEMP_DIR = tempfile.mkdtemp(prefix="face-app-")
os.environ["GRADIO_TEMP_DIR"] = TEMP_DIR
atexit.register(shutil.rmtree, TEMP_DIR, ignore_errors=True)


def _terminate(*_) -> None:
    """`kill`: the same clean-up, then out at once. A normal interpreter exit (sys.exit) with a thread still
    inside torch or MediaPipe (the model preload right after start, a request in flight) could abort in C++
    ("terminate called without an active exception", exit -6) or print a traceback."""
    shutil.rmtree(TEMP_DIR, ignore_errors=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


signal.signal(signal.SIGTERM, _terminate)


def parse_args(argv=None) -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=env("GRADIO_SERVER_NAME", "127.0.0.1"),
                        help="interface to listen on (env GRADIO_SERVER_NAME; default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=int(env("GRADIO_SERVER_PORT", "7860")),
                        help="port (env GRADIO_SERVER_PORT; default 7860)")
    parser.add_argument("--model", default=env("FACE_APP_MODEL"), choices=["scratch", "vgg16", "ensemble"],
                        help="model selected at start (env FACE_APP_MODEL; default: model.hub.DEFAULT_ARCH, the "
                             "one that measures best, as in the CLI and the API)")
    parser.add_argument("--scratch-spec", default=env("FACE_SCRATCH_SPEC"), metavar="SPEC",
                        help="scratch model: local folder or Hub repo id (default: its Hub repo, else bundled)")
    parser.add_argument("--vgg16-spec", default=env("FACE_VGG16_SPEC"), metavar="SPEC",
                        help="VGG16 model: local folder or Hub repo id (default: its Hub repo, else bundled)")
    parser.add_argument("--share", action="store_true", default=env("GRADIO_SHARE", "").lower() == "true",
                        help="also open a public gradio.live link (env GRADIO_SHARE=true; off by default)")
    parser.add_argument("--threads", type=int, default=int(env("FACE_TORCH_THREADS", "1")),
                        help="torch threads per request (env FACE_TORCH_THREADS; default 1: requests run side "
                             "by side, and on a busy 2-core machine one thread ran ~10x faster than two)")
    parser.add_argument("--purge-after", type=int, default=int(env("FACE_PURGE_AFTER_S", "120")), metavar="S",
                        help="delete uploads and generated images this many seconds after they were written "
                             "(env FACE_PURGE_AFTER_S; default 120)")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    # torch and gradio take about 4 s each to import here; importing gradio on a second thread meanwhile
    # measured 6.5-7.2 s for both instead of 8.5-11.8 s one after the other.
    gradio_import = threading.Thread(target=importlib.import_module, args=("gradio",), daemon=True)
    gradio_import.start()
    import torch

    torch.set_num_threads(args.threads)
    from model.hub import DEFAULT_ARCH, load_model
    from demo.ui_models import CHOICES, ModelBank, ModelLoadError

    args.model = args.model or DEFAULT_ARCH
    specs = {name: spec for name, spec in (("scratch", args.scratch_spec), ("vgg16", args.vgg16_spec)) if spec}
    bank = ModelBank(load_model, specs)
    try:
        bank.get(args.model)  # the default model loads before serving
    except ModelLoadError as error:
        sys.exit(str(error))

    gradio_import.join()
    from demo.ui import CSS, build
    from demo.videoio import MAX_BYTES  # the video cap (FACE_VIDEO_MAX_MB); photos over 100 MB are refused later

    app = build(bank, default_model=args.model, purge_after_s=args.purge_after)
    app.queue(max_size=32)
    app.launch(server_name=args.host, server_port=args.port, share=args.share, css=CSS,
               footer_links=["api"], run_history=False, enable_monitoring=False, mcp_server=False,
               max_file_size=MAX_BYTES, prevent_thread_lock=True, quiet=True)
    print(f"Serving on http://{args.host}:{args.port} (ready in {time.perf_counter() - START:.1f} s)",
          flush=True)
    # Warm-up and the other model wait until the server is up: serving starts sooner, and neither the
    # first request nor the first switch of model pays for loading.
    bank.preload([args.model, *(name for name in CHOICES if name != args.model)])
    app.block_thread()


if __name__ == "__main__":
    main()
