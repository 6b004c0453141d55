"""Show a heatmap on the photo, and show the photo as the model sees it.

Colours come from OpenCV's colormaps (BGR there, RGB here); blending is `alpha * heatmap +
(1 - alpha) * photo`, so `alpha` is the heatmap's opacity.
"""

from __future__ import annotations

import os

import cv2
import keras
import numpy as np
from PIL import Image

from flower_core.models.classifier import PREPROCESS_LAYER

COLORMAPS = {
    "jet": cv2.COLORMAP_JET,
    "turbo": cv2.COLORMAP_TURBO,
    "inferno": cv2.COLORMAP_INFERNO,
    "viridis": cv2.COLORMAP_VIRIDIS,
    "magma": cv2.COLORMAP_MAGMA,
}
DEFAULT_ALPHA = 0.45


def resize_heatmap(heatmap: np.ndarray, width: int, height: int) -> np.ndarray:
    """Upsample a [0, 1] map bilinearly to `width` x `height`; stays float32 in [0, 1]."""
    resized = cv2.resize(np.asarray(heatmap, np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    return np.clip(resized, 0.0, 1.0).astype(np.float32)


def colorize(heatmap: np.ndarray, colormap: str = "jet") -> np.ndarray:
    """A [0, 1] map as a uint8 RGB image in one of `COLORMAPS`."""
    if colormap not in COLORMAPS:
        raise ValueError(f"colormap must be one of {sorted(COLORMAPS)}. Received: {colormap=}")
    scaled = np.uint8(np.round(255 * np.asarray(heatmap, np.float32)))
    return cv2.cvtColor(cv2.applyColorMap(scaled, COLORMAPS[colormap]), cv2.COLOR_BGR2RGB)


def overlay_heatmap(
    image, heatmap: np.ndarray, alpha: float = DEFAULT_ALPHA, colormap: str = "jet"
) -> np.ndarray:
    """Blend a heatmap over a photo.

    Args:
        image: the photo, a PIL image or a uint8 RGB array of shape (height, width, 3).
        heatmap: float map in [0, 1]; it is upsampled to the photo when its shape differs.
        alpha: the heatmap's opacity, in [0, 1]. Defaults to `DEFAULT_ALPHA`.
        colormap: a name from `COLORMAPS`. Defaults to `"jet"`.

    Returns:
        The blended photo as a uint8 RGB array, the photo's size.
    """
    photo = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image)
    if photo.dtype != np.uint8 or photo.ndim != 3 or photo.shape[2] != 3:
        raise ValueError(
            f"image must be uint8 RGB (height, width, 3). Received: dtype={photo.dtype}, shape={photo.shape}"
        )
    heatmap = np.asarray(heatmap, np.float32)
    if heatmap.ndim != 2 or heatmap.min(initial=0) < 0 or heatmap.max(initial=0) > 1:
        raise ValueError(
            "heatmap must be a 2-D map with values in [0, 1]. Received: "
            f"shape={heatmap.shape}, range=({heatmap.min()}, {heatmap.max()})"
        )
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1]. Received: alpha={alpha}")
    if heatmap.shape != photo.shape[:2]:
        heatmap = resize_heatmap(heatmap, photo.shape[1], photo.shape[0])
    blended = alpha * colorize(heatmap, colormap) + (1.0 - alpha) * photo
    return np.uint8(np.clip(np.round(blended), 0, 255))


def preprocessed_view(model: keras.Model, pixels: np.ndarray) -> np.ndarray:
    """The backbone's actual input (after the model's `preprocess` layer) as a viewable image.

    Mean-centred or [-1, 1] values are stretched to 0-255, and the BGR order of "caffe"
    preprocessing is turned back to RGB, so colour shifts the preprocessing makes stay visible.
    """
    layer = model.get_layer(PREPROCESS_LAYER)
    values = keras.ops.convert_to_numpy(layer(np.asarray(pixels, np.float32)[None]))[0]
    if getattr(layer, "mode", None) == "caffe":
        values = values[..., ::-1]
    low, high = float(values.min()), float(values.max())
    scaled = (values - low) / (high - low) if high > low else np.zeros_like(values)
    return np.uint8(np.round(255 * scaled))


def save_png(array: np.ndarray, path: str | os.PathLike) -> str:
    """Write a uint8 RGB array as a PNG (creating its folder); returns the path as a string."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    Image.fromarray(np.asarray(array, np.uint8)).save(path, format="PNG")
    return path
