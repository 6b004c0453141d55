"""`tf.data` input pipelines that stream photos from disk for end-to-end training and inference.

Decoding goes through `flower_core.data.images.model_input` (Pillow) inside a parallel map, so
training sees exactly the pixels that prediction and explanation see, and decoding overlaps with
the model's compute thanks to `prefetch`.

On two cores there is no idle core to hide decoding behind: it costs MobileNet about 17 % of an
epoch (bench/README.md). So epochs after the first can read the decoded, resized photos from a
`tf.data` cache file on disk (`pixel_cache`, made by `features.pixel_scratch`) instead of
decoding them again; memory stays flat.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from flower_core.data.images import model_input

# With a pixel cache the file order is shuffled once and then, each epoch, within a buffer of
# about this many bytes of pixels (512 photos at 224 px): a full shuffle would hold every photo.
CACHED_SHUFFLE_BYTES = 75 * 1024**2

# tf.data's model-based autotuning runs a thread beside each iterator, and the iterator's end
# waits for that thread, at the end of every feature pass and at the start of every end-to-end
# epoch (bench/README.md, "tf.data's autotuning thread"). Without it, an
# `AUTOTUNE` map keeps as many calls in flight as the machine has cores, at most 16 (more cores
# would need `autotune.initial_parallelism`), and `prefetch` still grows its buffer when the
# model waits: enough to keep a backbone fed on the 2 cores measured.
_WITHOUT_MODEL_THREAD = tf.data.Options()
_WITHOUT_MODEL_THREAD.autotune.enabled = False


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
    pixel_cache: str | Path | None = None,
) -> tf.data.Dataset:
    """Batches of (pixels, one-hot labels), or pixels alone when `labels` is `None`.

    Args:
        root: the dataset folder that `files` are relative to.
        files: relative paths such as `daisy/1.jpg`.
        labels: integer labels in `files` order, or `None` for unlabelled inference.
        image_size: square model input size.
        batch_size: photos per batch.
        num_classes: length of the one-hot labels. Defaults to `max(labels) + 1`.
        shuffle: reshuffle the file order every epoch (seeded). With `pixel_cache`, the files
            are put in a random order once and each epoch mixes them within a buffer of
            `CACHED_SHUFFLE_BYTES`, so every batch mixes classes. Defaults to `False`.
        seed: the shuffle seed. Defaults to `0`.
        pixel_cache: a file path (its folder must exist) where the first full pass writes the
            decoded pixels and later passes read them. Defaults to `None` (decode every pass).
    """
    paths = [str(Path(root) / rel) for rel in files]
    order = np.arange(len(paths))
    if shuffle and pixel_cache is not None:
        order = np.random.default_rng(seed).permutation(len(paths))
    if labels is None:
        ds = tf.data.Dataset.from_tensor_slices([paths[i] for i in order])
    else:
        depth = num_classes or (max(labels) + 1)
        one_hot = np.eye(depth, dtype="float32")[np.asarray(labels, dtype=int)[order]]
        ds = tf.data.Dataset.from_tensor_slices(([paths[i] for i in order], one_hot))
    if shuffle and pixel_cache is None:
        ds = ds.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)

    def load(path):
        pixels = tf.numpy_function(
            lambda p: model_input(p.decode(), image_size), [path], tf.uint8, stateful=False
        )
        pixels.set_shape((image_size, image_size, 3))
        return pixels

    if labels is None:
        ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE)
    else:
        ds = ds.map(lambda p, y: (load(p), y), num_parallel_calls=tf.data.AUTOTUNE)
    if pixel_cache is not None:
        ds = ds.cache(str(pixel_cache))
        if shuffle:
            buffer = max(64, CACHED_SHUFFLE_BYTES // (image_size * image_size * 3))
            ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if labels is None:
        ds = ds.map(lambda x: tf.cast(x, tf.float32))
    else:
        ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), y))
    return ds.prefetch(tf.data.AUTOTUNE).with_options(_WITHOUT_MODEL_THREAD)
