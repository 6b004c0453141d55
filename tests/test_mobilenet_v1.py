"""MobileNet v1 from the `nudity` package's frozen graph: the conversion's refusals, and the
converted weights against Keras' own file of the same TF-slim checkpoint."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from flower_core.errors import FlowerError
from flower_core.models.backbone_specs import BACKBONES
from flower_core.models.backbones import build_backbone, packaged_checkpoint, ready_offline, weights_status
from flower_core.models.mobilenet_v1 import SCOPE, converted_weights, mobilenet

from .conftest import MOBILENET_NO_TOP, needs_mobilenet_weights

GRAPH = packaged_checkpoint(BACKBONES["mobilenet"])


def _graph_file(path, constants: dict) -> None:
    graph = tf.compat.v1.GraphDef()
    for name, value in constants.items():
        node = graph.node.add(name=name, op="Const")
        node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value))
    path.write_bytes(graph.SerializeToString())


def test_mobilenet_is_packaged_and_ready_offline():
    assert GRAPH is not None and GRAPH.name == "retrained_graph.pb"
    assert "mobilenet" in ready_offline()
    assert weights_status("mobilenet")["found"] == str(GRAPH)


def test_a_file_that_is_not_a_graph_is_one_clear_error_and_leaves_nothing(tmp_path):
    path = tmp_path / "photo.pb"
    path.write_bytes(b"\xff\xd8\xff\xe0 not a protocol buffer")
    with pytest.raises(FlowerError, match="not a TensorFlow frozen graph") as info:
        converted_weights(path, tmp_path / "cache")
    assert "\n" not in str(info.value) and not (tmp_path / "cache").exists()


def test_a_graph_of_another_model_names_the_tensor_and_leaves_nothing(tmp_path):
    path = tmp_path / "other.pb"
    _graph_file(path, {f"{SCOPE}/Conv2d_0/weights": np.zeros((3, 3, 3, 16), "float32")})
    with pytest.raises(
        FlowerError, match=r"tensor MobilenetV1/Conv2d_0/weights has shape \(3, 3, 3, 16\)"
    ) as info:
        converted_weights(path, tmp_path / "cache")
    assert "\n" not in str(info.value) and not (tmp_path / "cache").exists()


@pytest.mark.real_data
@needs_mobilenet_weights
def test_converted_weights_equal_keras_file_of_the_same_checkpoint():
    converted = mobilenet(weights="imagenet", input_shape=(224, 224, 3))
    reference = keras.applications.MobileNet(
        include_top=False, weights=str(MOBILENET_NO_TOP), input_shape=(224, 224, 3)
    )
    for ours, theirs in zip(converted.weights, reference.weights, strict=True):
        assert ours.path.split("/")[-2:] == theirs.path.split("/")[-2:]
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-6, atol=1e-7, err_msg=ours.path)
    flat = build_backbone("mobilenet", "imagenet", keras.Input((128, 128, 3)), 128)
    photo = np.random.default_rng(0).uniform(-1, 1, (2, 128, 128, 3)).astype("float32")
    small = keras.applications.MobileNet(
        include_top=False, weights=str(MOBILENET_NO_TOP), input_shape=(128, 128, 3)
    )
    np.testing.assert_allclose(flat(photo), small(photo), rtol=1e-5, atol=1e-5)
