"""train/pack.py: a run's faces packed for a machine without the sources, and `python -m train --data PACK`."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from synthetic import make_fairface_folder, make_utkface_folder
from test_train_loop import read_history, tiny_args
from model.paths import PROJECT_ROOT
from train.pack import PACK_FILE, main as pack_main, read_pack
from train.train import parse_args, prepare_data, train
from train.validate import validation_records


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    return make_utkface_folder(folder / "utk", n=240), make_fairface_folder(folder / "ff", n=120, n_val=5)


def source_args(tmp_path, sources, **overrides) -> list[str]:
    """tiny_args for both sources, without --out (the pack's own option)."""
    args = tiny_args(tmp_path, sources[0], **overrides)
    at = args.index("--data")
    args[at + 2:at + 2] = [str(sources[1])]
    out = args.index("--out")
    return args[:out] + args[out + 2:]


@pytest.fixture(scope="module")
def pack(tmp_path_factory, sources):
    folder = tmp_path_factory.mktemp("made")
    pack_main(["--out", str(folder / "pack"), *source_args(folder, sources)])
    return folder / "pack"


def test_a_pack_holds_the_runs_faces_and_labels(tmp_path, sources, pack):
    """What a run prepares from the sources, face for face: the same records in the same order, the images within
    WebP's error (quality 80), and the split.csv and data_report.json it wrote."""
    cfg = parse_args(source_args(tmp_path, sources) + ["--out", str(tmp_path / "run")])
    (tmp_path / "run").mkdir()
    direct = prepare_data(cfg, tmp_path / "run")
    about, packed = read_pack(pack)
    assert about["faces"] == {split: len(direct[split].records) for split in ("train", "val")}
    assert {r.source for r in direct["train"].records} == {"utkface", "fairface"}
    for split, (images, records) in packed.items():
        assert [(r.path, r.gender, r.age_low, r.age_high, r.race, r.source, r.split) for r in records] == \
               [(r.path, r.gender, r.age_low, r.age_high, r.race, r.source, r.split) for r in direct[split].records]
        assert images.shape == direct[split].images.shape and images.dtype == torch.uint8
        error = (images.float() - direct[split].images.float()).abs().mean().item()
        assert 0 < error < 3, split  # re-encoded, not copied; a face no further than WebP's error
    assert (pack / "split.csv").read_text() == (tmp_path / "run" / "split.csv").read_text()
    report = json.loads((tmp_path / "run" / "data_report.json").read_text())
    assert json.loads((pack / "data_report.json").read_text()) == report


def test_a_run_trains_on_a_pack_and_writes_the_sources_split(tmp_path, pack):
    """Colour = gender on the synthetic faces: learnt from the pack as from the sources; the run's split.csv is
    the sources' (train.evaluate and train.validate read the original data by it) and its report names the pack."""
    run = train(parse_args(tiny_args(tmp_path, pack, epochs=5)))
    assert float(read_history(run)[-1]["val_gender_acc"]) >= 0.8
    assert (run / "split.csv").read_text() == (pack / "split.csv").read_text()
    report = json.loads((run / "data_report.json").read_text())
    assert report["pack"]["faces"] == json.loads((pack / PACK_FILE).read_text())["faces"]
    assert set(report["counts"]["train"]["by_source"]) == {"utkface", "fairface"}


@pytest.mark.parametrize("overrides, message", [
    ({"image_size": 48}, "holds files crops at 32 px; this run asks for files crops at 48 px"),
    ({"limit": 50}, "--limit: not with a pack"),
    ({"split_csv": "split.csv", "max_per_source": 9}, "--split-csv, --max-per-source: not with a pack"),
])
def test_what_the_pack_fixed_cannot_be_asked_again(tmp_path, pack, overrides, message):
    with pytest.raises(SystemExit, match=message):
        train(parse_args(tiny_args(tmp_path, pack, **overrides)))


def test_an_incomplete_copy_is_named(tmp_path, pack):
    copy = tmp_path / "pack"
    copy.mkdir()
    for path in pack.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    lines = (copy / "val.csv").read_text().splitlines(keepends=True)
    (copy / "val.csv").write_text("".join(lines[:-1]))
    n = json.loads((pack / PACK_FILE).read_text())["faces"]["val"]
    with pytest.raises(ValueError, match=rf"val.csv lists {n - 1} faces, val.npz holds {n} \(an incomplete copy\?\)"):
        read_pack(copy)


def test_packing_into_a_folder_in_use_is_refused(tmp_path, sources, pack):
    with pytest.raises(SystemExit, match="is not empty"):
        pack_main(["--out", str(pack), *source_args(tmp_path, sources)])


# What a lent GPU machine lacks (it has torch, torchvision, safetensors, accelerate, huggingface_hub, tqdm, and the
# numpy and Pillow they bring): the detector, OpenCV, the plots, the app.
NOT_ON_A_LENT_GPU = ("cv2", "mediapipe", "matplotlib", "gradio", "av")


def test_training_from_a_pack_needs_none_of_the_apps_libraries(tmp_path, pack):
    """`python -m train --data PACK` with OpenCV, MediaPipe, matplotlib, Gradio and PyAV unimportable: it trains
    and writes the model and history (curves.png is left out without matplotlib)."""
    program = textwrap.dedent(f"""
        import builtins, sys
        real_import = builtins.__import__
        def guarded(name, globals=None, locals=None, fromlist=(), level=0):
            if level == 0 and name.split(".")[0] in {NOT_ON_A_LENT_GPU!r}:
                raise ModuleNotFoundError(f"No module named {{name!r}} (blocked by the test)")
            return real_import(name, globals, locals, fromlist, level)
        builtins.__import__ = guarded
        from train.train import main
        main(sys.argv[1:])
    """)
    done = subprocess.run([sys.executable, "-c", program, *tiny_args(tmp_path, pack)], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "run"
    assert (run / "model" / "model.safetensors").is_file() and len(read_history(run)) == 2
    assert not (run / "curves.png").exists()


def lent_gpu(*args, cwd, env, timeout=300) -> subprocess.CompletedProcess:
    """One step of train/lent_gpu.sh, run as the device tool runs it: from a checkout's root."""
    return subprocess.run(["bash", str(PROJECT_ROOT / "train" / "lent_gpu.sh"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_the_lent_gpu_steps_carry_a_pack_there_and_the_weights_back(tmp_path, pack):
    """train/lent_gpu.sh's steps, run here (DEVICE=cpu) with pieces small enough that the pack travels in several:
    each "call" carries one piece into the other checkout's gpu/ and `keep` moves it out; `smoke` runs an epoch;
    `start` checks the pieces, unpacks and trains in the background; `fetch` sends the run's files with the weights
    in pieces; `join` here puts them together, checked. A damaged piece stops `start`."""
    here, there, work, out = (tmp_path / name for name in ("here", "there", "work", "out"))
    here.mkdir(), there.mkdir()
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "PYTHON": sys.executable, "DEVICE": "cpu",
           "PIECE_SIZE": "4K", "RETURN_SIZE": "15M", "LENT_GPU_WORK": str(work), "OUT": str(out)}

    def step(*args, cwd, ok=True):
        done = lent_gpu(*args, cwd=cwd, env=env)
        assert (done.returncode == 0) == ok, done.stdout[-2000:] + done.stderr[-3000:]
        return done.stdout + done.stderr

    step("split", str(pack), str(pack), cwd=here)  # the pack is its own smoke pack here
    pieces = sorted((here / "gpu").glob("pack.tar.gz.*"))
    assert len(pieces) >= 3 and all(p.stat().st_size <= 4 * 1024 for p in pieces)
    options = ["--epochs", "1", "--batch-size", "32", "--tuned-blocks", "5", "--head-epochs", "0"]  # no ImageNet there

    # the plan: one call per piece, the first with the sums and the smoke pack, the last starting the run
    plan = step("plan", *options, cwd=here)
    carries = [json.loads(line.split("carry ", 1)[1]) for line in plan.splitlines() if line.startswith("call ")]
    commands = [line.split("command: ", 1)[1] for line in plan.splitlines() if "command: " in line]
    assert [c[0] for c in carries] == [f"gpu/{p.name}" for p in pieces] and len(commands) == len(pieces)
    assert carries[0][1:] == ["gpu/SHA256SUMS", "gpu/smoke"] and all(len(c) == 1 for c in carries[1:])
    assert commands[0].endswith("keep && bash train/lent_gpu.sh smoke")
    assert commands[-1].endswith("start " + " ".join(options)) and all(len(c) <= 2000 for c in commands)
    for i, piece in enumerate(pieces):  # one call each
        (there / "gpu").mkdir()
        shutil.copy(piece, there / "gpu")
        if i == 0:  # the first call carries the sums and the smoke pack too
            shutil.copy(here / "gpu" / "SHA256SUMS", there / "gpu")
            shutil.copytree(here / "gpu" / "smoke", there / "gpu" / "smoke")
        step("keep", cwd=there)
        assert list((there / "gpu").iterdir()) == []
        (there / "gpu").rmdir()
    assert "smoke:" in step("smoke", cwd=there)

    started = step("start", *options, cwd=there)
    assert "started: pid" in started
    deadline = time.monotonic() + 240
    while not (work / "run" / "metrics.json").exists() and time.monotonic() < deadline:
        time.sleep(1)
    assert (work / "run" / "metrics.json").exists(), (work / "train.log").read_text()[-3000:]
    time.sleep(1)  # the process ends right after writing it
    assert "val loss" in step("status", cwd=there)
    step("fetch", cwd=there)
    pieces_back = sorted((out / "run").glob("model.safetensors.*"))
    assert len(pieces_back) == 4 and all(p.stat().st_size <= 15 * 2**20 for p in pieces_back)  # VGG16 in fp32: 59 MB
    sent = [p for p in out.rglob("*") if p.is_file()]  # what the device tool gives back: 8 files, 64 MiB
    assert len(sent) <= 8 and sum(p.stat().st_size for p in sent) <= 64 * 2**20
    step("join", str(out), str(tmp_path / "back"), cwd=here)
    back = tmp_path / "back"
    weights = "model/model.safetensors"
    assert (back / weights).read_bytes() == (work / "run" / weights).read_bytes()
    assert (back / "split.csv").read_text() == (pack / "split.csv").read_text()
    faces = json.loads((pack / PACK_FILE).read_text())["faces"]
    assert json.loads((back / "data_report.json").read_text())["pack"]["faces"] == faces
    # the run is one of this machine's: train.validate, train.recalibrate and train.evaluate find its data here
    assert len(validation_records(back)) == faces["val"]

    with open(work / "pieces" / pieces[1].name, "r+b") as f:  # one byte changed on the way
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 1]))
    assert "a piece is missing or damaged" in step("start", *options, cwd=there, ok=False)


@pytest.mark.parametrize("checkout_mib, room", [(50, True), (63, False)])
def test_split_sizes_the_pieces_to_what_a_call_has_left(tmp_path, pack, checkout_mib, room):
    """A device call takes 64 MiB in all, the checkout's own files included (tracked and untracked-not-ignored):
    the pieces get what is left after them and the smoke pack, or `split` says there is no room."""
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    subprocess.run(["git", "init", "-q", str(checkout)], check=True)
    (checkout / ".gitignore").write_text("/gpu/\n")  # as the project's: the pieces travel only when carried
    with open(checkout / "weights.bin", "wb") as f:  # untracked, not ignored: it travels
        f.truncate(checkout_mib * 2**20)
    env = {k: v for k, v in os.environ.items() if k != "PIECE_SIZE"}
    done = lent_gpu("split", str(pack), str(pack), cwd=checkout, env=env, timeout=60)
    if not room:
        assert done.returncode != 0 and "no room for pieces" in done.stderr
        return
    assert done.returncode == 0, done.stderr
    piece = int(re.search(r"one piece of (\d+) KiB", done.stdout).group(1)) * 1024
    smoke = sum(p.stat().st_size for p in (checkout / "gpu" / "smoke").iterdir())
    travels = checkout_mib * 2**20 + smoke + (checkout / "gpu" / "SHA256SUMS").stat().st_size
    assert 64 * 2**20 - 2 * 2**20 <= travels + piece <= 64 * 2**20


def test_a_pack_names_its_size(tmp_path, sources, capsys):
    """No default: the size a pack is cut at is the size the run trains at, and it travels for minutes."""
    args = source_args(tmp_path, sources)
    at = args.index("--image-size")
    with pytest.raises(SystemExit):
        pack_main(["--out", str(tmp_path / "pack"), *args[:at], *args[at + 2:]])
    assert "--image-size" in capsys.readouterr().err and not (tmp_path / "pack").exists()
