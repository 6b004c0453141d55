"""The transfer model: raw pixels -> augmentation -> preprocessing -> backbone -> dense head.

Everything the model needs to turn 0-255 pixels into probabilities lives inside it, so a saved
`model.keras` predicts correctly with no outside preprocessing. The backbone is built flat on
the preprocessed tensor, so Grad-CAM can take gradients at any of its layers. The same head
layers also form `head_model`, which trains on cached backbone features with shared weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
from keras import layers

from flower_core.config import TrainConfig
from flower_core.models.backbone_specs import PREPROCESSING_MODES
from flower_core.models.backbones import build_backbone, get_backbone
from flower_core.models.efficientnet_lite import PIXEL_MEAN, PIXEL_STD

AUGMENT_LAYER_PREFIX = "augment_"
INPUT_LAYER = "pixels"
PREPROCESS_LAYER = "preprocess"
HEAD_POOL = "head_pool"
PREDICTIONS = "predictions"

# Per-channel means that VGG16 and ResNet50 subtract, in RGB order ("caffe" mode).
_CAFFE_MEAN_RGB = (123.68, 116.779, 103.939)


@keras.saving.register_keras_serializable(package="flower_core")
class Preprocess(layers.Layer):
    """Map 0-255 RGB pixels to what the backbone expects.

    Modes: `rescale` (x / 255, the study's first runs), `caffe` (RGB -> BGR and ImageNet mean
    subtraction, for VGG16 and ResNet50), `tf` (scale to [-1, 1], MobileNets), `lite`
    ((x - 127) / 128, EfficientNet-Lite), `none` (EfficientNet normalises inside), `members`
    (a pair of backbones: each member preprocesses its own way inside it).
    """

    MODES = tuple(PREPROCESSING_MODES)

    def __init__(self, mode: str = "rescale", **kwargs):
        super().__init__(**kwargs)
        if mode not in self.MODES:
            raise ValueError(f"mode must be one of {self.MODES}. Received: mode={mode!r}")
        self.mode = mode

    def call(self, inputs):
        x = keras.ops.cast(inputs, "float32")
        if self.mode == "rescale":
            return x / 255.0
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "lite":
            return (x - PIXEL_MEAN) / PIXEL_STD
        if self.mode == "caffe":
            return keras.ops.flip(x - keras.ops.array(_CAFFE_MEAN_RGB), axis=-1)
        return x

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


@keras.saving.register_keras_serializable(package="flower_core")
class RandomShearX(layers.RandomShear):
    """`RandomShear` along x whose config reloads: Keras 3.15 saves the factor as a signed range
    that its own constructor then rejects, so a saved model could not be loaded."""

    def get_config(self):
        config = super().get_config()
        config["x_factor"] = max(abs(v) for v in config["x_factor"])
        config["y_factor"] = 0.0
        return config


def preprocessing_mode(config: TrainConfig) -> str:
    """The `Preprocess` mode for a config: /255, or the backbone's own ImageNet preprocessing."""
    if config.preprocessing == "rescale":
        return "rescale"
    return get_backbone(config.backbone).preprocessing


def augmentation_layers(seed: int) -> list[layers.Layer]:
    """The study's augmentation (shear 0.2, zoom 0.2, rotation 10 degrees, horizontal flip).

    Each layer gets its own seed: layers seeded alike draw the same numbers, so every photo
    would turn exactly as much as it zooms."""
    return [
        layers.RandomFlip("horizontal", seed=seed, name=f"{AUGMENT_LAYER_PREFIX}flip"),
        layers.RandomRotation(
            10 / 360, fill_mode="nearest", seed=seed + 1, name=f"{AUGMENT_LAYER_PREFIX}rotation"
        ),
        layers.RandomZoom(0.2, fill_mode="nearest", seed=seed + 2, name=f"{AUGMENT_LAYER_PREFIX}zoom"),
        RandomShearX(0.2, 0.0, fill_mode="nearest", seed=seed + 3, name=f"{AUGMENT_LAYER_PREFIX}shear"),
    ]


def map_augmentation_layers(seed: int) -> list[layers.Layer]:
    """The study's augmentation for cached feature maps (`augment_cache="maps"`): rotation, zoom
    and shear of the (h, w, channels) map before pooling. No flip: global pooling gives a
    mirrored map the same features, so flipping it changes nothing."""
    return augmentation_layers(seed)[1:]


class MapAugmentation(layers.Layer):
    """`map_augmentation_layers` for feature maps of many channels, cheaper on a CPU.

    For fixed random parameters, rotation, zoom and shear with bilinear interpolation and
    `nearest` fill are linear maps of the pixels: every output position is a weighted sum of
    input positions. So the Keras layers transform an (h, w, h * w) stack of one-hot probes,
    which gives each photo's (h * w, h * w) weight matrix, and one batched matmul applies it
    to all channels, faster than running the layers on every channel (bench/README.md). The
    output is what the layers would give on the maps themselves, for the same draws.
    """

    def __init__(self, seed: int, **kwargs):
        super().__init__(**kwargs)
        self.augment = map_augmentation_layers(seed)

    def build(self, input_shape):
        h, w = input_shape[1:3]
        for layer in self.augment:
            layer.build((None, h, w, h * w))

    def call(self, maps, training=None):
        if not training:
            return maps
        batch = keras.ops.shape(maps)[0]
        h, w, channels = maps.shape[1:]
        probes = keras.ops.broadcast_to(
            keras.ops.reshape(keras.ops.eye(h * w), (1, h, w, h * w)), (batch, h, w, h * w)
        )
        for layer in self.augment:
            probes = layer(probes, training=True)
        weights = keras.ops.reshape(probes, (batch, h * w, h * w))
        moved = keras.ops.matmul(weights, keras.ops.reshape(maps, (batch, h * w, channels)))
        return keras.ops.reshape(moved, (batch, h, w, channels))


def global_pooling(pooling: str, name: str | None = None) -> layers.Layer:
    """The global pooling layer of the `pooling` setting ("max" or "avg")."""
    pool_cls = layers.GlobalMaxPooling2D if pooling == "max" else layers.GlobalAveragePooling2D
    return pool_cls(name=name)


def head_layers(config: TrainConfig, num_classes: int) -> list[layers.Layer]:
    """Dense layers with optional batch-norm and dropout, then the softmax; all named."""
    stack = []
    for i, units in enumerate(config.dense_units, 1):
        stack.append(layers.Dense(units, name=f"head_dense{i}"))
        if config.batchnorm:
            stack.append(layers.BatchNormalization(name=f"head_bn{i}"))
        stack.append(layers.Activation("relu", name=f"head_relu{i}"))
        if config.dropout:
            stack.append(layers.Dropout(config.dropout, seed=config.seed, name=f"head_dropout{i}"))
    stack.append(layers.Dense(num_classes, activation="softmax", name=PREDICTIONS))
    return stack


@dataclass
class Classifier:
    """The full model and its two halves, which share weights with it."""

    model: keras.Model
    feature_model: keras.Model
    head_model: keras.Model
    map_model: keras.Model
    map_head_model: keras.Model
    backbone_layers: list[str]
    augmentation: list[layers.Layer]


def _apply(stack: list[layers.Layer], x):
    for layer in stack:
        x = layer(x)
    return x


def build_classifier(config: TrainConfig, num_classes: int) -> Classifier:
    """Build the model for `config`, with the backbone frozen unless it starts from random weights.

    Returns:
        A `Classifier`: `model` maps uint8-range pixels (batch, size, size, 3) to class
        probabilities; `feature_model` maps the same pixels to pooled backbone features (no
        augmentation); `head_model` maps those features to probabilities; `map_model` maps the
        pixels to the backbone's feature maps before pooling, and `map_head_model` those maps
        (augmented while training, when `config.augment`) to probabilities.
    """
    keras.utils.set_random_seed(config.seed)
    size = config.image_size
    inputs = keras.Input((size, size, 3), name=INPUT_LAYER)
    augmentation = augmentation_layers(config.seed) if config.augment else []
    augmented = _apply(augmentation, inputs)
    mode = preprocessing_mode(config)
    preprocessor = Preprocess(mode, name=PREPROCESS_LAYER)
    backbone = build_backbone(
        config.backbone, config.weights, preprocessor(augmented), size, rescaled=mode == "rescale"
    )
    # A random backbone only helps if it learns: with `weights="none"` it trains from scratch.
    backbone.trainable = config.trains_from_scratch
    pool = global_pooling(config.pooling, name=HEAD_POOL)
    features = pool(backbone.output)
    head = head_layers(config, num_classes)
    model = keras.Model(inputs, _apply(head, features), name=f"{config.backbone}_classifier")
    # Augmentation layers are the identity outside training, so this path sees clean photos.
    feature_model = keras.Model(inputs, features, name="features")
    feature_input = keras.Input((features.shape[-1],), name="features")
    head_model = keras.Model(feature_input, _apply(head, feature_input), name="head")
    map_model = keras.Model(inputs, backbone.output, name="feature_maps")
    map_input = keras.Input(tuple(backbone.output.shape[1:]), name="feature_maps")
    map_augmentation = (
        [MapAugmentation(config.seed, name=f"{AUGMENT_LAYER_PREFIX}maps")] if config.augment else []
    )
    map_head_model = keras.Model(
        map_input, _apply(head, pool(_apply(map_augmentation, map_input))), name="map_head"
    )
    not_backbone = {inputs.name, preprocessor.name, *(layer.name for layer in augmentation)}
    backbone_layers = [layer.name for layer in backbone.layers if layer.name not in not_backbone]
    return Classifier(
        model, feature_model, head_model, map_model, map_head_model, backbone_layers, augmentation
    )


def is_backbone_layer(name: str) -> bool:
    """Whether a layer of a whole classifier is part of its backbone, not the input, the
    preprocessing or the augmentation the classifier adds in front of it."""
    return name not in (INPUT_LAYER, PREPROCESS_LAYER) and not name.startswith(AUGMENT_LAYER_PREFIX)


def class_scores(model: keras.Model, features):
    """The pre-softmax class scores of pooled `features`: the `PREDICTIONS` layer's kernel and
    bias without its softmax (Grad-CAM differentiates these, as keras-io's grad_cam does)."""
    dense = model.get_layer(PREDICTIONS)
    return features @ dense.kernel + dense.bias


def set_fine_tuning(classifier: Classifier, backbone_name: str, blocks: int) -> list[str]:
    """Make only the last `blocks` blocks of the backbone trainable; the stem and every other
    block stay frozen, and so does every batch-norm layer, the head's included (inference mode).

    A head batch-norm left training follows batch statistics while the unfrozen blocks move its
    inputs, and its moving averages lag behind them: validation accuracy then swung from epoch
    to epoch (0.77 to 0.90 on the real photos, 0.88 to 0.92 with it frozen; docs/RESULTS.md).

    Returns:
        The names of the backbone layers made trainable.
    """
    backbone = get_backbone(backbone_name)
    in_backbone = set(classifier.backbone_layers)
    keyed = [
        (backbone.block_of(layer.name), layer)
        for layer in classifier.model.layers
        if layer.name in in_backbone
    ]
    keys = sorted({key for key, _ in keyed if key is not None})
    chosen = set(keys[-blocks:]) if blocks else set()
    unfrozen = []
    for key, layer in keyed:
        layer.trainable = key in chosen and not isinstance(layer, layers.BatchNormalization)
        if layer.trainable and layer.weights:
            unfrozen.append(layer.name)
    for layer in classifier.model.layers:
        if isinstance(layer, layers.BatchNormalization) and layer.name not in in_backbone:
            layer.trainable = False
    return unfrozen
