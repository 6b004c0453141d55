"""A pair of pretrained backbones as one: each member preprocesses the same pixels its own way,
and their last feature maps are concatenated (`PAIR_MAPS_LAYER`).

Pooling the concatenation gives each member's pooled features side by side, so the head learns
from both; the feature cache keeps each member's pooled features under the member's own key
(`features.extractors`), so a member cached by a run of its own is not computed again.
"""

from __future__ import annotations

import keras
from keras import layers

from flower_core.errors import FlowerError
from flower_core.models.backbone_specs import PAIR_MAPS_LAYER
from flower_core.models.backbones import build_backbone, get_backbone
from flower_core.models.classifier import Preprocess


def pair(
    name: str,
    include_top: bool = False,
    weights: str | None = "imagenet",
    input_tensor=None,
    input_shape=None,
    own_preprocessing: bool = True,
) -> keras.Model:
    """Build the pair of backbones `name` (a `BACKBONES` entry with `members`) flat on one input.

    Args:
        name: the pair's key in `BACKBONES`.
        include_top: must be `False`: a pair has no ImageNet classifier. Defaults to `False`.
        weights: `"imagenet"` (each member's own), `None` (random), or a Keras weights file saved
            from this pair. Defaults to `"imagenet"`.
        input_tensor: the tensor of 0-255 RGB pixels to build on; else a new input.
        input_shape: (height, width, 3), square.
        own_preprocessing: each member preprocesses the pixels its own way (its ImageNet
            preprocessing); `False` gives every member `input_tensor` as it is (the `rescale`
            setting's pixels / 255). Defaults to `True`.

    Returns:
        A `keras.Model` from the source inputs of `input_tensor` to the members' last feature
        maps, concatenated along the channels.
    """
    if include_top:
        raise FlowerError(f"backbone '{name}' has no ImageNet classifier: use include_top=False")
    spec = get_backbone(name)
    if input_tensor is None:
        input_tensor = keras.Input(input_shape)
    size = int(input_tensor.shape[1])
    member_weights = "imagenet" if weights == "imagenet" else "none"
    maps = []
    for member in map(get_backbone, spec.members):
        mode = member.preprocessing if own_preprocessing else "none"
        preprocessed = Preprocess(mode, name=f"{member.name}_preprocess")(input_tensor)
        maps.append(build_backbone(member.name, member_weights, preprocessed, size).output)
    outputs = layers.Concatenate(name=PAIR_MAPS_LAYER)(maps)
    model = keras.Model(keras.utils.get_source_inputs(input_tensor), outputs, name=name)
    if weights not in (None, "imagenet"):
        keras.Model(input_tensor, outputs).load_weights(str(weights))
    return model


def lite0_mobilenet(**kwargs) -> keras.Model:
    """EfficientNet-Lite0 and MobileNet v1 (`BACKBONES["lite0_mobilenet"]`)."""
    return pair("lite0_mobilenet", **kwargs)
