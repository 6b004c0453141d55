"""Read any photo a person may have into a clean RGB image, one way for training and inference.

Training, prediction, explanation and the EDA all go through `load_image` and `model_input`, so
the tensor the model sees at inference is built exactly as it was in training.
"""

from __future__ import annotations

import io
import os
import re
import struct
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from flower_core.errors import ImageError

ImageSource = str | os.PathLike | bytes | BinaryIO

# Threads that read and decode photos: decoding releases the GIL, and more threads than this
# only add memory on the small machines the studio runs on.
DECODE_THREADS = min(8, (os.cpu_count() or 1) * 2)

# 50 megapixels: bigger than any phone photo, far smaller than a decompression bomb.
DEFAULT_MAX_PIXELS = 50_000_000

# Photos a server holds and caches (an upload, a webcam shot) are at most this many pixels on
# the long side: twice the largest model input and display size (1024 px), so every model input
# and heatmap is still a downscale, while a huge PNG (decoded again for each prediction and
# heatmap) shrinks to a small fraction of its pixels.
HELD_PHOTO_SIDE = 2048

# File name endings Pillow can open; used to pick candidate files when scanning a dataset folder.
IMAGE_EXTENSIONS = frozenset(ext.lower() for ext in Image.registered_extensions())


def is_candidate_image(path: Path) -> bool:
    """True for a visible file whose extension Pillow knows; other files are ignored, not errors."""
    return not path.name.startswith(".") and path.suffix.lower() in IMAGE_EXTENSIONS


def _open(source: ImageSource) -> Image.Image:
    if not isinstance(source, (bytes, bytearray, str, os.PathLike)):
        source = source.read()
    if isinstance(source, (bytes, bytearray)):
        if not source:
            raise ImageError("empty file (0 bytes)")
        return Image.open(io.BytesIO(source))
    if not os.path.exists(source):
        raise ImageError(f"file not found: {os.fspath(source)}")
    if not os.path.isfile(source):
        raise ImageError(f"not a file: {os.fspath(source)}")
    if os.path.getsize(source) == 0:
        raise ImageError("empty file (0 bytes)")
    return Image.open(source)


def _grey_to_8bit(image: Image.Image) -> Image.Image:
    """16-bit, 32-bit and float greyscale to 8 bits, by the range the mode implies.

    16-bit modes always span 0-65535 (a dark 16-bit photo stays dark); 32-bit integers and
    floats carry no range, so [0, 1], [0, 255] or [0, 65535] is guessed from the maximum.
    """
    array = np.nan_to_num(np.asarray(image, dtype=np.float64))
    if image.mode.startswith("I;16"):
        peak = 65535.0
    else:
        high = array.max(initial=0)
        peak = 1.0 if image.mode == "F" and high <= 1.0 else 255.0 if high <= 255 else 65535.0
    return Image.fromarray(np.clip(array / peak * 255.0, 0, 255).round().astype(np.uint8))


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; a corrupt EXIF block is ignored rather than losing the photo."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        try:
            return ImageOps.exif_transpose(image)
        except (OSError, ValueError, TypeError, KeyError, SyntaxError, struct.error):
            return image


def _too_large(error: Exception, max_pixels: int) -> ImageError:
    """Pillow's own bomb refusal, in the same words as ours."""
    found = re.search(r"\((\d+) pixels\)", str(error))
    size = f"{int(found.group(1)):,} pixels" if found else "the declared size"
    return ImageError(f"image too large: {size} is over the limit of {max_pixels:,} pixels")


def _to_rgb(image: Image.Image) -> Image.Image:
    """Flatten any Pillow mode to 8-bit RGB; transparency is composited onto white."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        image = _grey_to_8bit(image)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")


def load_image(
    source: ImageSource,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    draft_size: int | None = None,
) -> Image.Image:
    """Open a photo by its content (not its name) as an upright 8-bit RGB image.

    Args:
        source: a path, the file's bytes or an open binary file.
        max_pixels: images declaring more pixels are refused before decoding, against
            decompression bombs. Defaults to `DEFAULT_MAX_PIXELS`.
        draft_size: when set, JPEGs may be decoded at a reduced scale that is still at least
            this many pixels on each side, which is much faster for large photos.
            Defaults to `None` (full size).

    Returns:
        A fully loaded `PIL.Image.Image` in mode RGB, EXIF orientation applied, first frame
        of animations.

    Raises:
        ImageError: the file is empty, not an image, truncated or too large.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            warnings.filterwarnings("ignore", "Corrupt EXIF data", UserWarning)
            image = _open(source)
            width, height = image.size
            if width * height > max_pixels:
                raise ImageError(
                    f"image too large: {width}x{height} pixels is over the limit of {max_pixels:,} pixels"
                )
            if draft_size and image.format == "JPEG":
                image.draft("RGB", (draft_size, draft_size))
            image.load()
            return _to_rgb(_upright(image))
    except ImageError:
        raise
    except Image.DecompressionBombError as error:
        raise _too_large(error, max_pixels) from None
    except UnidentifiedImageError:
        raise ImageError(
            "not an image that Pillow can read (use JPEG, PNG, WebP, GIF, BMP or TIFF)"
        ) from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageError(f"unreadable image ({error})") from None


def to_model_array(image: Image.Image, image_size: int) -> np.ndarray:
    """Resize to the model's square input; returns uint8 pixels of shape (size, size, 3)."""
    resized = image.resize((image_size, image_size), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.uint8)


def model_input(source: ImageSource, image_size: int) -> np.ndarray:
    """The exact pixels the model gets for one photo, in training and at inference."""
    return to_model_array(load_image(source, draft_size=image_size), image_size)


def bounded_photo(data: bytes, max_side: int = HELD_PHOTO_SIDE) -> bytes:
    """A photo's bytes, downscaled to at most `max_side` pixels on its long side when larger.

    Why: the app predicts, explains and shows a photo from its bytes, and each of those decodes
    it; a huge photo decoded at full size in every session that holds it is what fills a
    server's memory. Bounding it once, when it arrives, bounds every later decode and cache.

    Args:
        data: the photo file's bytes.
        max_side: the longest side kept, in pixels. Defaults to `HELD_PHOTO_SIDE`.

    Returns:
        `data` itself when the photo is within the bound (so its prediction is exactly the
        command line's) or cannot be read (`load_image` says why where it is used); else the
        upright photo, downscaled with an antialiasing filter, as a PNG (lossless).
    """
    try:
        with Image.open(io.BytesIO(data)) as probe:
            width, height = probe.size
        if max(width, height) <= max_side:
            return data
        image = load_image(data, draft_size=max_side)
    except (ImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return data
    image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
