"""Box labels: every face numbered at its box, labels never overlapping each other nor leaving the image."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageFont

from demo import render
from model.detect import shared_detectors
from demo.pipeline import Face
from demo.render import Placement, layout_labels

WIDEST = "M 100% · 88 y"  # the widest label the pipeline draws (besides the number)


def check_layout(layout: list[Placement], boxes, image_size) -> None:
    """Every face numbered at its box, no two texts intersecting, all inside the image."""
    width, height = image_size
    rects = []
    for place, box in zip(layout, boxes):
        at_box = [r for r in place if r is not None and render._touch(r, box)]
        assert at_box, f"face at {box} has no number at its box: {place}"
        rects += [r for r in place if r is not None]
    for x, y, w, h in rects:
        assert 0 <= x and 0 <= y and x + w <= width and y + h <= height, (x, y, w, h)
    for i, a in enumerate(rects):
        for b in rects[i + 1:]:
            assert not render._intersect(a, b), (a, b)


def annotate(rgb, boxes):
    labels = [WIDEST] * len(boxes)
    colors = [(render.MALE, render.FEMALE, render.UNSURE)[i % 3] for i in range(len(boxes))]
    image, layout = render.annotate(rgb, boxes, labels, colors, return_layout=True)
    for place, color in zip(layout, colors):  # what was laid out is what was drawn
        for rect in filter(None, place):
            assert tuple(image[rect[1], rect[0]]) == color
    return image, layout


def check_room_used(layout: list[Placement], boxes) -> None:
    """A label that touches its own box numbers the face itself (no separate tag); one placed further out keeps
    its tag at the box; no label covers another face's box."""
    for i, (place, box) in enumerate(zip(layout, boxes)):
        if place.label is None:
            continue
        assert (place.tag is None) == render._touch(place.label, box), place
        for j, other in enumerate(boxes):
            assert j == i or not render._intersect(place.label, other), (place.label, other)


def test_two_boxes_at_the_top_edge():
    boxes = [(10, 0, 40, 40), (50, 0, 40, 40)]
    # Nothing fits above either box: both labels still find room touching their own box, below or inside.
    layout = layout_labels(boxes, [(60, 12)] * 2, [(20, 12)] * 2, (200, 100))
    check_layout(layout, boxes, (200, 100))
    check_room_used(layout, boxes)
    assert all(p.label is not None and p.tag is None for p in layout)


def test_a_label_placed_further_out_keeps_the_tag_at_the_box():
    boxes = [(10, 0, 40, 40), (50, 0, 40, 40)]
    # 90 px wide: two 60 px labels cannot both touch their boxes without overlapping each other or a box,
    # so one of them goes further out and leaves a number tag at its box.
    layout = layout_labels(boxes, [(60, 12)] * 2, [(20, 12)] * 2, (90, 100))
    check_layout(layout, boxes, (90, 100))
    check_room_used(layout, boxes)
    assert all(p.label is not None for p in layout)
    far = [(p, box) for p, box in zip(layout, boxes) if not render._touch(p.label, box)]
    assert len(far) == 1 and render._touch(far[0][0].tag, far[0][1])


def test_a_label_that_fits_nowhere_leaves_the_number():
    assert layout_labels([(0, 0, 100, 40)], [(150, 12)], [(20, 12)], (100, 40)) == [Placement(None, (0, 0, 20, 12))]


def test_dense_grid_of_50_faces():
    boxes = [(20 + col * 66, 40 + row * 66, 60, 60) for row in range(5) for col in range(10)]
    rgb = np.full((700, 1000, 3), 90, np.uint8)
    _, layout = annotate(rgb, boxes)
    check_layout(layout, boxes, (1000, 700))
    assert sum(p.label is not None for p in layout) == 50  # the room below the grid takes the rest


def test_grid_filling_the_image_falls_back_to_numbers():
    boxes = [(col * 50, row * 50, 48, 48) for row in range(5) for col in range(10)]
    _, layout = annotate(np.zeros((250, 500, 3), np.uint8), boxes)
    check_layout(layout, boxes, (500, 250))
    assert 0 < sum(p.label is None for p in layout) < 50


@pytest.fixture(scope="module")
def collage(shared_dir):
    rgb = np.asarray(Image.open(shared_dir / "data" / "wild-faces" / "bald_guys.jpg").convert("RGB"))
    height, width = rgb.shape[:2]
    boxes = []
    for d in shared_detectors().detect_tiled(rgb, "full"):
        x0, y0 = max(0, round(d.box[0])), max(0, round(d.box[1]))  # clipped to the image, as the pipeline does
        x1, y1 = min(width, round(d.box[0] + d.box[2])), min(height, round(d.box[1] + d.box[3]))
        boxes.append((x0, y0, x1 - x0, y1 - y0))
    return rgb, sorted(boxes)


def test_collage_of_24_faces(collage):
    rgb, boxes = collage
    assert len(boxes) == 24
    _, layout = annotate(rgb, boxes)
    check_layout(layout, boxes, (rgb.shape[1], rgb.shape[0]))
    assert all(p.label is not None for p in layout)  # every full label found room


def test_font_grows_with_the_image_but_stays_small_in_crowds(collage):
    rgb, boxes = collage
    one_big_face = [(0, 0, 800, 800)]
    sizes = [render.label_font_size((side, side), one_big_face) for side in (500, 1000, 2000, 4000)]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]          # grows with the image
    assert all(abs(size - side / 45) <= 1 for size, side in zip(sizes[1:], (1000, 2000, 4000)))
    median_face = float(np.median([h for *_, h in boxes]))
    crowd = render.label_font_size((1986, 1545), boxes)
    assert crowd < render.label_font_size((1986, 1545), one_big_face)  # a crowd gets smaller labels
    assert crowd <= 0.16 * median_face + 0.5                           # about a face wide, not three
    text_width, _ = render._text_size(WIDEST, ImageFont.load_default(size=crowd), 0)
    assert text_width <= 2 * median_face                               # the widest label: under two faces
    assert render.label_font_size((300, 200), [(0, 0, 20, 20)]) == 11  # readable: never below 11 px


def test_image_label_format():
    face = Face(index=2, box=(0, 0, 9, 9), p_female=0.15, age=31.4, age_low=26, age_high=36, det_score=0.9,
                age_probs=[])
    assert face.label(interval=False) == "M 85% · 31 y"  # P(female) 0.15 is shown as 85% male
    assert face.label() == "M 85% · 31 y (26-36)"
