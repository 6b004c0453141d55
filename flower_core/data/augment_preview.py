"""What augmentation does to a training photo: the photo and versions drawn through the very
Keras layers training uses (`model.augmentation_layers`), for the Train form's preview.

With a frozen backbone and `augment_cache="maps"` (the default), training does not transform
photos: it transforms each photo's cached feature maps the same way (`model.MapAugmentation`,
no flip), which `maps_note` says in words.
"""

from __future__ import annotations

import keras
import numpy as np

from flower_core.data.images import ImageSource, model_input
from flower_core.models.backbones import get_backbone
from flower_core.models.classifier import augmentation_layers

PREVIEW_VERSIONS = 8


def augmented_versions(
    source: ImageSource, image_size: int, seed: int, count: int = PREVIEW_VERSIONS
) -> tuple[np.ndarray, np.ndarray]:
    """The photo as the model gets it, and `count` augmented versions of it.

    Args:
        source: a training photo (path, bytes or open file).
        image_size: the run's input size in pixels.
        seed: the run's seed, which seeds the augmentation layers as in training.
        count: how many versions. Defaults to `PREVIEW_VERSIONS` (8).

    Returns:
        `(original, versions)` as uint8 arrays, (size, size, 3) and (count, size, size, 3).

    Example:

    >>> original, versions = augmented_versions("data/flowers/daisy/0001.jpg", 224, seed=0)
    >>> versions.shape
    (8, 224, 224, 3)
    """
    if count < 1:
        raise ValueError(f"count must be at least 1. Received: count={count}")
    pixels = model_input(source, image_size)
    augment = keras.Sequential(augmentation_layers(seed), name="preview_augmentation")
    batch = np.repeat(pixels[None], count, axis=0).astype("float32")
    versions = keras.ops.convert_to_numpy(augment(batch, training=True))
    return _uint8(pixels), _uint8(versions)


def _uint8(pixels: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(pixels), 0, 255).astype("uint8")


def maps_note(image_size: int, backbone: str) -> str:
    """What the cached-maps mode does instead of transforming photos, for `image_size`."""
    cells = max(image_size // get_backbone(backbone).stride, 1)
    return (
        f"With cached feature maps (the default for a frozen backbone), training does not "
        f"transform the photos: it computes each photo's last feature maps once (about "
        f"{cells} x {cells} cells at {image_size} px) and rotates, zooms and shears those maps "
        f"anew every epoch before pooling, with no flip (pooling makes a mirrored map the "
        f"same). The pictures show the same transformations on the photo itself."
    )
