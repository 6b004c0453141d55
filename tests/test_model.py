"""Presets, the model's structure, preprocessing, fine-tuning and weights resolution."""

import keras
import numpy as np
import pytest

from flower_core.config import PRESETS, STUDY_RESULTS, make_config
from flower_core.errors import FlowerError
from flower_core.models.backbone_specs import BACKBONES
from flower_core.models.backbones import build_backbone, get_backbone, weights_status
from flower_core.models.classifier import (
    MapAugmentation,
    Preprocess,
    augmentation_layers,
    build_classifier,
    map_augmentation_layers,
    set_fine_tuning,
)

from .conftest import MOBILENET_NO_TOP, WEIGHTS_DIR, needs_mobilenet_weights


def test_presets_follow_the_study():
    assert list(PRESETS) == [
        "base",
        "dropout50",
        "dropout20",
        "batch64",
        "plateau",
        "center",
        "batchnorm",
        "best",
    ]
    assert set(STUDY_RESULTS) == set(PRESETS) - {"best"}
    base, d50, d20 = make_config("base"), make_config("dropout50"), make_config("dropout20")
    assert (base.backbone, base.pooling, base.dense_units, base.batch_size) == (
        "vgg16",
        "max",
        [512, 128],
        32,
    )
    assert (base.learning_rate, base.preprocessing, base.dropout, base.augment) == (
        1e-3,
        "rescale",
        0.0,
        False,
    )
    assert (d50.dropout, d50.augment, d20.dropout) == (0.5, True, 0.2)
    assert make_config("batch64").batch_size == 64
    assert make_config("plateau").reduce_lr and not d20.reduce_lr
    assert make_config("center").preprocessing == "imagenet"
    batchnorm = make_config("batchnorm")
    assert batchnorm.batchnorm and batchnorm.reduce_lr and batchnorm.dropout == 0.2
    best = make_config("best")
    assert (best.pooling, best.label_smoothing, best.augment, best.batchnorm) == ("avg", 0.1, False, True)
    assert best.image_size == 384


def test_overrides_win_over_presets_and_bad_values_are_refused():
    assert make_config("batch64", batch_size=16, dropout=None).batch_size == 16
    with pytest.raises(FlowerError, match="unknown preset 'huge'"):
        make_config("huge")
    with pytest.raises(FlowerError, match="Received: dropout=1.5"):
        make_config("base", dropout=1.5)
    with pytest.raises(FlowerError, match="unknown backbone 'alexnet'"):
        get_backbone("alexnet")


def test_model_layers_are_named_and_head_matches_config():
    clf = build_classifier(make_config("batchnorm", backbone="mobilenet", weights="none", image_size=64), 5)
    names = [layer.name for layer in clf.model.layers]
    for expected in (
        "pixels",
        "augment_flip",
        "augment_shear",
        "preprocess",
        "conv_pw_13_relu",
        "head_pool",
        "head_dense1",
        "head_bn1",
        "head_dropout1",
        "head_dense2",
        "predictions",
    ):
        assert expected in names
    assert clf.model.get_layer("head_dense1").units == 512
    assert clf.model.get_layer("head_dropout2").rate == 0.2
    assert clf.model.output_shape == (None, 5)
    assert "head_dense1" not in clf.backbone_layers and "conv_pw_13" in clf.backbone_layers


def test_feature_and_head_models_share_weights_with_the_full_model():
    clf = build_classifier(make_config("dropout20", backbone="mobilenet", weights="none", image_size=64), 3)
    x = np.random.default_rng(0).integers(0, 255, (4, 64, 64, 3)).astype("float32")
    full = clf.model.predict(x, verbose=0)
    composed = clf.head_model.predict(clf.feature_model.predict(x, verbose=0), verbose=0)
    np.testing.assert_allclose(full, composed, atol=1e-6)


@pytest.mark.parametrize("pooling", ["max", "avg"])
def test_map_head_is_the_head_on_pooled_maps_and_augments_them_only_while_training(pooling):
    clf = build_classifier(
        make_config("dropout20", backbone="mobilenet", weights="none", image_size=64, pooling=pooling), 3
    )
    x = np.random.default_rng(0).integers(0, 255, (4, 64, 64, 3)).astype("float32")
    maps = clf.map_model.predict(x, verbose=0)
    assert maps.shape == (4, 2, 2, 1024)
    np.testing.assert_allclose(
        clf.map_head_model.predict(maps, verbose=0), clf.model.predict(x, verbose=0), atol=1e-6
    )
    assert "augment_maps" in [layer.name for layer in clf.map_head_model.layers]
    steady = build_classifier(
        make_config(
            "dropout20",
            backbone="mobilenet",
            weights="none",
            image_size=224,
            pooling=pooling,
            dropout=0.0,
            dense_units=[8],
        ),
        3,
    )
    maps_7x7 = np.random.default_rng(2).random((4, 7, 7, 1024)).astype("float32")
    inference = np.asarray(steady.map_head_model(maps_7x7, training=False))
    assert not np.allclose(steady.map_head_model(maps_7x7, training=True), inference, atol=1e-4)  # augmented
    np.testing.assert_allclose(steady.map_head_model(maps_7x7, training=False), inference, atol=1e-6)


def test_map_augmentation_is_the_keras_layers_on_the_maps_for_the_same_draws():
    maps = np.random.default_rng(1).random((8, 7, 7, 96)).astype("float32")
    cheap = np.asarray(MapAugmentation(seed=3)(maps, training=True))
    direct = np.asarray(keras.Sequential(map_augmentation_layers(seed=3))(maps, training=True))
    np.testing.assert_allclose(cheap, direct, atol=1e-5)
    assert np.abs(cheap - maps).max() > 0.1  # the maps really moved
    assert "augment_flip" not in [
        layer.name for layer in map_augmentation_layers(seed=3)
    ]  # pooling undoes it
    np.testing.assert_array_equal(MapAugmentation(seed=3)(maps, training=False), maps)


def test_augmentation_draws_each_transform_independently():
    """One seed for every layer drew the same numbers for each: every photo turned as much as it
    zoomed, so the augmentation covered a line instead of the whole range."""
    flip, rotation, zoom, shear = augmentation_layers(seed=7)
    photos = np.zeros((500, 8, 8, 3), "float32")
    draws = {
        "flip": np.asarray(flip.get_random_transformation(photos, training=True)["flips"], "float32").ravel(),
        "rotation": np.asarray(rotation.get_random_transformation(photos, training=True)["angle"]).ravel(),
        "zoom": np.asarray(zoom.get_random_transformation(photos, training=True)["height_zoom"]).ravel(),
        "shear": np.asarray(shear.get_random_transformation(photos, training=True)["shear_factor"])[:, 0],
    }
    correlations = np.corrcoef(np.stack(list(draws.values())))
    off_diagonal = np.abs(correlations[~np.eye(len(draws), dtype=bool)])
    assert off_diagonal.max() < 0.2, dict(zip(draws, correlations.round(2).tolist()))


def test_augment_cache_must_be_views_or_maps():
    assert make_config("dropout20").augment_cache == "maps"
    with pytest.raises(FlowerError, match="views or maps. Received: augment_cache='pixels'"):
        make_config("dropout20", augment_cache="pixels")


@pytest.mark.parametrize(
    "mode, pixel, expected",
    [
        ("rescale", (255, 0, 51), (1.0, 0.0, 0.2)),
        ("tf", (255, 0, 127.5), (1.0, -1.0, 0.0)),
        ("caffe", (123.68, 116.779, 103.939), (0.0, 0.0, 0.0)),
        ("caffe", (200, 100, 50), (50 - 103.939, 100 - 116.779, 200 - 123.68)),
        ("none", (7, 8, 9), (7, 8, 9)),
    ],
)
def test_preprocessing_modes(mode, pixel, expected):
    out = Preprocess(mode)(np.array([[[pixel]]], dtype="float32"))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out)[0, 0, 0], expected, rtol=1e-5, atol=1e-5)


def test_saved_model_loads_in_safe_mode_with_identical_predictions(tmp_path):
    from flower_core.store.runs import load_run_model

    clf = build_classifier(make_config("batchnorm", backbone="mobilenet", weights="none", image_size=64), 4)
    clf.model.save(tmp_path / "model.keras")
    (tmp_path / "config.json").write_text("{}")
    loaded = load_run_model(tmp_path)
    x = np.random.default_rng(1).integers(0, 255, (2, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), clf.model.predict(x, verbose=0), atol=1e-6)


@pytest.mark.parametrize(
    "backbone, blocks, last",
    [
        ("vgg16", 1, {"block5_conv1", "block5_conv2", "block5_conv3"}),
        ("mobilenet", 1, {"conv_dw_13", "conv_pw_13"}),
        ("resnet50", 1, None),
    ],
)
def test_fine_tuning_unfreezes_only_the_last_blocks_and_keeps_batchnorm_frozen(backbone, blocks, last):
    clf = build_classifier(make_config("batchnorm", backbone=backbone, weights="none", image_size=64), 5)
    set_fine_tuning(clf, backbone, 0)
    unfrozen = set(set_fine_tuning(clf, backbone, blocks))
    if last is not None:
        assert unfrozen == last
    assert unfrozen and all(
        get_backbone(backbone).block_of(n) == get_backbone(backbone).block_of(sorted(unfrozen)[0])
        for n in unfrozen
    )
    batchnorm = [layer for layer in clf.model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert any(layer.name.startswith("head_bn") for layer in batchnorm)
    assert not any(layer.trainable for layer in batchnorm)
    assert len(set_fine_tuning(clf, backbone, 2)) > len(unfrozen)


def test_random_init_backbone_trains_from_scratch_and_imagenet_stays_frozen(tmp_path):
    scratch = build_classifier(make_config("base", backbone="mobilenet", weights="none", image_size=64), 5)
    assert scratch.model.get_layer("conv_pw_13").trainable
    weights = tmp_path / "random_mobilenet.weights.h5"
    keras.applications.MobileNet(include_top=False, weights=None, input_shape=(64, 64, 3)).save_weights(
        weights
    )
    frozen = build_classifier(
        make_config("base", backbone="mobilenet", weights=str(weights), image_size=64), 5
    )
    assert not frozen.model.get_layer("conv_pw_13").trainable
    assert frozen.model.get_layer("head_dense1").trainable


def test_missing_imagenet_weights_offline_is_one_clear_message():
    inputs = keras.Input((64, 64, 3))
    with pytest.raises(FlowerError) as info:
        build_backbone("vgg16", "imagenet", inputs, 64)
    message = str(info.value)
    assert "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5" in message and "FLOWER_WEIGHTS_DIR" in message
    assert "\n" not in message


def test_missing_weights_path_is_a_clear_error(tmp_path):
    with pytest.raises(FlowerError, match="weights file not found"):
        build_backbone("mobilenet", str(tmp_path / "nope.h5"), keras.Input((64, 64, 3)), 64)


def test_every_backbone_has_a_real_target_layer():
    for name, backbone in BACKBONES.items():
        clf = build_classifier(make_config("base", backbone=name, weights="none", image_size=96), 2)
        assert clf.model.get_layer(backbone.target_layer) is not None, name


@pytest.mark.real_data
@needs_mobilenet_weights
def test_packaged_mobilenet_weights_win_over_a_weights_dir_and_match_keras_file(monkeypatch):
    monkeypatch.setenv("FLOWER_WEIGHTS_DIR", str(WEIGHTS_DIR))
    assert weights_status("mobilenet")["found"].endswith("retrained_graph.pb")
    assert weights_status("vgg16")["found"] is None
    backbone = build_backbone("mobilenet", "imagenet", keras.Input((128, 128, 3)), 128)
    reference = keras.applications.MobileNet(
        include_top=False, weights=str(MOBILENET_NO_TOP), input_shape=(128, 128, 3)
    )
    np.testing.assert_array_equal(
        backbone.get_layer("conv1").get_weights()[0], reference.get_layer("conv1").get_weights()[0]
    )
