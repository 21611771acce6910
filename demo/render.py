"""Drawing: boxes and labels on the photo, Grad-CAM heat maps on a face or back on the full image."""
from __future__ import annotations

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


def annotate(rgb: np.ndarray, boxes: list, labels: list[str], colors: list) -> np.ndarray:
    """Boxes (x, y, w, h) with a label on a filled tag above each (inside when at the top edge)."""
    image = Image.fromarray(rgb).copy()
    draw = ImageDraw.Draw(image)
    side = max(image.size)
    width = max(2, round(side / 400))
    font = ImageFont.load_default(size=max(11, round(side / 45)))
    for (x, y, w, h), label, color in zip(boxes, labels, colors):
        draw.rectangle((x, y, x + w, y + h), outline=color, width=width)
        left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
        tw, th = right - left + 2 * width, bottom - top + 2 * width
        ty = y - th if y - th >= 0 else y
        tx = min(max(0, x), max(0, image.size[0] - tw))
        draw.rectangle((tx, ty, tx + tw, ty + th), fill=color)
        draw.text((tx + width - left, ty + width - top), label, fill=(0, 0, 0) if color == UNSURE else (255, 255, 255),
                  font=font)
    return np.asarray(image)


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
