"""`python -m train.mirror`: write a model that reads each face averaged with its mirror image (or not).

    python -m train.mirror --model runs/scratch-app-rs2/model --out runs/scratch-rs2-mirror/model [--off]

Sets `mirror_average` in the model's config.json (model/nets.py): predict, the app's fast path, Grad-CAM and
train.evaluate then all read a face as the mean of its outputs and its mirror image's. Decide it on
validation first: `python -m train.validate --run RUN --model M [--flip-average] --predictions DIR`, once
with and once without, then `python -m train.compare` (docs/results.md, "Each face and its mirror image").
The weights and their calibration are copied unchanged.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from model.hub import ModelLoadError, load_model
from model.nets import build_model
from train.checkpoint import save_model_dir


def with_mirror_average(folder: Path, on: bool):
    """The model in `folder`, rebuilt with mirror_average = on (same weights and calibration)."""
    config = json.loads((folder / "config.json").read_text()) | {"mirror_average": on}
    model = build_model(**config)
    model.load_state_dict(load_model(str(folder)).state_dict())
    return model.eval()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m train.mirror", description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="a model folder (config.json + model.safetensors)")
    parser.add_argument("--out", type=Path, required=True, help="the model folder to write")
    parser.add_argument("--off", action="store_true", help="read faces as they are (the default of a new model)")
    args = parser.parse_args(argv)
    if not (args.model / "config.json").is_file():
        raise SystemExit(f"{args.model} is not a model folder (no config.json)")
    try:
        model = with_mirror_average(args.model, not args.off)
    except ModelLoadError as error:  # missing, corrupt or mismatched weights: one sentence, no traceback
        raise SystemExit(str(error)) from None
    save_model_dir(model, args.out)
    print(f"written: {args.out} (mirror_average {not args.off})")


if __name__ == "__main__":
    main()
