"""Publish a training run to the Hugging Face Hub, as one commit.

    python -m train.push --run runs/vgg16 --repo-id user/age-gender-vgg16 [--private] [--revision BRANCH]

Uploads the weights and config (the PyTorchModelHubMixin layout: config.json + model.safetensors at the repo
root, so `load_model("user/name")` and `VGGNet.from_pretrained` both read it), a model card README.md
(model/card.py), the data split, training history and the evaluation report with its plots.

The token comes from the environment (HF_TOKEN) or `hf auth login`, read by huggingface_hub itself: this module
never sees, logs or writes it.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from huggingface_hub import CommitInfo, CommitOperationAdd, CommitOperationDelete, HfApi
from huggingface_hub.errors import HfHubHTTPError

from model.card import model_card
from model.hub import OPTIONAL_FILES, ModelLoadError, load_model

log = logging.getLogger(__name__)

REQUIRED = {"model/config.json": "config.json", "model/model.safetensors": "model.safetensors",
            "split.csv": "split.csv"}  # run file -> path in the repo
OPTIONAL = {name: name for name in ("train_config.json", "history.csv", "curves.png", "data_report.json")}
OPTIONAL.update({f"model/{name}": name for name in OPTIONAL_FILES})  # int8 ranges (model/int8.py)
EVAL_FILES = ("*.json", "*.md", "*.png", "*.csv")  # eval/ and eval/fairface/ files published as they are; never pickles


def files_to_upload(run: Path) -> dict[str, Path]:
    """Path in the repo -> file in the run. Raises FileNotFoundError if a required file is missing."""
    missing = [name for name in REQUIRED if not (run / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{run} is not a complete training run: missing {', '.join(missing)}")
    files = {repo_path: run / name for name, repo_path in {**REQUIRED, **OPTIONAL}.items() if (run / name).is_file()}
    for folder in ("eval", "eval/fairface"):  # the model card links to both reports
        for pattern in EVAL_FILES:
            files.update({f"{folder}/{p.name}": p for p in sorted((run / folder).glob(pattern))})
    skipped = [name for name in OPTIONAL if not (run / name).is_file()]
    if not any(name.startswith("eval/") for name in files):
        skipped.append("eval/")
    if skipped:
        log.warning("not in %s, so not published: %s", run, ", ".join(skipped))
    return files


def push_run(run_dir: str | Path, repo_id: str, private: bool = False, revision: str | None = None, *,
             commit_message: str | None = None) -> CommitInfo:
    """Upload a training run to `repo_id` (created if needed) in one commit; returns the commit.

    `revision` is the branch to commit to (created from main if it does not exist); default main.
    The weights are loaded first, strictly, so a broken model is never published.
    """
    run = Path(run_dir)
    files = files_to_upload(run)
    model = load_model(str(run / "model"))  # raises ModelLoadError on corrupt or mismatched weights
    card = model_card(run, repo_id).encode()

    api = HfApi()  # token: HF_TOKEN or the stored login, resolved by huggingface_hub
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    if revision and revision != "main":
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    operations = [CommitOperationAdd("README.md", card)]
    operations += [CommitOperationAdd(repo_path, str(path)) for repo_path, path in sorted(files.items())]
    # int8 ranges belong to the weights they were measured on: a run without them removes an earlier model's
    stale = [name for name in OPTIONAL_FILES if name not in files and api.file_exists(repo_id, name, revision=revision)]
    operations += [CommitOperationDelete(name) for name in stale]
    commit = api.create_commit(
        repo_id, operations, revision=revision,
        commit_message=commit_message or f"Upload {model.arch} model from training run {run.resolve().name}",
    )
    log.info("pushed %s to %s@%s (%s)", run, repo_id, commit.oid, commit.commit_url)
    return commit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.push", description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, type=Path, help="training output directory")
    parser.add_argument("--repo-id", required=True, help="user/name on the Hub")
    parser.add_argument("--private", action="store_true", help="create the repo as private")
    parser.add_argument("--revision", help="branch to commit to (default: main)")
    parser.add_argument("--message", help="commit message")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        commit = push_run(args.run, args.repo_id, args.private, args.revision, commit_message=args.message)
    except (FileNotFoundError, ModelLoadError) as e:
        print(f"error: {e}")
        return 1
    except HfHubHTTPError as e:
        status = e.response.status_code if e.response is not None else None
        hint = " (log in with `hf auth login` or set HF_TOKEN, with write access)" if status in (401, 403) else ""
        print(f"error: the Hub refused the upload: {str(e).splitlines()[0]}{hint}")
        return 1
    print(f"published: {commit.commit_url}\nload it pinned with: {args.repo_id}@{commit.oid}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
