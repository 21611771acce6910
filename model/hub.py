"""Get a ready-to-run model from wherever it is: `load_model(spec)`.

The spec (argument, else $FACE_MODEL, else DEFAULT_ARCH) is resolved in this order:
1. an existing local directory with config.json + model.safetensors (e.g. a training run's `model/`);
2. a Hub repo id, `user/name` or `user/name@revision` (an architecture name such as "vgg16" means its
   default repo, DEFAULT_REPOS): downloaded through the Hub cache;
3. the same files from the Hub cache when offline (HF_HUB_OFFLINE=1) or when the Hub cannot be reached;
4. the weights bundled in assets/models/<arch>/, verified against the `sha256` file next to them.
"ensemble" is the bundled assets/models/ensemble/: both networks averaged (model/ensemble.py), each member
loaded by the same rules.

Only connectivity moves on to the next source. A Hub that answers "no such repo / revision / file", or files
that do not load (corrupt, truncated, another architecture) raise ModelLoadError: silently serving other
weights than the ones asked for would be worse than failing.

Weights are only ever read from safetensors (never unpickled), so a downloaded model cannot run code.
Tokens come from the environment / `hf auth login` through huggingface_hub; nothing here reads or logs them.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import HfApi, constants, hf_hub_download
from huggingface_hub.errors import (GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled,
                                    RemoteEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError)
from safetensors.torch import save_file

try:  # the HTTP client huggingface_hub talks through: its connection errors mean "Hub unreachable"
    from httpx2 import TransportError  # huggingface_hub 2.x, pinned here
except ImportError:  # huggingface_hub 1.x, e.g. a lent GPU machine's, which trains with --init-from a model folder
    from httpx import TransportError

from model.int8 import RANGES_FILE, Int8Error, load_ranges, save_ranges
from model.nets import ARCHITECTURES, AgeGenderNet

log = logging.getLogger(__name__)

# The default everywhere (app, CLI, API, $FACE_MODEL unset): the model that measures better on both evaluation
# sets; where neither does, the faster one (docs/results.md, "Which model is the default"). VGG16 with blocks
# 4-5 tuned is better beyond the noise on both (gender and ages on UTKFace test, gender and age ranges on FairFace
# val), worse on nothing, so it is the default although the scratch CNN is several times faster.
DEFAULT_ARCH = "vgg16"
# The two networks together (model/ensemble.py): bundled only, a few bytes naming its members and its calibration.
ENSEMBLE = "ensemble"
DEFAULT_REPOS = {"scratch": "face-age-gender/age-gender-scratch", "vgg16": "face-age-gender/age-gender-vgg16"}
ASSETS_DIR = Path(__file__).resolve().parents[1] / "assets" / "models"
MODEL_FILES = ("config.json", "model.safetensors")
# Files a model may have beside those: the activation ranges its int8 body is built from (model/int8.py).
OPTIONAL_FILES = (RANGES_FILE,)
CHECKSUM_FILE = "sha256"  # `sha256sum` format: "<hex>  <file name>" per line, checkable with `sha256sum -c`

ENV_MODEL = "FACE_MODEL"  # spec: local dir, repo id (optionally @revision) or architecture name
ENV_REVISION = "FACE_MODEL_REVISION"  # branch, tag or commit sha on the Hub
ENV_ASSETS = "FACE_MODEL_ASSETS"  # root of the bundled weights (default: <repo>/assets/models)


class ModelLoadError(RuntimeError):
    """No usable model: the message says why, for humans (callers need not show a traceback)."""


@dataclass(frozen=True)
class ModelSource:
    """Where a loaded model came from; `str()` is the line logged and shown in the app."""

    arch: str
    kind: str  # "local", "hub", "hub-cache" or "bundled"
    location: str  # directory, or repo id
    revision: str | None = None  # commit sha for the Hub and its cache
    note: str = ""  # why a fallback was used

    def __str__(self) -> str:
        where = {"local": "local directory", "hub": "Hub", "hub-cache": "Hub cache", "bundled": "bundled weights"}
        at = f"{self.location}@{self.revision[:12]}" if self.revision else self.location
        note = f"; {self.note}" if self.note else ""
        return f"model: {self.arch} from {where[self.kind]} ({at}{note})"


def load_model(spec: str | None = None, *, revision: str | None = None, assets_dir: str | Path | None = None,
               cache_dir: str | Path | None = None) -> AgeGenderNet:
    """Load a model in eval mode (float32, CPU) and set `model.source` (a ModelSource). See the module docstring.

    revision (else $FACE_MODEL_REVISION) pins a Hub branch, tag or commit; `user/name@rev` in the spec wins.
    Raises ModelLoadError when nothing usable is found.
    """
    spec = spec or os.environ.get(ENV_MODEL) or DEFAULT_ARCH
    assets = Path(assets_dir or os.environ.get(ENV_ASSETS) or ASSETS_DIR)
    if Path(spec).expanduser().is_dir():
        folder = Path(spec).expanduser()
        model = _load(folder, assets)
        model.source = ModelSource(model.arch, "local", str(folder))
    elif spec == ENSEMBLE:
        model = load_bundled_ensemble(assets)
    else:
        repo_id, _, pinned = spec.partition("@")
        repo_id = DEFAULT_REPOS.get(repo_id, repo_id)
        if repo_id.count("/") != 1 or spec.startswith((".", "/", "~")):
            raise ModelLoadError(f"{spec!r} is not a model directory, an architecture name "
                                 f"({', '.join(DEFAULT_REPOS)}) or a Hub repo id like user/name[@revision]")
        model = _from_hub_or_bundle(repo_id, pinned or revision or os.environ.get(ENV_REVISION) or None,
                                    cache_dir, assets / _bundled_arch(spec),
                                    default_repo=spec.partition("@")[0] in DEFAULT_REPOS)
    log.info("%s", model.source)
    return model


def bundled_image_size(arch: str, assets: Path = ASSETS_DIR) -> int:
    """The input size (px) the bundled model of this architecture reads, from its config.json."""
    return json.loads((Path(assets) / arch / "config.json").read_text())["image_size"]


def load_bundled_ensemble(assets: Path = ASSETS_DIR, load_member=None) -> AgeGenderNet:
    """The bundled ensemble (assets/models/ensemble: its members' specs and its own calibration). Bundled only:
    its members come from the Hub, its cache or their own bundles, as `load_member(spec)` (default: load_model
    with the same assets) finds them; the app passes its own loaded models, so that the members are the very
    models of its other two choices."""
    folder = assets / ENSEMBLE
    if not folder.is_dir():
        raise ModelLoadError(f"there is no bundled ensemble in {folder}")
    verify_bundle(folder)
    model = _load(folder, assets, load_member)
    model.source = ModelSource(ENSEMBLE, "bundled", str(folder),
                               note="members: " + "; ".join(str(getattr(m, "source", m.arch)) for m in model.members))
    return model


def _bundled_arch(spec: str) -> str:
    """The bundled weights to fall back to: the spec's architecture, else the default one."""
    name = spec.partition("@")[0]
    return name if name in ARCHITECTURES else DEFAULT_ARCH


def _from_hub_or_bundle(repo_id: str, revision: str | None, cache_dir, bundle: Path,
                        default_repo: bool = False) -> AgeGenderNet:
    """`default_repo`: the spec was an architecture name. Its project repo not existing (yet) on the Hub you
    reach (a mirror, a fork) is then like the Hub being unreachable: fall back, saying so."""
    at = f"{repo_id}@{revision}" if revision else repo_id
    if constants.is_offline_mode():  # read at call time: HF_HUB_OFFLINE is captured when huggingface_hub loads
        reason = "offline mode"
    else:
        try:
            # One quick metadata call first: it tells "unreachable" from "no such repo/revision" without the
            # ~20 s of retries hf_hub_download spends on a dead connection before falling back to the cache.
            HfApi().model_info(repo_id, revision=revision, timeout=constants.HF_HUB_ETAG_TIMEOUT)
            return _from_hub_files(repo_id, _download(repo_id, revision, cache_dir), "hub")
        except RevisionNotFoundError:
            raise ModelLoadError(f"{repo_id} has no revision {revision!r} on the Hub") from None
        except GatedRepoError:
            raise ModelLoadError(f"{repo_id} is gated: accept its terms on the Hub and log in (hf auth login)") \
                from None
        except RepositoryNotFoundError:
            if default_repo:
                reason = "not published on this Hub"
            else:
                raise ModelLoadError(f"no model repo {repo_id!r} on the Hub (if it is private, set HF_TOKEN or "
                                     f"run `hf auth login`)") from None
        except RemoteEntryNotFoundError:
            raise ModelLoadError(f"{at} is not a model repo of this project: it needs "
                                 f"{' and '.join(MODEL_FILES)} (safetensors weights only)") from None
        except (TransportError, OfflineModeIsEnabled, LocalEntryNotFoundError):
            reason = "Hub unreachable"  # LocalEntryNotFoundError: the connection broke during the download
        except HfHubHTTPError as e:
            if e.response is not None and e.response.status_code < 500:
                raise ModelLoadError(f"the Hub refused {at}: {e.response.status_code} {e.response.reason_phrase}") \
                    from None
            reason = "Hub unavailable"

    try:
        return _from_hub_files(repo_id, _download(repo_id, revision, cache_dir, local_files_only=True), "hub-cache")
    except LocalEntryNotFoundError:
        pass
    if not bundle.is_dir():
        raise ModelLoadError(f"cannot get {at} ({reason}), it is not in the Hub cache and there are no bundled "
                             f"weights in {bundle}")
    verify_bundle(bundle)
    model = _load(bundle)
    model.source = ModelSource(model.arch, "bundled", str(bundle), note=f"{reason}, {at} not cached")
    return model


def _download(repo_id: str, revision: str | None, cache_dir, **options) -> list[str]:
    """The model files' paths in the Hub cache, fetched as needed; the optional ones too where the repo has them
    (they land in the same snapshot folder, where `_load` looks for them)."""
    files = [hf_hub_download(repo_id, name, revision=revision, cache_dir=cache_dir, **options) for name in MODEL_FILES]
    for name in OPTIONAL_FILES:
        try:
            hf_hub_download(repo_id, name, revision=revision, cache_dir=cache_dir, **options)
        except (RemoteEntryNotFoundError, LocalEntryNotFoundError):
            pass  # not published (or not cached): the model runs its float body
    return files


def _from_hub_files(repo_id: str, files: list[str], kind: str) -> AgeGenderNet:
    model = _load(Path(files[1]).parent)  # the snapshot folder holds both files
    # Cached files live in .../snapshots/<commit sha>/: that folder name is the exact revision served.
    model.source = ModelSource(model.arch, kind, repo_id, revision=Path(files[1]).parent.name)
    return model


def _load(folder: Path, assets: Path | None = None, load_member=None) -> AgeGenderNet:
    """One loader for one folder format: the architecture named in config.json, then its `from_pretrained`
    (PyTorchModelHubMixin: config.json as constructor arguments, model.safetensors loaded strictly); eval mode.
    An ensemble's folder names its members, each loaded by load_model (bundles from `assets`).
    Every way the folder can be unusable becomes one ModelLoadError sentence."""
    config_path, weights_path = folder / MODEL_FILES[0], folder / MODEL_FILES[1]
    for path in (config_path, weights_path):
        if not path.is_file():
            raise ModelLoadError(f"{path.parent} has no {path.name} (a model needs {' and '.join(MODEL_FILES)})")
    try:
        arch = json.loads(config_path.read_text())["arch"]
    except (ValueError, KeyError, TypeError):
        raise ModelLoadError(f"{config_path} is not a model config (JSON with an 'arch' field)") from None
    if arch == ENSEMBLE:
        from model.ensemble import load_ensemble
        try:
            return load_ensemble(folder, load_member or (lambda spec: load_model(spec, assets_dir=assets)))
        except ModelLoadError as e:
            raise ModelLoadError(f"a member of the ensemble in {folder} does not load: {e}") from None
        except Exception as e:  # a bad config or buffers file: one sentence, as for the networks below
            raise ModelLoadError(f"{folder} is not a usable ensemble ({e})") from None
    if not isinstance(arch, str) or arch not in ARCHITECTURES:  # e.g. a list: unhashable, not a name
        raise ModelLoadError(f"{config_path} names architecture {arch!r}; this code knows {sorted(ARCHITECTURES)}")
    try:
        # strict: a partial load would be a silently broken model. float16 bundles load into the float32 model.
        # The mixin print()s "Loading weights from local directory": kept off stdout, where the CLI writes data.
        with contextlib.redirect_stdout(io.StringIO()):
            model = ARCHITECTURES[arch].from_pretrained(folder, strict=True)
    except (TypeError, ValueError) as e:
        raise ModelLoadError(f"{config_path} does not fit the {arch} architecture: {e}") from None
    except RuntimeError as e:
        first = str(e).splitlines()[1].strip() if "\n" in str(e) else str(e)
        raise ModelLoadError(f"{weights_path} does not hold {arch} weights for this config ({first})") from None
    except Exception as e:  # safetensors raises its own (Rust) error type on corrupt or truncated files
        raise ModelLoadError(f"{weights_path} is corrupt or truncated ({e})") from None
    if (folder / RANGES_FILE).is_file():
        try:
            model.int8_ranges, model.int8_about = load_ranges(folder / RANGES_FILE, arch)
        except Int8Error as e:
            raise ModelLoadError(str(e)) from None
    return model.eval()


# --- bundled weights -------------------------------------------------------------------------------------------

def write_bundle(model: AgeGenderNet, dest: str | Path, half: bool = False) -> Path:
    """Write `model` as bundled weights: config.json + model.safetensors (+ float16 if `half`), its int8 ranges
    where it has them (else an earlier model's are removed: they belong to other weights), + sha256."""
    dest = Path(dest)
    model.save_pretrained(dest)
    if getattr(model, "int8_ranges", None) is None:
        (dest / RANGES_FILE).unlink(missing_ok=True)
    else:
        save_ranges(dest / RANGES_FILE, model.int8_ranges, model.arch, getattr(model, "int8_about", {}))
    (dest / "README.md").unlink(missing_ok=True)  # the mixin's generic card: the project README covers it
    if half and not hasattr(model, "members"):  # an ensemble's own file holds four calibration buffers
        state = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
        save_file({k: v.contiguous() for k, v in state.items()}, dest / "model.safetensors")
    write_checksums(dest)
    return dest


def write_checksums(folder: Path) -> None:
    """The bundle's `sha256` list: its model files and the optional ones it has."""
    names = [*MODEL_FILES, *(name for name in OPTIONAL_FILES if (folder / name).is_file())]
    (folder / CHECKSUM_FILE).write_text("".join(f"{_sha256(folder / name)}  {name}\n" for name in names))


def verify_bundle(folder: Path) -> None:
    """Check the bundled files against their sha256 list (catches truncated copies and Git LFS pointers)."""
    listing = folder / CHECKSUM_FILE
    if not listing.is_file():
        raise ModelLoadError(f"bundled weights in {folder} have no {CHECKSUM_FILE} file to verify them against")
    try:
        expected = dict(reversed(line.split(maxsplit=1)) for line in listing.read_text().splitlines() if line.strip())
    except ValueError:  # a line without both fields, or not text
        raise ModelLoadError(f"{listing} is not a sha256 list ('<hex>  <file name>' per line)") from None
    for name in MODEL_FILES + tuple(name for name in OPTIONAL_FILES if (folder / name).is_file() or name in expected):
        if name not in expected:
            raise ModelLoadError(f"{listing} does not list {name}")
        if not (folder / name).is_file() or _sha256(folder / name) != expected[name].lower():
            raise ModelLoadError(f"bundled {folder / name} is missing, corrupt or truncated (sha256 mismatch)")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def main(argv: list[str] | None = None) -> int:
    """`python -m model.hub [SPEC] [--revision REV]`: load a model and print where it came from."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("spec", nargs="?", help=f"directory, user/name[@rev] or {'/'.join(DEFAULT_REPOS)}")
    parser.add_argument("--revision")
    parser.add_argument("--bundle-to", metavar="DIR", help="also write the model as bundled weights to DIR")
    parser.add_argument("--half", action="store_true", help="with --bundle-to: store weights in float16")
    args = parser.parse_args(argv)
    try:
        model = load_model(args.spec, revision=args.revision)
    except ModelLoadError as e:
        print(f"error: {e}")
        return 1
    print(model.source)
    if args.bundle_to:
        print(f"bundled to {write_bundle(model, args.bundle_to, half=args.half)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
