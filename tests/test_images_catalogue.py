"""The catalogue of awkward inputs a person may upload, each with its expected outcome.

Every case goes through `load_image` (path, bytes and open file) and through batch prediction,
where a bad file becomes an `error` entry and never stops the batch. The files are made here.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
from PIL import Image

from flower_core.data.images import load_image, model_input
from flower_core.errors import ImageError

RED, BLUE = (220, 20, 20), (20, 20, 220)


def _save(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _halves(width=40, height=30) -> Image.Image:
    """Left half red, right half blue: orientation mistakes show."""
    array = np.zeros((height, width, 3), np.uint8)
    array[:, : width // 2] = RED
    array[:, width // 2 :] = BLUE
    return Image.fromarray(array)


def _png_declaring(width: int, height: int) -> bytes:
    """A valid 1x1 PNG whose header (IHDR, with a correct CRC) claims another size."""
    data = bytearray(_save(Image.new("RGB", (1, 1)), "PNG"))
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def _exif_rotated() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    return _save(_halves(), "JPEG", quality=95, exif=exif)


def _corrupt_exif() -> bytes:
    data = bytearray(_exif_rotated())
    start = data.find(b"Exif") + 10
    data[start : start + 20] = b"\xff" * 20
    return bytes(data)


def _animated_gif() -> bytes:
    frames = [Image.new("RGB", (12, 10), colour) for colour in (RED, BLUE, (0, 200, 0))]
    return _save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)


def _palette_with_transparency() -> bytes:
    image = Image.new("P", (8, 8), 0)
    image.putpalette([0, 0, 0, 200, 30, 30] + [0] * 762)
    image.paste(1, (4, 0, 8, 8))
    return _save(image, "PNG", transparency=0)


def _near(colour):
    return lambda a: np.abs(a.astype(int) - colour).max() <= 12


@dataclass(frozen=True)
class Case:
    name: str
    filename: str
    make: Callable[[], bytes]
    error: str | None = None  # a substring of the ImageError message, or None: it loads
    size: tuple[int, int] | None = None  # (width, height) after EXIF orientation
    check: Callable[[np.ndarray], bool] | None = None


CASES = [
    Case("empty file", "empty.jpg", lambda: b"", error="empty file"),
    Case("text named .jpg", "notes.jpg", lambda: b"a shopping list, not a photo\n", error="not an image"),
    Case("truncated JPEG", "cut.jpg", lambda: _save(_halves(), "JPEG")[:400], error="unreadable"),
    Case("truncated PNG", "cut.png", lambda: _save(_halves(), "PNG")[:90], error="unreadable"),
    Case(
        "1x1 pixel",
        "dot.png",
        lambda: _save(Image.new("RGB", (1, 1), RED), "PNG"),
        size=(1, 1),
        check=lambda a: tuple(a[0, 0]) == RED,
    ),
    Case(
        "PNG declaring 30000x30000",
        "bomb.png",
        lambda: _png_declaring(30000, 30000),
        error="image too large: 900,000,000 pixels",
    ),
    Case(
        "PNG declaring 8000x8000 (under Pillow's own limit)",
        "big.png",
        lambda: _png_declaring(8000, 8000),
        error="over the limit of 50,000,000",
    ),
    Case(
        "CMYK JPEG",
        "cmyk.jpg",
        lambda: _save(Image.new("CMYK", (20, 10), (0, 255, 255, 0)), "JPEG"),
        size=(20, 10),
        check=_near((255, 0, 0)),
    ),
    Case(
        "16-bit PNG, bright",
        "bright16.png",
        lambda: _save(Image.fromarray(np.full((10, 20), 65535, np.uint16)), "PNG"),
        size=(20, 10),
        check=_near((255, 255, 255)),
    ),
    Case(
        "16-bit PNG, dark stays dark",
        "dark16.png",
        lambda: _save(Image.fromarray(np.full((10, 20), 6000, np.uint16)), "PNG"),
        size=(20, 10),
        check=_near((23, 23, 23)),
    ),
    Case(
        "RGBA PNG, transparent on white",
        "alpha.png",
        lambda: _save(Image.new("RGBA", (8, 6), (255, 0, 0, 0)), "PNG"),
        size=(8, 6),
        check=_near((255, 255, 255)),
    ),
    Case(
        "palette PNG with transparency",
        "palette.png",
        _palette_with_transparency,
        size=(8, 8),
        check=lambda a: _near((255, 255, 255))(a[:, :4]) and _near((200, 30, 30))(a[:, 4:]),
    ),
    Case(
        "greyscale JPEG",
        "grey.jpg",
        lambda: _save(Image.new("L", (9, 7), 128), "JPEG"),
        size=(9, 7),
        check=_near((128, 128, 128)),
    ),
    Case("animated GIF, first frame", "anim.gif", _animated_gif, size=(12, 10), check=_near(RED)),
    Case(
        "WebP",
        "photo.webp",
        lambda: _save(_halves(), "WEBP", quality=95),
        size=(40, 30),
        check=lambda a: _near(RED)(a[:, :15]) and _near(BLUE)(a[:, 25:]),
    ),
    Case(
        "EXIF-rotated JPEG",
        "rotated.jpg",
        _exif_rotated,
        size=(30, 40),
        check=lambda a: _near(RED)(a[:15]) and _near(BLUE)(a[25:]),
    ),
    Case("corrupt EXIF block", "badexif.jpg", _corrupt_exif, size=(40, 30)),
    Case(
        "SVG (unsupported)",
        "drawing.svg",
        lambda: b'<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"><rect/></svg>',
        error="not an image",
    ),
    Case(
        "HEIC (unsupported)",
        "phone.heic",
        lambda: b"\0\0\0\x18ftypheic\0\0\0\0mif1heic",
        error="not an image",
    ),
    Case(
        "JPEG named .png",
        "really_a_jpeg.png",
        lambda: _save(_halves(), "JPEG", quality=95),
        size=(40, 30),
        check=lambda a: _near(RED)(a[:, :15]),
    ),
    Case("JPEG with no extension", "upload", lambda: _save(_halves(), "JPEG"), size=(40, 30)),
    Case(
        "bilevel PNG",
        "bw.png",
        lambda: _save(Image.new("1", (9, 7), 1), "PNG"),
        size=(9, 7),
        check=_near((255, 255, 255)),
    ),
    Case(
        "float TIFF in [0, 1]",
        "float.tif",
        lambda: _save(Image.fromarray(np.full((4, 6), 0.5, np.float32)), "TIFF"),
        size=(6, 4),
        check=_near((128, 128, 128)),
    ),
    Case(
        "BMP",
        "old.bmp",
        lambda: _save(_halves(), "BMP"),
        size=(40, 30),
        check=lambda a: _near(RED)(a[:, :20]) and _near(BLUE)(a[:, 20:]),
    ),
]
IDS = [case.name for case in CASES]
assert len(CASES) >= 14


def _check_outcome(case: Case, load) -> None:
    if case.error:
        with pytest.raises(ImageError, match=case.error):
            load()
        return
    image = load()
    assert image.mode == "RGB"
    assert image.size == case.size
    if case.check:
        assert case.check(np.asarray(image)), f"{case.name}: wrong pixels"


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_load_image_outcome(case, tmp_path):
    path = tmp_path / case.filename
    path.write_bytes(case.make())
    _check_outcome(case, lambda: load_image(path))
    _check_outcome(case, lambda: load_image(path.read_bytes()))
    _check_outcome(case, lambda: load_image(io.BytesIO(path.read_bytes())))


@pytest.mark.parametrize("case", [c for c in CASES if c.error], ids=[c.name for c in CASES if c.error])
def test_error_messages_are_one_line(case):
    with pytest.raises(ImageError) as info:
        load_image(case.make())
    assert "\n" not in str(info.value)


def test_missing_file_and_folder_are_clear(tmp_path):
    with pytest.raises(ImageError, match="file not found"):
        load_image(tmp_path / "nowhere.jpg")
    with pytest.raises(ImageError, match="not a file"):
        load_image(tmp_path)


def test_large_jpeg_decodes_at_reduced_scale():
    """A 4000x3000 photo is decoded at 1/8 scale when the model needs 224 px: fast and safe."""
    photo = Image.new("RGB", (4000, 3000), RED)
    image = load_image(_save(photo, "JPEG"), draft_size=224)
    assert image.size == (500, 375)
    assert model_input(_save(photo, "JPEG"), 224).shape == (224, 224, 3)


def test_catalogue_through_batch_prediction(tiny_classifier_run, tmp_path):
    from flower_core.evaluation.predict import predict_paths

    folder = tmp_path / "uploads"
    folder.mkdir()
    for case in CASES:
        (folder / case.filename).write_bytes(case.make())
    (folder / "README.txt").write_text("not a photo and not named like one: skipped in folders")
    by_name = {case.filename: case for case in CASES}
    for inputs in ([folder], [folder / case.filename for case in CASES]):
        results = predict_paths(tiny_classifier_run, inputs, top_k=2)
        assert sorted(r["path"].rsplit("/", 1)[-1] for r in results) == sorted(by_name)
        for result in results:
            case = by_name[result["path"].rsplit("/", 1)[-1]]
            if case.error:
                assert case.error in result["error"], result
                assert "top_k" not in result
            else:
                assert "error" not in result, result
                assert len(result["top_k"]) == 2


def test_training_pipeline_and_prediction_see_identical_pixels(tmp_path, monkeypatch):
    """The same file, through the tf.data training pipeline and through `predict_image`."""
    from flower_core.data.pipeline import image_dataset
    from flower_core.evaluation import predict

    (tmp_path / "rose").mkdir()
    files = ["rose/rotated.jpg", "rose/alpha.png", "rose/anim.gif", "rose/big.jpg"]
    (tmp_path / files[0]).write_bytes(_exif_rotated())
    (tmp_path / files[1]).write_bytes(_save(Image.new("RGBA", (50, 20), (9, 90, 200, 100)), "PNG"))
    (tmp_path / files[2]).write_bytes(_animated_gif())
    big = Image.fromarray(np.random.default_rng(0).integers(0, 256, (900, 1300, 3), np.uint8))
    (tmp_path / files[3]).write_bytes(_save(big, "JPEG"))
    seen = []
    monkeypatch.setattr(
        predict, "predict_batch", lambda model, pixels: seen.append(pixels) or np.full((len(pixels), 2), 0.5)
    )
    batch = next(iter(image_dataset(tmp_path, files, None, image_size=96, batch_size=len(files))))
    for index, rel in enumerate(files):
        predict.predict_image(None, ["a", "b"], tmp_path / rel, image_size=96)
        np.testing.assert_array_equal(np.asarray(seen[-1][0], np.float32), batch[index].numpy())
