"""Compiled forward passes, built once per loaded model and shared by every caller and thread.

Why: a Keras 3 functional model called eagerly keeps every layer's output until the call
returns. An EfficientNet-Lite0 at 384 px (the `best` preset) then holds about 230 MB for one
photo and 1.2 GB for the faithfulness score's batch of six, and ten people explaining at once
took a server past 7 GB. Run as a graph (`tf.function`), TensorFlow frees each activation as
soon as its last consumer has run: the same batch of six adds about 50 MB, and runs faster.

Each graph is traced once per model (a few seconds) and kept as long as the model is: the
functions live in a weak dictionary keyed by the model and reach the model only through a weak
reference, so dropping a model from the app's bounded model cache frees it and its graphs.

Example:

>>> probabilities = predict_probabilities(model, pixels)  # (batch, classes)
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Hashable

import keras
import numpy as np
import tensorflow as tf

_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_LOCK = threading.RLock()  # a build may ask for another object of the same model


def cached_for_model(model: keras.Model, key: Hashable, build: Callable[[], object]):
    """The object `build()` made for `model` under `key`, built at most once per model.

    Thread-safe: two sessions asking at once get the same object. The object must not hold
    `model` strongly (use `weakref.ref`), or the model is never freed.

    Args:
        model: the loaded model the object belongs to (kept weakly).
        key: what distinguishes this object among the model's ones, e.g. `("cam", layer)`.
        build: makes the object; called under a lock, once per model and key.
    """
    with _LOCK:
        per_model = _COMPILED.setdefault(model, {})
        if key not in per_model:
            per_model[key] = build()
        return per_model[key]


def pixel_spec(model: keras.Model) -> tf.TensorSpec:
    """A batch of any size of the model's input, float32: one trace serves every batch size."""
    return tf.TensorSpec([None, *model.input_shape[1:]], tf.float32)


def forward(model: keras.Model) -> Callable:
    """The model's inference pass as a graph (pixels 0-255 in, probabilities out)."""

    def build():
        owner = weakref.ref(model)  # a strong one would keep the model alive forever
        return tf.function(
            lambda pixels: owner()(pixels, training=False), input_signature=[pixel_spec(model)]
        )

    return cached_for_model(model, "forward", build)


def predict_probabilities(model: keras.Model, pixels) -> np.ndarray:
    """Probabilities for a batch of model inputs, (batch, classes), in inference mode."""
    return forward(model)(tf.convert_to_tensor(np.asarray(pixels, np.float32))).numpy()
