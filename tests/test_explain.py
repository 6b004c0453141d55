"""The Grad-CAM family on the transfer model: every method on every backbone, the overlay, the
faithfulness score, and a pointing game after a short training on a pretrained MobileNet."""

from __future__ import annotations

import io
import json

import cv2
import keras
import numpy as np
import pytest
from PIL import Image

from flower_core.config import make_config
from flower_core.errors import FlowerError
from flower_core.explain import (
    METHODS,
    explain_image,
    explain_path,
    faithfulness,
    overlay_heatmap,
    preprocessed_view,
)
from flower_core.explain.faithfulness import REMOVE_FRACTION
from flower_core.models.backbone_specs import BACKBONES
from flower_core.models.classifier import build_classifier

from .conftest import MOBILENET_NO_TOP, needs_mobilenet_weights

CLASSES = ["daisy", "rose", "tulip"]
_MODELS: dict[str, keras.Model] = {}


def _photo(width=70, height=50, seed=0) -> bytes:
    array = np.random.default_rng(seed).integers(0, 256, (height, width, 3), np.uint8)
    array[10:30, 20:45] = (250, 220, 30)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


def _model(backbone: str) -> keras.Model:
    """A random-init classifier as trained: augmentation, preprocessing, flat backbone, head."""
    if backbone not in _MODELS:
        config = make_config("dropout20", backbone=backbone, weights="none", image_size=64, dense_units=[8])
        _MODELS[backbone] = build_classifier(config, len(CLASSES)).model
    return _MODELS[backbone]


# An untrained model whose classes all score alike on the photo (MobileNet's and the
# EfficientNet-Lites' here) gives no method anything to show, and these two give Score-CAM a flat
# map too (measured). Every other map must have a peak, so a method that returns a flat or
# all-zero map fails here; `test_cam_known_answer.py` checks where the peak is, on a trained model.
_FLAT_AT_RANDOM_INIT = {("mobilenet_v2", "scorecam"), ("efficientnet_b0", "scorecam")}


@pytest.mark.slow
@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_every_method_on_every_backbone(backbone, method):
    model = _model(backbone)
    first = explain_image(model, _photo(), method, class_names=CLASSES)
    again = explain_image(model, _photo(), method, class_names=CLASSES)
    assert first.layer == BACKBONES[backbone].target_layer
    assert first.heatmap.dtype == np.float32 and first.heatmap.shape == (50, 70)
    assert 0.0 <= first.heatmap.min() and first.heatmap.max() <= 1.0
    classes_alike = np.ptp(first.probabilities) < 1e-6
    if not classes_alike and (backbone, method) not in _FLAT_AT_RANDOM_INIT:
        assert first.heatmap.max() == 1.0 and first.heatmap.min() == 0.0  # a peak, not flat
    assert first.model_heatmap.shape == (64, 64) and first.model_view.shape == (64, 64, 3)
    np.testing.assert_array_equal(first.heatmap, again.heatmap)
    assert first.faithfulness == again.faithfulness
    assert -1.0 <= first.faithfulness["score"] <= 1.0
    assert first.predicted_class in CLASSES
    assert first.overlay().shape == (50, 70, 3)


def test_named_layer_and_named_class():
    model = _model("vgg16")
    coarse = explain_image(model, _photo(), "gradcam", class_names=CLASSES)
    finer = explain_image(
        model, _photo(), "gradcam", layer="block4_conv3", class_names=CLASSES, target_class="tulip"
    )
    assert finer.layer == "block4_conv3" and finer.target_class == "tulip"
    assert finer.target_index == 2 and coarse.target_index == coarse.predicted_index
    assert finer.summary()["target_probability"] == pytest.approx(float(finer.probabilities[2]))


def test_layer_inside_a_residual_block_uses_the_whole_graph():
    """The head cannot be cut out at a layer a skip connection bypasses: no 'Graph disconnected'."""
    explanation = explain_image(_model("resnet50"), _photo(), "gradcam++", layer="conv5_block3_1_conv")
    assert explanation.heatmap.shape == (50, 70)


def test_unknown_layer_class_and_method_list_the_choices():
    model = _model("vgg16")
    with pytest.raises(FlowerError, match="block5_conv3.*Received: layer='fc9'"):
        explain_image(model, _photo(), layer="fc9")
    with pytest.raises(FlowerError, match="daisy, rose, tulip.*Received: target_class='lily'"):
        explain_image(model, _photo(), target_class="lily", class_names=CLASSES)
    with pytest.raises(FlowerError, match="gradcam, gradcam\\+\\+, scorecam"):
        explain_image(model, _photo(), method="lime")


def test_each_method_carries_its_own_name_and_label():
    """A method is one class: its key and the label the app shows are set on it, not elsewhere."""
    for key, method in METHODS.items():
        assert method.name == key and {"name", "label"} <= set(vars(method)), method
    assert [method.label for method in METHODS.values()] == ["Grad-CAM", "Grad-CAM++", "Score-CAM"]


def test_unreadable_photo_is_a_one_line_error():
    with pytest.raises(FlowerError, match="not an image"):
        explain_image(_model("mobilenet"), b"<svg/>")


def test_overlay_opacity_and_checks():
    photo = np.full((4, 6, 3), 100, np.uint8)
    heatmap = np.linspace(0, 1, 24, dtype=np.float32).reshape(4, 6)
    np.testing.assert_array_equal(overlay_heatmap(photo, heatmap, alpha=0.0), photo)
    assert not np.array_equal(overlay_heatmap(photo, heatmap, alpha=1.0), photo)
    assert overlay_heatmap(photo, heatmap[:2, :3]).shape == (4, 6, 3)
    with pytest.raises(ValueError, match="Received: alpha=1.5"):
        overlay_heatmap(photo, heatmap, alpha=1.5)
    with pytest.raises(ValueError, match="values in \\[0, 1\\]"):
        overlay_heatmap(photo, heatmap * 3)


def test_preprocessed_view_shows_what_the_backbone_gets():
    pixels = np.zeros((64, 64, 3), np.uint8)
    pixels[..., 0] = 255  # pure red
    view = preprocessed_view(_model("vgg16"), pixels)  # caffe: BGR and mean-centred
    assert view.shape == (64, 64, 3) and view.dtype == np.uint8
    assert view[0, 0, 0] == 255  # shown in RGB again, red stays the brightest channel


def _quadrant_model() -> keras.Model:
    """p(class 1) rises with the brightness of the top-left quadrant only."""
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Cropping2D(((0, 16), (0, 16)))(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    dense = keras.layers.Dense(2, activation="softmax")
    outputs = dense(x)
    dense.set_weights([np.array([[0.0, 0.01]] * 3, np.float32), np.array([6.0, 0.0], np.float32)])
    return keras.Model(inputs, outputs)


def test_faithfulness_rewards_maps_on_the_evidence():
    model, pixels = _quadrant_model(), np.full((32, 32, 3), 200, np.uint8)
    pixels[:16, :16] = 255
    on_evidence = np.zeros((32, 32), np.float32)
    on_evidence[:16, :16] = 1.0
    good = faithfulness(model, pixels, on_evidence, target=1, grid=(4, 4))
    bad = faithfulness(model, pixels, 1.0 - on_evidence, target=1, grid=(4, 4))
    assert good["cam_drop"] > good["random_drop"] > bad["cam_drop"]
    assert good["score"] > 0.1 and bad["score"] < 0.0
    assert good == faithfulness(model, pixels, on_evidence, target=1, grid=(4, 4))


def test_explain_path_on_a_saved_run_with_augmentation(tiny_run_factory, tmp_path):
    """The model as trained and saved: augmentation layers inside, reloaded in safe mode."""
    run = tiny_run_factory("augmented", preset="dropout20")
    image = tmp_path / "upload.png"
    image.write_bytes(_photo(90, 60))
    result = explain_path(run, image, method="gradcam++", out=tmp_path / "h.png", target_class="rose")
    assert result["heatmap_path"] == str(tmp_path / "h.png") and result["target_class"] == "rose"
    assert Image.open(result["heatmap_path"]).size == (90, 60)
    assert Image.open(result["model_view_path"]).size == (64, 64)
    assert isinstance(result["faithfulness"], float)
    json.dumps(result)


def test_cli_explain_json(tiny_classifier_run, tmp_path, capsys):
    from flower_core.cli import main

    image = tmp_path / "photo.png"
    image.write_bytes(_photo())
    out = tmp_path / "heat.png"
    assert (
        main(
            [
                "explain",
                "--run",
                str(tiny_classifier_run),
                str(image),
                "--method",
                "scorecam",
                "--out",
                str(out),
                "--json",
            ]
        )
        == 0
    )
    payload = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert payload["heatmap_path"] == str(out) and out.is_file()
    assert payload["predicted_class"] in CLASSES and "faithfulness" in payload
    assert main(["explain", "--run", str(tiny_classifier_run), str(image), "--layer", "nope"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: unknown layer") and "\n" not in error


def test_faithfulness_fills_what_it_removes_with_the_photos_mean_colour():
    """The fill is the documented one (`faithfulness`, step 2). The model's class scores are the
    photo's mean red, green and blue (a fourth class scores 0), so the confidences after the
    removal give back the colour the removed pixels were given."""
    inputs = keras.Input((20, 20, 3))
    dense = keras.layers.Dense(4, activation="softmax")
    model = keras.Model(inputs, dense(keras.layers.GlobalAveragePooling2D()(inputs)))
    dense.set_weights([np.eye(3, 4, dtype=np.float32) / 255, np.zeros(4, np.float32)])
    red, blue = np.array([240.0, 20.0, 20.0]), np.array([20.0, 60.0, 240.0])
    pixels = np.zeros((20, 20, 3), np.float32)
    pixels[:, :10], pixels[:, 10:] = red, blue
    heatmap = np.zeros((20, 20), np.float32)
    heatmap[:, :10] = 1.0  # the removed pixels are all red
    after = [faithfulness(model, pixels, heatmap, target=c, grid=(2, 2)) for c in range(3)]
    kept = np.array([row["confidence"] - row["cam_drop"] for row in after])
    means_after = 255 * np.log(kept / (1 - kept.sum()))
    fill = red + (means_after - pixels.mean(axis=(0, 1))) / REMOVE_FRACTION
    mean_colour = (red + blue) / 2
    np.testing.assert_allclose(
        fill,
        mean_colour,
        atol=0.5,
        err_msg=f"the removed pixels were filled with {fill.round(1)}, not the photo's mean {mean_colour}",
    )


def _pointing_hit(heatmap: np.ndarray, mask: np.ndarray, tolerance: int) -> tuple[bool, float]:
    """Whether the peak lies on the mask grown by `tolerance` px, and that grown mask's area."""
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * tolerance + 1, 2 * tolerance + 1))
    grown = cv2.dilate(mask.astype(np.uint8), disc).astype(bool) if tolerance else mask
    peak = np.unravel_index(np.argmax(heatmap), heatmap.shape)
    return bool(grown[peak]), float(grown.mean())


@pytest.mark.real_data
@needs_mobilenet_weights
def test_pointing_game_after_short_training(synthetic_dataset):
    """Grad-CAM's peak falls on the flower far more often than a random point would.

    A random peak hits with probability equal to the mask's area share, the baseline. The
    standard pointing game (Zhang et al., 2016) counts a hit within 15 px of the object at
    224 px; here 7 % of the photo's side.
    """
    from flower_core.data.dataset import scan_dataset
    from flower_core.data.images import model_input
    from flower_core.data.synthetic import load_mask

    dataset = scan_dataset(synthetic_dataset)
    config = make_config(
        "base",
        backbone="mobilenet",
        weights=str(MOBILENET_NO_TOP),
        image_size=224,
        pooling="avg",
        dense_units=[64],
    )
    classifier = build_classifier(config, len(dataset.class_names))
    order = np.random.default_rng(0).permutation(len(dataset.files))
    train, test = order[: len(order) * 2 // 3], order[len(order) * 2 // 3 :]
    pixels = np.stack([model_input(synthetic_dataset / f, 224) for f in dataset.files])
    features = classifier.feature_model.predict(pixels.astype(np.float32), verbose=0)
    labels = np.asarray(dataset.labels)
    classifier.head_model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    classifier.head_model.fit(features[train], labels[train], epochs=40, batch_size=16, verbose=0)
    results = {"strict": [], "tolerant": [], "faithfulness": []}
    for index in test:
        relpath = dataset.files[index]
        explanation = explain_image(
            classifier.model, synthetic_dataset / relpath, "gradcam", target_class=int(labels[index])
        )
        mask = load_mask(synthetic_dataset, relpath, size=explanation.heatmap.shape[0])
        results["strict"].append(_pointing_hit(explanation.heatmap, mask, 0))
        results["tolerant"].append(_pointing_hit(explanation.heatmap, mask, round(0.07 * mask.shape[0])))
        results["faithfulness"].append(explanation.faithfulness["score"])
    rates = {name: np.mean(values, axis=0) for name, values in results.items()}
    print(
        f"pointing game on {len(test)} photos: strict hit rate {rates['strict'][0]:.2f} "
        f"(random {rates['strict'][1]:.2f}), within 7% {rates['tolerant'][0]:.2f} "
        f"(random {rates['tolerant'][1]:.2f}); mean faithfulness {rates['faithfulness']:.3f}"
    )
    assert rates["tolerant"][0] >= 0.6 and rates["tolerant"][0] >= rates["tolerant"][1] + 0.3
    assert rates["strict"][0] >= 2 * rates["strict"][1]
    assert rates["faithfulness"] > 0.05


def test_faithfulness_verdicts_say_in_plain_words_what_the_score_means():
    from flower_core.explain.faithfulness import CHANCE_BAND, VERDICTS, verdict

    assert verdict(0.3) == VERDICTS["faithful"] and verdict(-0.3) == VERDICTS["unfaithful"]
    assert verdict(CHANCE_BAND) == verdict(0.0) == VERDICTS["chance"]
    assert "relies on other parts of the photo" in VERDICTS["unfaithful"]


def test_a_cam_method_registers_itself_and_must_name_itself():
    from flower_core.explain import METHODS, BaseCAM

    assert {cls.__module__.rsplit(".", 1)[1] for cls in METHODS.values()} == {
        "gradcam",
        "gradcam_plus_plus",
        "score_cam",
    }
    with pytest.raises(TypeError, match="sets its own name and label"):

        class Unnamed(BaseCAM):
            name = "unnamed"

    assert "unnamed" not in METHODS


def test_score_cam_reports_each_batch_of_masked_photos_and_gradcam_its_end():
    from flower_core.explain.score_cam import BATCH_SIZE, MAX_CHANNELS

    model, calls = _model("vgg16"), []
    explain_image(model, _photo(), "scorecam", progress=lambda done, total: calls.append((done, total)))
    batches = -(-(MAX_CHANNELS + 1) // BATCH_SIZE)  # the chosen channels' masks and a black photo
    assert calls == [(done, batches) for done in range(1, batches + 1)] + [(1, 1)]
    calls.clear()
    explain_image(model, _photo(), "gradcam", progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 1)]


def test_a_map_that_does_no_better_than_one_random_draw_reads_about_chance():
    """Known answer: the model sees only an 8 x 8 bright corner. A map on half of it removes
    less than the luckiest random blob does (one of the four draws covers the corner), so it
    reads as chance, though its score is well above `CHANCE_BAND`; a map on the whole corner
    beats every draw."""
    from flower_core.explain.faithfulness import CHANCE_BAND, VERDICTS, verdict

    inputs = keras.Input((32, 32, 3))
    dense = keras.layers.Dense(2, activation="softmax")
    corner = keras.layers.GlobalAveragePooling2D()(keras.layers.Cropping2D(((0, 24), (0, 24)))(inputs))
    model = keras.Model(inputs, dense(corner))
    dense.set_weights([np.array([[0.0, 0.01]] * 3, np.float32), np.array([5.5, 0.0], np.float32)])
    pixels = np.full((32, 32, 3), 100, np.float32)
    pixels[:8, :8] = 255
    half, whole = np.zeros((32, 32), np.float32), np.zeros((32, 32), np.float32)
    half[:4, :8], whole[:8, :8] = 1.0, 1.0
    half[16:, 16:] = whole[16:, 16:] = 0.5
    partial = faithfulness(model, pixels, half, target=1, grid=(4, 4))
    low, high = partial["random_band"]
    assert CHANCE_BAND < partial["score"] < high and low < 0
    assert verdict(partial["score"], partial["random_band"]) == VERDICTS["chance"]
    full = faithfulness(model, pixels, whole, target=1, grid=(4, 4))
    assert full["score"] > full["random_band"][1]
    assert verdict(full["score"], full["random_band"]) == VERDICTS["faithful"]
