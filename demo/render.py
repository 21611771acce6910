"""Drawing: boxes and labels on the photo, Grad-CAM heat maps on a face or back on the full image."""
from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

FEMALE, MALE, UNSURE = (230, 90, 150), (40, 140, 230), (200, 200, 200)


def color_for(p_female: float) -> tuple[int, int, int]:
    if p_female >= 0.65:
        return FEMALE
    if p_female <= 0.35:
        return MALE
    return UNSURE


Rect = tuple[int, int, int, int]  # x, y, w, h in image pixels, like the face boxes
MAY_COVER = 0.2  # a label that finds no free spot may still hide this share of another face (its hair, chin)


class Placement(NamedTuple):
    """Where one face's texts go. `label` is None where the full label fit nowhere (the tag still numbers the
    face); `tag` is None where the label itself touches the box (it starts with the same "#n")."""
    label: Rect | None
    tag: Rect | None


def annotate(rgb: np.ndarray, boxes: list, labels: list[str], colors: list, numbers: list[int] | None = None,
             return_layout: bool = False):
    """Boxes (x, y, w, h), each numbered ("#3", default 1, 2, ...) and labelled "#3 <label>" where the label
    fits without covering another label or leaving the image (see `layout_labels`).
    Returns the annotated RGB image, or (image, list of Placement) with return_layout=True."""
    image = Image.fromarray(rgb).copy()
    draw = ImageDraw.Draw(image)
    numbers = list(numbers) if numbers is not None else list(range(1, len(boxes) + 1))
    font_size = label_font_size(image.size, boxes)
    font = ImageFont.load_default(size=font_size)
    pad = max(2, font_size // 6)
    texts = [f"#{n} {label}".rstrip() for n, label in zip(numbers, labels)]
    tags = [f"#{n}" for n in numbers]
    layout = layout_labels(boxes, [_text_size(t, font, pad) for t in texts], [_text_size(t, font, pad) for t in tags],
                           image.size)
    line = max(2, round(max(image.size) / 400))
    for (x, y, w, h), color in zip(boxes, colors):
        draw.rectangle((x, y, x + w, y + h), outline=color, width=line)
    for place, text, tag, color in zip(layout, texts, tags, colors):  # after all boxes: no line crosses a label
        for rect, words in ((place.tag, tag), (place.label, text)):
            if rect is not None:
                _draw_text_box(draw, rect, words, color, font, pad)
    annotated = np.asarray(image)
    return (annotated, layout) if return_layout else annotated


def label_font_size(image_size: tuple[int, int], boxes: list) -> int:
    """Grows with the image (so labels look alike once the photo is scaled to the screen) but stays below a
    sixth of the median face height, so that in a crowd a label is about as wide as a face, not three."""
    size = max(image_size) / 45
    if len(boxes):
        size = min(size, 0.16 * float(np.median([h for _, _, _, h in boxes])))
    return max(11, round(size))


def layout_labels(boxes: list, label_sizes: list, tag_sizes: list, image_size: tuple[int, int],
                  gap: int = 2) -> list[Placement]:
    """Greedy label placement, in face order. Boxes are (x, y, w, h); sizes (w, h); image_size (width, height).

    First every face reserves a small number tag at a corner of its box (inside first). Then each full label
    takes the first candidate that lies inside the image and covers no label or other face's tag, trying in
    turn: positions touching its box (above, below, inside top, inside bottom, left, right) that cover no other
    face box; positions further out that cover no other face box; positions touching its box that cover at
    most MAY_COVER of any other face box. A label touching its box numbers the face itself, so its tag is
    dropped; a label that fits nowhere is dropped and the tag alone numbers the face (only an image with no
    free room left leaves a face with neither). No two returned rectangles intersect, all lie inside the
    image, and texts keep `gap` px apart, so two labels of one colour never merge into one bar.
    """
    boxes = [tuple(round(v) for v in box) for box in boxes]
    tags = _place_tags(boxes, tag_sizes, image_size, gap)
    labels: list[Rect | None] = []
    for i, (box, size) in enumerate(zip(boxes, label_sizes)):
        other_boxes = boxes[:i] + boxes[i + 1:]
        taken = [_grow(r, gap) for r in labels if r is not None]
        taken += [_grow(t, gap) for j, t in enumerate(tags) if t is not None and j != i]
        own_tag = [_grow(tags[i], gap)] if tags[i] is not None else []
        touching = _touching(box, size, image_size)
        label = (_first_fit(touching, image_size, taken, other_boxes)
                 or _first_fit(_further_out(box, size, image_size), image_size, taken + own_tag, other_boxes)
                 or _first_fit(touching, image_size, taken, other_boxes, may_cover=MAY_COVER))
        if label is not None and _touch(label, box):
            tags[i] = None
        labels.append(label)
    return [Placement(label, tag) for label, tag in zip(labels, tags)]


def _place_tags(boxes: list[Rect], tag_sizes: list, image_size: tuple[int, int], gap: int) -> list[Rect | None]:
    """A number tag per face at a corner of its box, overlapping no other tag; a free spot nearby otherwise."""
    tags: list[Rect | None] = []
    for i, (box, size) in enumerate(zip(boxes, tag_sizes)):
        taken = [_grow(t, gap) for t in tags if t is not None]
        other_boxes = boxes[:i] + boxes[i + 1:]
        tags.append(_first_fit(_corners(box, size), image_size, taken, other_boxes)
                    or _first_fit(_corners(box, size), image_size, taken, [])
                    or _first_fit(_anywhere(box, size, image_size), image_size, taken, []))
    return tags


def _corners(box: Rect, size) -> list[Rect]:
    (x, y, w, h), (tw, th) = box, size
    inside = [(x, y), (x + w - tw, y), (x, y + h - th), (x + w - tw, y + h - th)]
    outside = [(x, y - th), (x + w - tw, y - th), (x, y + h), (x + w - tw, y + h), (x - tw, y), (x + w, y)]
    return [(cx, cy, tw, th) for cx, cy in inside + outside]


def _touching(box: Rect, size, image_size) -> list[Rect]:
    """Label positions sharing an edge with the box: above, below, inside top, inside bottom, left, right.
    Each slides along that edge to stay inside the image (it still touches the box)."""
    (x, y, w, h), (lw, lh), (width, height) = box, size, image_size
    columns = [_within(cx, lw, width) for cx in (x, x + w - lw, x + (w - lw) // 2)]  # left, right, centred
    rows = [_within(cy, lh, height) for cy in (y, y + h - lh)]  # top-aligned, bottom-aligned
    return ([(cx, cy, lw, lh) for cy in (y - lh, y + h, y, y + h - lh) for cx in columns]
            + [(cx, cy, lw, lh) for cx in (x - lw, x + w) for cy in rows])


def _further_out(box: Rect, size, image_size, steps: int = 3) -> list[Rect]:
    """Positions 1..steps label heights away from the box: above, below, left, right."""
    (x, y, w, h), (lw, lh), (width, height) = box, size, image_size
    columns = [_within(cx, lw, width) for cx in (x, x + w - lw, x + (w - lw) // 2)]
    row = _within(y, lh, height)
    found = []
    for gap in range(lh, (steps + 1) * lh, lh):
        found += [(cx, cy, lw, lh) for cy in (y - lh - gap, y + h + gap) for cx in columns]
        found += [(x - lw - gap, row, lw, lh), (x + w + gap, row, lw, lh)]
    return found


def _anywhere(box: Rect, size, image_size) -> list[Rect]:
    """Every position on a grid of half a tag's height, nearest to the box's top-left corner first."""
    (x, y, _, _), (tw, th), (width, height) = box, size, image_size
    step = max(1, th // 2)
    spots = [(cx, cy) for cy in range(0, height - th + 1, step) for cx in range(0, width - tw + 1, step)]
    spots.sort(key=lambda p: (p[0] - x) ** 2 + (p[1] - y) ** 2)
    return [(cx, cy, tw, th) for cx, cy in spots]


def _within(start: int, length: int, limit: int) -> int:
    """`start` moved the least so that [start, start + length) lies in [0, limit) (if it can)."""
    return max(0, min(start, limit - length))


def _first_fit(candidates: list[Rect], image_size, taken: list[Rect], avoid: list[Rect],
               may_cover: float = 0.0) -> Rect | None:
    """The first candidate inside the image that intersects nothing in `taken` and covers at most `may_cover`
    of the area of each box in `avoid`."""
    for rect in candidates:
        if (_inside(rect, image_size) and not any(_intersect(rect, other) for other in taken)
                and all(_covered_share(box, rect) <= may_cover for box in avoid)):
            return rect
    return None


def _inside(rect: Rect, image_size) -> bool:
    x, y, w, h = rect
    return x >= 0 and y >= 0 and x + w <= image_size[0] and y + h <= image_size[1]


def _intersect(a: Rect, b: Rect) -> bool:
    """Whether two rectangles share any area (touching edges do not count)."""
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def _covered_share(box: Rect, rect: Rect) -> float:
    """The share of the box's area that the rectangle covers."""
    w = min(box[0] + box[2], rect[0] + rect[2]) - max(box[0], rect[0])
    h = min(box[1] + box[3], rect[1] + rect[3]) - max(box[1], rect[1])
    return max(0, w) * max(0, h) / max(1, box[2] * box[3])


def _grow(rect: Rect, margin: int) -> Rect:
    x, y, w, h = rect
    return x - margin, y - margin, w + 2 * margin, h + 2 * margin


def _touch(a: Rect, b: Rect) -> bool:
    """Whether two rectangles share area or at least part of an edge."""
    return a[0] <= b[0] + b[2] and b[0] <= a[0] + a[2] and a[1] <= b[1] + b[3] and b[1] <= a[1] + a[3]


def _text_size(text: str, font, pad: int) -> tuple[int, int]:
    """The filled box around `text`: its advance width and the font's full line height, plus padding."""
    ascent, descent = font.getmetrics()
    return round(font.getlength(text)) + 2 * pad, ascent + descent + 2 * pad


def _draw_text_box(draw, rect: Rect, text: str, color, font, pad: int) -> None:
    x, y, w, h = rect
    draw.rectangle((x, y, x + w - 1, y + h - 1), fill=color)
    draw.text((x + pad, y + pad), text, fill=(0, 0, 0) if color == UNSURE else (255, 255, 255), font=font)


def face_overlay(crop: np.ndarray, cam: np.ndarray, image_weight: float = 0.5) -> np.ndarray:
    """A face crop with its CAM map (any resolution) blended in, via pytorch-grad-cam's own helper."""
    from pytorch_grad_cam.utils.image import show_cam_on_image  # imported late: the package takes seconds to load
    mask = cv2.resize(cam, (crop.shape[1], crop.shape[0]), interpolation=cv2.INTER_LINEAR)
    return show_cam_on_image(crop.astype(np.float32) / 255, mask, use_rgb=True, image_weight=image_weight)


def image_overlay(rgb: np.ndarray, cam_full: np.ndarray, region: np.ndarray, image_weight: float = 0.5) -> np.ndarray:
    """The full image with a CAM map (already in image pixels) blended in where `region` (0..1) is set."""
    heat = cv2.applyColorMap(np.uint8(255 * np.clip(cam_full, 0, 1)), cv2.COLORMAP_JET)
    heat = cv2.cvtColor(heat, cv2.COLOR_BGR2RGB).astype(np.float32)
    alpha = (1 - image_weight) * np.clip(region, 0, 1)[..., None]
    return np.uint8(np.clip(rgb * (1 - alpha) + heat * alpha, 0, 255).round())
