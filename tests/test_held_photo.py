"""A photo the app holds is bounded in size: a huge upload is downscaled once, upright and
losslessly, before it is predicted, explained or cached; an ordinary one is kept byte for byte."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from flower_core.config import TrainConfig
from flower_core.data.images import HELD_PHOTO_SIDE, bounded_photo, load_image
from flower_core.explain import DISPLAY_SIZE


def _encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _halves(width: int, height: int) -> Image.Image:
    """Red on the left, blue on the right: shows a rotation or a crop."""
    array = np.zeros((height, width, 3), np.uint8)
    array[:, : width // 2] = (220, 20, 20)
    array[:, width // 2 :] = (20, 20, 220)
    return Image.fromarray(array)


def test_a_huge_png_is_downscaled_to_the_bound_keeping_its_shape_and_colours():
    data = _encode(_halves(3000, 2000), "PNG")
    held = bounded_photo(data, max_side=1000)
    image = load_image(held)
    assert image.size == (1000, 667)
    pixels = np.asarray(image)
    assert tuple(pixels[300, 100]) == (220, 20, 20) and tuple(pixels[300, 900]) == (20, 20, 220)
    assert len(held) < len(data)


def test_a_photo_within_the_bound_is_the_very_same_bytes():
    data = _encode(_halves(640, 480), "JPEG")
    assert bounded_photo(data, max_side=640) is data


def test_a_rotated_jpeg_comes_back_upright():
    """EXIF orientation 6 (stored landscape, shown portrait): the PNG has no EXIF, so the
    rotation is applied before the downscale."""
    exif = Image.Exif()
    exif[0x0112] = 6
    data = _encode(_halves(1600, 1200), "JPEG", exif=exif)
    image = load_image(bounded_photo(data, max_side=800))
    assert image.size == (600, 800)
    assert tuple(np.asarray(image)[100, 300]) == (220, 20, 20)  # the left half is now on top


def test_unreadable_bytes_pass_through_so_their_error_is_reported_where_used():
    for data in (b"not an image", b""):
        assert bounded_photo(data) is data


def test_the_bound_leaves_every_model_input_and_display_a_downscale():
    largest_input = TrainConfig.__dataclass_fields__["image_size"].metadata["setting"].maximum
    assert HELD_PHOTO_SIDE >= 2 * max(DISPLAY_SIZE, largest_input)
