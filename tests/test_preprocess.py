"""model/preprocess.py: the normalisation shared by training and inference."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from torchvision.transforms import v2

from model.preprocess import IMAGENET_MEAN, IMAGENET_STD, denormalize, normalize


def test_normalize_is_torchvisions_to_dtype_and_normalize():
    """The written-out normalisation (no torchvision import at inference) gives torchvision's numbers."""
    reference = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    batch = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    torch.testing.assert_close(normalize()(batch), reference(batch), atol=1e-6, rtol=1e-6)
    single = batch[0]
    torch.testing.assert_close(normalize()(single), reference(single), atol=1e-6, rtol=1e-6)
    already_float = batch.float() / 255  # float input is not scaled again, as with ToDtype
    torch.testing.assert_close(normalize()(already_float), reference(already_float), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(denormalize(normalize()(batch)), batch.float() / 255, atol=1e-6, rtol=1e-6)


def test_the_scratch_cnns_inference_path_does_not_import_torchvision():
    """Importing torchvision costs ~2.7 s of every app and CLI start: the default model's path avoids it."""
    code = ("import sys; from model.hub import load_model; from demo.pipeline import Pipeline; "
            "Pipeline(load_model('scratch')); print('torchvision' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"}, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "False"
