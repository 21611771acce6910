"""Where the project finds what it does not ship: `../shared` beside the project root (UTKFace, the VGG16
ImageNet weights, the annotated photos), or the folder `$FACE_SHARED_DIR` names. One definition for train/,
demo/ and the tests; nothing under it is ever bundled or committed."""
from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = Path(os.environ.get("FACE_SHARED_DIR", PROJECT_ROOT.parent / "shared"))
