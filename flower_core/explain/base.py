"""`BaseCAM`: the class activation map machinery that every method of the Grad-CAM family shares.

A CAM is a weighted sum of the target layer's activation maps, `relu(sum_k w_k * A_k)`; the
methods differ only in how they weigh the channels, so each one overrides `get_cam_weights`.

Speed: the model is split once at the target layer into a *feature* model (pixels -> target
activations) and a *head* model (target activations -> logits). The feature model runs without
a gradient tape; only the head, a few small layers, is recorded and differentiated. Grad-CAM
therefore costs about one forward pass. When the head cannot be cut out on its own (a layer
inside a residual block, whose skip connection bypasses it), one gradient model over the whole
network is used instead. Both, and the forward pass with its gradient as one compiled graph,
are built once per (model, layer) and reused by every later call and thread: run eagerly, the
feature model would hold every layer's output until it returned (`flower_core.models.inference`).

Gradients are taken of the logits (the `predictions` layer without its softmax), as in the
Keras Grad-CAM example, because the softmax saturates and mixes the classes.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from flower_core.errors import FlowerError
from flower_core.models.backbone_specs import BACKBONES
from flower_core.models.classifier import HEAD_POOL, PREDICTIONS, class_scores, is_backbone_layer
from flower_core.models.inference import cached_for_model, pixel_spec


def spatial_layers(model: keras.Model) -> list[str]:
    """Names of the layers that can be explained: backbone layers with a 4-D output, in order."""
    names = []
    for layer in model.layers:
        if layer.name == HEAD_POOL:
            break
        if not is_backbone_layer(layer.name):
            continue
        if len(layer.output.shape) == 4:
            names.append(layer.name)
    return names


def resolve_layer(model: keras.Model, layer: str | None = None) -> str:
    """The target layer: `layer` if given, else the backbone's `target_layer` (its last
    convolutional layer; a pair of backbones' concatenated maps)."""
    choices = spatial_layers(model)
    if not choices:
        raise FlowerError(f"model '{model.name}' has no convolutional layer to explain")
    if layer is None:
        # The last: a pair of backbones holds its members' target layers before its own.
        targets = {b.target_layer for b in BACKBONES.values()}
        defaults = [name for name in choices if name in targets]
        return defaults[-1] if defaults else choices[-1]
    if layer not in choices:
        shown = ", ".join(choices[-12:])
        raise FlowerError(
            f"unknown layer for the heatmap. Choose a convolutional layer of the model "
            f"({len(choices)} in all), e.g. the last ones: {shown}. Received: layer={layer!r}"
        )
    return layer


def _split(model: keras.Model, layer: str) -> tuple:
    """(feature model, head model or None, whole gradient model or None), built once per model
    and layer (`inference.cached_for_model`)."""

    def build() -> tuple:
        target = model.get_layer(layer).output
        before_softmax = model.get_layer(PREDICTIONS).input
        features = keras.Model(model.inputs[0], target)
        try:
            return features, keras.Model(target, before_softmax), None
        except ValueError:
            return features, None, keras.Model(model.inputs[0], [target, before_softmax])

    return cached_for_model(model, ("cam split", layer), build)


def _compiled_forward(model: keras.Model, layer: str, with_gradients: bool):
    """`forward(pixels, target)` -> (activations, logits, target, gradients or None) as one
    graph, traced once per model, layer and kind: run eagerly, the feature model holds every
    layer's output until it returns (see `flower_core.models.inference`). A `target` below 0 means
    the predicted class."""

    def build():
        features, head, whole = _split(model, layer)
        owner = weakref.ref(model)  # a strong one would keep the model alive forever

        @tf.function(input_signature=[pixel_spec(model), tf.TensorSpec([], tf.int32)])
        def forward(pixels, target):
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                if head is not None:
                    activations = features(pixels, training=False)
                    tape.watch(activations)
                    outputs = head(activations, training=False)
                else:
                    tape.watch(pixels)
                    activations, outputs = whole(pixels, training=False)
                logits = class_scores(owner(), outputs)
                predicted = tf.argmax(logits[0], output_type=tf.int32)
                target = tf.where(target < 0, predicted, target)
                score = tf.gather(logits, target, axis=1)
            gradients = tape.gradient(score, activations)[0] if with_gradients else None
            return activations[0], logits[0], target, gradients

        return forward

    return cached_for_model(model, ("cam forward", layer, with_gradients), build)


# Every CAM method by its `name`: each subclass of `BaseCAM` adds itself when its module is
# imported (the package imports all of its modules), so a new method is one new file.
METHODS: dict[str, type[BaseCAM]] = {}


class BaseCAM:
    """Compute a class activation map of one photo at one layer of a classifier.

    Subclasses set `name` (the key of `METHODS`), `label` (how the app shows it) and
    `uses_gradients`, and implement `get_cam_weights`.

    Args:
        model: the classifier as trained (raw 0-255 pixels in, softmax out).
        layer: the target layer's name. Defaults to `None`: the backbone's last
            convolutional layer (the registry's `target_layer`).
    """

    name = "base"
    label = "Base CAM"
    uses_gradients = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__ or "label" not in cls.__dict__:
            raise TypeError(f"a CAM method sets its own name and label. Received: {cls.__name__}")
        METHODS[cls.name] = cls

    def __init__(self, model: keras.Model, layer: str | None = None):
        self.model = model
        self.layer = resolve_layer(model, layer)
        self._progress: Callable[[int, int], None] | None = None

    def get_cam_weights(self, pixels, activations, gradients, target: int) -> tf.Tensor:
        """One weight per channel of the target layer, shape (channels,)."""
        raise NotImplementedError

    def _forward(self, pixels, target: int | None):
        """Activations, logits, the target and (for gradient methods) d logit / d activations."""
        forward = _compiled_forward(self.model, self.layer, self.uses_gradients)
        activations, logits, target, gradients = forward(
            pixels, tf.constant(-1 if target is None else target)
        )
        return activations, logits, int(target), gradients

    def report(self, done: int, total: int) -> None:
        """Tell the caller's `progress` how far the map is: a slow method (Score-CAM) calls it
        after each step of `get_cam_weights`."""
        if self._progress is not None:
            self._progress(done, total)

    def __call__(
        self,
        pixels: np.ndarray,
        target: int | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Explain one photo.

        Args:
            pixels: the model's input for one photo, (size, size, 3) in 0-255.
            target: the class index to explain. Defaults to `None`: the predicted class.
            progress: called as `progress(done, total)` as the map's steps finish (`report`),
                and once more when it is done. Defaults to `None`.

        Returns:
            The map at the layer's resolution, float32 in [0, 1], and the class probabilities.
        """
        self._progress = progress
        batch = tf.convert_to_tensor(np.asarray(pixels, dtype=np.float32)[None])
        activations, logits, target, gradients = self._forward(batch, target)
        weights = self.get_cam_weights(batch, activations, gradients, target)
        cam = tf.nn.relu(tf.reduce_sum(activations * weights, axis=-1)).numpy()
        self.report(1, 1)
        return normalise(cam), tf.nn.softmax(logits).numpy()


def normalise(cam: np.ndarray) -> np.ndarray:
    """Scale a map to float32 [0, 1]; a flat map (nothing found) becomes all zeros."""
    cam = np.asarray(cam, dtype=np.float32)
    low, high = float(cam.min()), float(cam.max())
    if not np.isfinite(high) or high - low <= 1e-12:
        return np.zeros_like(cam, dtype=np.float32)
    return ((cam - low) / (high - low)).astype(np.float32)
