"""The one image loader for the CLI, the UI, the API and the end-to-end evaluation: anything image-like -> RGB
uint8 HxWx3. Here, beside detection and alignment, because how an upload is decoded (EXIF rotation, modes) is
part of what the model sees.

Every way an input can be unusable ends in `BadImageError` with a message fit to show a user as is.
"""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PIXELS = 40_000_000  # ~40 MP: bigger than any camera photo we expect, small enough to decode safely
MIN_SIDE = 16            # below this there is no face to see
MAX_BYTES = 100_000_000


class BadImageError(ValueError):
    """An input that is not a usable image. The message is shown to users verbatim."""


def load_image(source) -> np.ndarray:
    """path | bytes | file object | PIL.Image | np.ndarray -> RGB uint8 array HxWx3, EXIF-rotated."""
    if isinstance(source, np.ndarray):
        _check_size(source)  # before converting: no copies of a huge array
        return _array_to_rgb(source)
    if isinstance(source, Image.Image):
        return _check_size(_pil_to_rgb(source))
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise BadImageError("File not found")
        if path.stat().st_size == 0:
            raise BadImageError("The file is empty (0 bytes)")
        if path.stat().st_size > MAX_BYTES:
            raise BadImageError(f"The file is too large ({path.stat().st_size / 1e6:.0f} MB)")
        with open(path, "rb") as f:
            return _decode(f)
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise BadImageError("The file is empty (0 bytes)")
        return _decode(io.BytesIO(source))
    if hasattr(source, "read"):
        return _decode(source)
    raise BadImageError(f"Cannot read an image from a {type(source).__name__}")


def _decode(stream) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            # PIL only warns between MAX_IMAGE_PIXELS and twice that; we check the size ourselves below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(stream) as image:
                width, height = image.size
                if width * height > MAX_PIXELS:  # before decoding: a bomb is small on disk, huge in memory
                    raise BadImageError(f"The image is too large ({width}x{height} px); "
                                        f"the limit is {MAX_PIXELS // 1_000_000} megapixels")
                image.load()
                return _check_size(_pil_to_rgb(image))
    except BadImageError:
        raise
    except Image.DecompressionBombError:  # PIL refuses to even read the header's size: far over our limit
        raise BadImageError(f"The image is too large to open safely; the limit is "
                            f"{MAX_PIXELS // 1_000_000} megapixels") from None
    except UnidentifiedImageError:
        raise BadImageError("This file is not an image (or not a format we can read)") from None
    except (OSError, SyntaxError, ValueError, EOFError):
        # PIL reports truncated and corrupt data as OSError ("image file is truncated", "broken data stream");
        # its wording means nothing to a user, so it is not passed on.
        raise BadImageError("The image file is damaged or truncated") from None


def _pil_to_rgb(image: Image.Image) -> np.ndarray:
    """Any PIL mode -> RGB, after applying the EXIF orientation (phones store portraits sideways)."""
    try:
        image = ImageOps.exif_transpose(image)
    except Exception:  # a broken EXIF block should not cost the picture
        pass
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return _array_to_rgb(np.asarray(image))  # 16-bit/float: rescale, PIL's convert would clip to white
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))  # transparent -> white, not black
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"))
    return np.asarray(image.convert("RGB"))  # L, 1, P, CMYK, YCbCr, LAB, HSV


def _array_to_rgb(array: np.ndarray) -> np.ndarray:
    """HxW, HxWx1, HxWx3 or HxWx4 array of any numeric type -> RGB uint8."""
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise BadImageError(f"Expected an HxW, HxWx3 or HxWx4 image array, got shape {array.shape}")
    if array.dtype != np.uint8:
        array = array.astype(np.float32)
        if not np.isfinite(array).all():
            raise BadImageError("The image array contains NaN or infinite values")
        top = array.max(initial=0)
        if top <= 1.0 and array.min(initial=0) >= 0 and array.dtype.kind == "f":
            array = array * 255  # float image in [0, 1]
        elif top > 255:
            array = array * (255 / (65535 if top <= 65535 else top))  # 16-bit (or wider) range
        array = np.clip(array.round(), 0, 255).astype(np.uint8)
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    if array.shape[2] == 4:
        alpha = array[:, :, 3:].astype(np.float32) / 255
        array = (array[:, :, :3] * alpha + 255 * (1 - alpha)).round().astype(np.uint8)
    return np.ascontiguousarray(array)


def _check_size(rgb: np.ndarray) -> np.ndarray:
    if rgb.ndim not in (2, 3):
        raise BadImageError(f"Expected an HxW, HxWx3 or HxWx4 image array, got shape {rgb.shape}")
    height, width = rgb.shape[:2]
    if min(height, width) < MIN_SIDE:
        raise BadImageError(f"The image is too small ({width}x{height} px); it needs at least "
                            f"{MIN_SIDE} px on each side")
    if height * width > MAX_PIXELS:
        raise BadImageError(f"The image is too large ({width}x{height} px); "
                            f"the limit is {MAX_PIXELS // 1_000_000} megapixels")
    return rgb
