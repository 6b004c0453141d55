"""`tf.data` input pipelines that stream photos from disk for end-to-end training and inference.

Decoding goes through `flower_core.images.model_input` (Pillow) inside a parallel map, so
training sees exactly the pixels that prediction and explanation see, and decoding overlaps with
the model's compute thanks to `prefetch`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from flower_core.images import model_input


def image_dataset(
    root: str | Path,
    files: list[str],
    labels: list[int] | None,
    *,
    image_size: int,
    batch_size: int,
    num_classes: int | None = None,
    shuffle: bool = False,
    seed: int = 0,
) -> tf.data.Dataset:
    """Batches of (pixels, one-hot labels), or pixels alone when `labels` is `None`.

    Args:
        root: the dataset folder that `files` are relative to.
        files: relative paths such as `daisy/1.jpg`.
        labels: integer labels in `files` order, or `None` for unlabelled inference.
        image_size: square model input size.
        batch_size: photos per batch.
        num_classes: length of the one-hot labels. Defaults to `max(labels) + 1`.
        shuffle: reshuffle the file order every epoch (seeded). Defaults to `False`.
        seed: the shuffle seed. Defaults to `0`.
    """
    paths = [str(Path(root) / rel) for rel in files]
    if labels is None:
        ds = tf.data.Dataset.from_tensor_slices(paths)
    else:
        depth = num_classes or (max(labels) + 1)
        one_hot = np.eye(depth, dtype="float32")[np.asarray(labels, dtype=int)]
        ds = tf.data.Dataset.from_tensor_slices((paths, one_hot))
    if shuffle:
        ds = ds.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)

    def load(path):
        pixels = tf.numpy_function(
            lambda p: model_input(p.decode(), image_size), [path], tf.uint8, stateful=False
        )
        pixels.set_shape((image_size, image_size, 3))
        return tf.cast(pixels, tf.float32)

    if labels is None:
        ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE)
    else:
        ds = ds.map(lambda p, y: (load(p), y), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
