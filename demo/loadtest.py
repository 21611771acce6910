"""Load the running app through its API the way many visitors would: N clients x M calls at once.

    python -m demo.loadtest [--clients 8] [--requests 25] [--model scratch] [--endpoint predict|annotate]
                            [--purge-after S]

Starts `python app.py` on a free local port (bundled models, offline), prints how soon it served and how
long one client's first and tenth requests took (warm-up), then runs two rounds: every client sending the
same file (identical uploads share one stored path on the server), and every request sending a file of its
own. Prints errors, throughput, median and p95 latency, and
the server's resident memory after warm-up and after each round.

With `--endpoint annotate` each client downloads the annotated image at once, as a browser would, and an
image that does not decode whole counts as an error. With `--purge-after S` the app deletes what it wrote
after S seconds; 3 S after the last request the files still in its folder are counted (those of the
examples, which the app keeps, aside): none should be left.
"""
from __future__ import annotations

import argparse
import io
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT / "assets" / "examples" / "three_portraits.jpg"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    """Resident memory of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_app(port: int, model: str, temp_dir: str, options: list[str] = ()) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TMPDIR": temp_dir}
    app = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port), "--model", model, *options],
                           cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=2):
                return app
        except OSError:
            if app.poll() is not None:
                raise SystemExit(f"the app exited with {app.returncode}")
            time.sleep(0.5)
    app.kill()
    raise SystemExit("the app did not start within 120 s")


def distinct_photos(folder: Path, count: int) -> list[Path]:
    """`count` different files of the same photo (a pixel changed each), so their uploads never share a path."""
    base = Image.open(PHOTO).convert("RGB")
    paths = []
    for i in range(count):
        image = base.copy()
        image.putpixel((i % image.width, 0), (i % 256, 0, 0))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=92)
        path = folder / f"photo-{i:04d}.jpg"
        path.write_bytes(buffer.getvalue())
        paths.append(path)
    return paths


def download_image(url: str) -> None:
    """Fetch an image the app answered with and decode it whole (raises if it is empty, cut short or broken)."""
    with urllib.request.urlopen(url, timeout=60) as response:
        Image.open(io.BytesIO(response.read())).load()


def round_of(url: str, files: list[list[Path]], model: str, endpoint: str = "predict"
             ) -> tuple[list[float], list[str], float]:
    """Each client (a list of files) sends its files one after another; clients run at once."""
    from gradio_client import Client, handle_file

    def client_run(own_files: list[Path]) -> tuple[list[float], list[str]]:
        client = Client(url, verbose=False, download_files=False)
        times, errors = [], []
        for path in own_files:
            start = time.perf_counter()
            try:
                answer = client.predict(image=handle_file(str(path)), model=model, api_name=f"/{endpoint}")
                if endpoint == "annotate":
                    download_image(answer[0]["url"])
                times.append(time.perf_counter() - start)
            except Exception as error:  # counted and shown: the point is to see every failure
                errors.append(str(error)[:120])
        return times, errors

    start = time.perf_counter()
    with ThreadPoolExecutor(len(files)) as pool:
        results = list(pool.map(client_run, files))
    wall = time.perf_counter() - start
    return [t for r in results for t in r[0]], [e for r in results for e in r[1]], wall


def files_left(temp_dir: Path, older_than_s: float) -> list[float]:
    """Ages of the files older than `older_than_s` in the app's folder, the examples' kept copies aside."""
    examples = {p.name for p in (ROOT / "assets" / "examples").iterdir()}
    now = time.time()
    ages = [now - p.stat().st_ctime for p in temp_dir.glob("face-app-*/**/*")
            if p.is_file() and p.name not in examples]
    return sorted(age for age in ages if age > older_than_s)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=25, help="per client")
    parser.add_argument("--model", default="scratch", choices=["scratch", "vgg16", "ensemble"],
                        help="the model the clients ask for (default scratch, the faster one; the figures in "
                             "docs/benchmarks.md are its)")
    parser.add_argument("--endpoint", default="predict", choices=["predict", "annotate"],
                        help="annotate: also download each annotated image and check it decodes")
    parser.add_argument("--purge-after", type=int, metavar="S",
                        help="the app's purge age; then count the files left 3 S after the last request")
    args = parser.parse_args(argv)
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    with tempfile.TemporaryDirectory() as app_temp, tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        options = ["--purge-after", str(args.purge_after)] if args.purge_after else []
        app = start_app(port, args.model, app_temp, options)
        print(f"app serving after {time.perf_counter() - started:.1f} s (python app.py to /config answering)")
        try:
            # one client, ten requests right after the app served: is the first as fast as the tenth (warm-up)?
            first, errors, _ = round_of(url, [[PHOTO] * 10], args.model, args.endpoint)
            if len(first) == 10:
                print(f"one client, requests 1 and 10 right after start: {first[0]:.2f} s and {first[-1]:.2f} s "
                      f"(median of 10: {statistics.median(first):.2f} s)")
            for error in sorted(set(errors))[:5]:
                print(f"  error: {error}")
            rss_warm = rss_mb(app.pid)
            print(f"{args.clients} clients x {args.requests} /{args.endpoint} ({args.model}); server RSS after "
                  f"warm-up {rss_warm:.0f} MB")
            print(f"{'files':10s} {'ok':>5s} {'errors':>6s} {'req/s':>6s} {'p50 s':>6s} {'p95 s':>6s} "
                  f"{'RSS MB':>7s} {'vs warm':>7s}")
            same = [[PHOTO] * args.requests for _ in range(args.clients)]
            photos = distinct_photos(Path(tmp), args.clients * args.requests)
            distinct = [photos[i::args.clients] for i in range(args.clients)]
            for name, files in (("same", same), ("distinct", distinct)):
                times, errors, wall = round_of(url, files, args.model, args.endpoint)
                rss = rss_mb(app.pid)
                p95 = statistics.quantiles(times, n=20)[-1] if len(times) >= 2 else float("nan")
                print(f"{name:10s} {len(times):5d} {len(errors):6d} {len(times) / wall:6.1f} "
                      f"{statistics.median(times) if times else float('nan'):6.2f} {p95:6.2f} {rss:7.0f} "
                      f"{(rss / rss_warm - 1):+7.1%}")
                for error in sorted(set(errors))[:5]:
                    print(f"  error: {error}")
            if args.purge_after:
                time.sleep(3 * args.purge_after)
                left = files_left(Path(app_temp), args.purge_after)
                print(f"files older than the purge age ({args.purge_after} s), {3 * args.purge_after} s after the "
                      f"last request: {len(left)}" + (f" (oldest {left[-1]:.0f} s)" if left else ""))
        finally:
            app.terminate()
            app.wait(timeout=20)


if __name__ == "__main__":
    main()
