"""Read any photo a person may have into a clean RGB image, one way for training and inference.

Training, prediction, explanation and the EDA all go through `load_image` and `model_input`, so
the tensor the model sees at inference is built exactly as it was in training.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from flower_core.errors import ImageError

ImageSource = Union[str, os.PathLike, bytes, BinaryIO]

# 50 megapixels: bigger than any phone photo, far smaller than a decompression bomb.
DEFAULT_MAX_PIXELS = 50_000_000

# File name endings Pillow can open; used to pick candidate files when scanning a dataset folder.
IMAGE_EXTENSIONS = frozenset(ext.lower() for ext in Image.registered_extensions())


def is_candidate_image(path: Path) -> bool:
    """True for a visible file whose extension Pillow knows; other files are ignored, not errors."""
    return not path.name.startswith(".") and path.suffix.lower() in IMAGE_EXTENSIONS


def _open(source: ImageSource) -> Image.Image:
    if isinstance(source, (bytes, bytearray)):
        if not source:
            raise ImageError("empty file (0 bytes)")
        return Image.open(io.BytesIO(source))
    if isinstance(source, (str, os.PathLike)):
        if os.path.getsize(source) == 0:
            raise ImageError("empty file (0 bytes)")
        return Image.open(source)
    return Image.open(source)


def _to_rgb(image: Image.Image) -> Image.Image:
    """Flatten any Pillow mode to 8-bit RGB; transparency is composited onto white."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if array.max(initial=0) > 255 else 255.0
        array = np.clip(array / peak * 255.0, 0, 255).astype(np.uint8)
        image = Image.fromarray(array, mode="L")
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
            image = _open(source)
            width, height = image.size
            if width * height > max_pixels:
                raise ImageError(
                    f"image too large: {width}x{height} pixels is over the limit of "
                    f"{max_pixels:,} pixels"
                )
            if draft_size and image.format == "JPEG":
                image.draft("RGB", (draft_size, draft_size))
            image.load()
            image = ImageOps.exif_transpose(image)
            return _to_rgb(image)
    except ImageError:
        raise
    except Image.DecompressionBombError as error:
        raise ImageError(f"image too large: {error}") from None
    except UnidentifiedImageError:
        raise ImageError("not an image that Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageError(f"unreadable image ({error})") from None


def to_model_array(image: Image.Image, image_size: int) -> np.ndarray:
    """Resize to the model's square input; returns uint8 pixels of shape (size, size, 3)."""
    resized = image.resize((image_size, image_size), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.uint8)


def model_input(source: ImageSource, image_size: int) -> np.ndarray:
    """The exact pixels the model gets for one photo, in training and at inference."""
    return to_model_array(load_image(source, draft_size=image_size), image_size)
