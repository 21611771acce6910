"""Score the face detectors against the hand-annotated boxes of ../shared/data/wild-faces (43 faces, 9 photos).

    python -m demo.detect_eval [--wild ../shared/data/wild-faces] [--min-score 0.5]

Prints IoU-matched recall and false positives per detector setting, and the faces found on the unannotated
photos (dogs.jpg must give none; bald_guys.jpg has 24).
"""
from __future__ import annotations

import argparse
import os
import xml.etree.ElementTree as ET
from pathlib import Path

from demo.detect import iou
from demo.imageio import load_image

SHARED = Path(os.environ.get("FACE_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared"))  # as in tests
WILD = SHARED / "data" / "wild-faces"
IOU_MATCH = 0.5  # matched boxes have IoU 0.61..0.9: MediaPipe frames a little wider than dlib's annotators


def annotated_faces(wild: Path) -> dict[str, list[tuple[float, ...]]]:
    """file -> boxes (x, y, w, h) from dlib's training.xml / testing.xml (`<box top left width height>`)."""
    truth = {}
    for name in ("training.xml", "testing.xml"):
        for image in ET.parse(wild / name).getroot().iter("image"):
            truth[image.get("file")] = [tuple(float(b.get(k)) for k in ("left", "top", "width", "height"))
                                        for b in image.iter("box")]
    return truth


def match(found, truth) -> tuple[int, int]:
    """Greedy IoU matching of detections to annotated boxes -> (true positives, false positives)."""
    used = set()
    for t in truth:
        best = max(((iou(t, d.box), i) for i, d in enumerate(found) if i not in used), default=(0.0, None))
        if best[0] >= IOU_MATCH:
            used.add(best[1])
    return len(used), len(found) - len(used)


def evaluate(wild: Path, detect) -> tuple[int, int, int]:
    """detect(rgb) -> detections; returns (found, false positives, annotated faces) over all annotated photos."""
    tp = fp = total = 0
    for name, truth in annotated_faces(wild).items():
        t, f = match(detect(load_image(wild / name)), truth)
        tp, fp, total = tp + t, fp + f, total + len(truth)
    return tp, fp, total


def main(argv=None) -> None:
    from demo.pipeline import Pipeline
    from model.nets import ScratchNet

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wild", type=Path, default=WILD)
    parser.add_argument("--min-score", type=float, default=0.5)
    args = parser.parse_args(argv)
    pipeline = Pipeline(ScratchNet())  # detection only: the model's weights play no part
    print(f"IoU >= {IOU_MATCH}, detector score >= {args.min_score}")
    for name in ("short", "full", "both", "auto"):
        def detect(rgb):
            return pipeline.find_faces(rgb, args.min_score, name, [])
        tp, fp, total = evaluate(args.wild, detect)
        others = {f: len(detect(load_image(args.wild / f))) for f in ("dogs.jpg", "bald_guys.jpg")}
        print(f"  {name:5s}: recall {tp}/{total} ({tp / total:.0%}), {fp} false positives; "
              f"faces on dogs.jpg: {others['dogs.jpg']}, on bald_guys.jpg: {others['bald_guys.jpg']}/24")


if __name__ == "__main__":
    main()
