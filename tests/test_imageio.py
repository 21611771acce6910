"""model.imageio.load_image: every kind of input either becomes RGB uint8 or a BadImageError with a message."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from model.imageio import MAX_PIXELS, BadImageError, load_image


def encoded(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def gradient(width=64, height=48) -> Image.Image:
    x = np.linspace(0, 255, width, dtype=np.uint8)[None, :].repeat(height, 0)
    return Image.fromarray(np.stack([x, x[:, ::-1], np.full_like(x, 40)], -1))


def test_sources_all_give_the_same_rgb_array(tmp_path):
    image = gradient()
    path = tmp_path / "g.png"
    image.save(path)
    expected = np.asarray(image)
    for source in (path, str(path), path.read_bytes(), io.BytesIO(path.read_bytes()), image, expected):
        rgb = load_image(source)
        assert rgb.dtype == np.uint8 and rgb.shape == (48, 64, 3)
        np.testing.assert_array_equal(rgb, expected)


@pytest.mark.parametrize("mode", ["L", "1", "P", "CMYK", "RGBA", "LA", "I;16", "I", "F"])
def test_every_pil_mode_becomes_rgb_uint8(mode):
    image = gradient().convert("L") if mode in ("I;16", "I", "F") else gradient()
    if mode == "I;16":
        image = Image.fromarray(np.asarray(image).astype(np.uint16) * 257)  # full 16-bit range
    elif mode in ("I", "F"):
        image = image.convert(mode)
    else:
        image = image.convert(mode)
    rgb = load_image(image)
    assert rgb.dtype == np.uint8 and rgb.shape == (48, 64, 3)
    assert rgb.max() > 128  # not crushed to black


def test_16_bit_png_is_rescaled_not_clipped(tmp_path):
    ramp = (np.linspace(0, 65535, 64)[None, :].repeat(32, 0)).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(ramp).save(path)
    rgb = load_image(path)
    assert rgb[0, 0, 0] == 0 and rgb[0, -1, 0] == 255 and 120 < rgb[0, 32, 0] < 136  # mid-grey in the middle


def test_transparency_becomes_white_not_black():
    rgba = np.zeros((32, 32, 4), np.uint8)  # fully transparent black
    assert (load_image(Image.fromarray(rgba, "RGBA")) == 255).all()
    assert (load_image(rgba) == 255).all()
    palette = Image.new("P", (32, 32), 0)
    palette.info["transparency"] = 0
    assert (load_image(encoded(palette, "PNG", transparency=0)) == 255).all()


def test_cmyk_jpeg():
    cmyk = gradient().convert("CMYK")
    rgb = load_image(encoded(cmyk, "JPEG"))
    assert rgb.shape == (48, 64, 3)
    assert abs(int(rgb[:, :8, 0].mean()) - int(np.asarray(gradient())[:, :8, 0].mean())) < 20


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (60, 30), (255, 0, 0))
    image.paste((0, 0, 255), (0, 0, 30, 30))  # left half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    rgb = load_image(encoded(image, "JPEG", exif=exif.tobytes()))
    assert rgb.shape == (60, 30, 3)  # portrait now
    assert rgb[5, 15, 2] > 200 and rgb[55, 15, 0] > 200  # blue on top, red below


def test_float_and_gray_arrays():
    assert load_image(np.full((20, 20), 0.5, np.float32))[0, 0, 0] in (127, 128)
    assert load_image(np.full((20, 20, 1), 200, np.uint8)).shape == (20, 20, 3)


@pytest.mark.parametrize("data, message", [
    (b"", "empty"),
    (b"hello, I am a text file\n" * 10, "not an image"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "not an image"),
])
def test_bad_bytes(data, message):
    with pytest.raises(BadImageError, match=message):
        load_image(data)


def test_bad_files(tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "notes.jpg"
    text.write_text("not a picture")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(encoded(Image.effect_noise((300, 300), 50).convert("RGB"), "JPEG")[:2000])
    cases = {empty: "empty", text: "not an image", truncated: "truncated", tmp_path / "missing.jpg": "not found"}
    for path, message in cases.items():
        with pytest.raises(BadImageError, match=message):
            load_image(path)
    with pytest.raises(BadImageError):
        load_image(tmp_path)  # a folder
    with pytest.raises(BadImageError, match="Cannot read an image from a int"):
        load_image(42)


def test_decompression_bomb_is_refused_before_decoding():
    bomb = encoded(Image.new("1", (12_000, 12_000)), "PNG")  # 144 MP, a few kB on disk
    assert len(bomb) < 100_000
    with pytest.raises(BadImageError, match="too large"):
        load_image(bomb)


def test_huge_and_tiny_arrays():
    side = int(MAX_PIXELS ** 0.5) + 1
    with pytest.raises(BadImageError, match="too large"):
        load_image(np.broadcast_to(np.zeros(1, np.uint8), (side, side)))
    with pytest.raises(BadImageError, match="too small"):
        load_image(np.zeros((8, 8, 3), np.uint8))
    for shape in ((20, 20, 2), (400,), (2, 20, 20, 3)):
        with pytest.raises(BadImageError, match="shape"):
            load_image(np.zeros(shape, np.uint8))
    with pytest.raises(BadImageError, match="NaN"):
        load_image(np.full((20, 20), np.nan, np.float32))


def test_bad_image_error_is_a_value_error():
    assert issubclass(BadImageError, ValueError)
