"""Thumbnails for tables: a small JPEG data URI, or None for a file that is no photo."""

import base64
import io

from PIL import Image

from flower_core.data.thumbnails import thumbnail_uri


def test_a_photo_becomes_a_small_jpeg_data_uri(tmp_path):
    path = tmp_path / "wide.png"
    Image.new("RGB", (400, 200), (200, 30, 30)).save(path)
    uri = thumbnail_uri(path, size=64)
    assert uri.startswith("data:image/jpeg;base64,")
    image = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    assert image.format == "JPEG" and image.size == (64, 32)


def test_a_file_that_is_no_photo_gives_none(tmp_path):
    path = tmp_path / "broken.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    assert thumbnail_uri(path) is None
