"""Known answers for every CAM method: on a model trained in the test, the heatmap for a class
points inside that class's flower.

The photos are 2 x 2 canvases of four held-out synthetic photos of four different classes, with
their masks. Explaining each of the four classes in turn must move the map's peak onto that
class's flower: a map that ignores the target (channel weights all equal), a random map, an
inverted one or a flat one hits a given flower about once in four at best.

The quick tier has its own known answer: a two-class model built with known weights (one
channel sees red, the other blue) on a photo half red, half blue, where each class's evidence
is exactly its colour's half.
"""

from __future__ import annotations

import io

import keras
import numpy as np
import pytest
from PIL import Image

from flower_core.data.dataset import scan_dataset
from flower_core.data.images import model_input
from flower_core.data.synthetic import load_mask
from flower_core.explain import METHODS, explain_image
from flower_core.models.classifier import HEAD_POOL, PREDICTIONS

from .conftest import CAM_IMAGE_SIZE

CANVASES = 8
MIN_HIT_RATE = 0.5


def points_inside(heatmap: np.ndarray, mask: np.ndarray) -> bool:
    """The pointing game: the map's peak lies on the mask. A flat map points nowhere."""
    if float(heatmap.max()) - float(heatmap.min()) <= 1e-6:
        return False
    return bool(mask[np.unravel_index(np.argmax(heatmap), heatmap.shape)])


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def held_out(synthetic_dataset):
    """The session's synthetic photos (unseen in training) at the model's size, with masks."""
    dataset = scan_dataset(synthetic_dataset)
    pixels = np.stack([model_input(synthetic_dataset / f, CAM_IMAGE_SIZE) for f in dataset.files])
    masks = np.stack([load_mask(synthetic_dataset, f, size=CAM_IMAGE_SIZE) for f in dataset.files])
    return pixels, np.asarray(dataset.labels), masks


@pytest.fixture(scope="module")
def canvases(held_out):
    """2 x 2 canvases of photos of four different classes: (PNG bytes, {class: canvas mask})."""
    pixels, labels, masks = held_out
    rng, side = np.random.default_rng(0), CAM_IMAGE_SIZE
    out = []
    for _ in range(CANVASES):
        canvas = np.zeros((2 * side, 2 * side, 3), np.uint8)
        class_masks = {}
        for quadrant, label in enumerate(rng.permutation(labels.max() + 1)[:4]):
            index = rng.choice(np.flatnonzero(labels == label))
            rows = slice(quadrant // 2 * side, (quadrant // 2 + 1) * side)
            cols = slice(quadrant % 2 * side, (quadrant % 2 + 1) * side)
            canvas[rows, cols] = pixels[index]
            class_masks[int(label)] = np.zeros(canvas.shape[:2], bool)
            class_masks[int(label)][rows, cols] = masks[index]
        out.append((_png(canvas), class_masks))
    return out


def _hit_rate(heatmaps_and_masks) -> float:
    return float(np.mean([points_inside(heatmap, mask) for heatmap, mask in heatmaps_and_masks]))


@pytest.mark.slow
def test_the_cam_model_classifies_well(trained_cam_models, held_out):
    model, _ = trained_cam_models
    pixels, labels, _ = held_out
    probabilities = model.predict(pixels.astype(np.float32), verbose=0)
    assert np.mean(probabilities.argmax(axis=1) == labels) >= 0.8


@pytest.mark.slow
@pytest.mark.parametrize("method", list(METHODS))
def test_each_method_points_at_the_flower_of_its_class(method, trained_cam_models, canvases):
    _, canvas_model = trained_cam_models
    cases = []
    for photo, class_masks in canvases:
        for label, mask in class_masks.items():
            explanation = explain_image(
                canvas_model, photo, method, target_class=label, with_faithfulness=False
            )
            cases.append((explanation.heatmap, mask))
    baseline = np.mean([mask.mean() for _, mask in cases])
    rate = _hit_rate(cases)
    print(
        f"{method}: peak on the target's flower in {rate:.2f} of {len(cases)} (a random peak: {baseline:.2f})"
    )
    assert rate >= MIN_HIT_RATE


def test_the_pointing_game_fails_a_flat_map(canvases):
    """The check above cannot pass on a flat map, whatever its value; a map peaked on each
    target's flower passes it."""
    masks = [mask for _, class_masks in canvases for mask in class_masks.values()]
    for value in (0.0, 0.5, 1.0):
        flat = np.full(masks[0].shape, value, np.float32)
        assert _hit_rate((flat, mask) for mask in masks) == 0.0
    assert _hit_rate((mask.astype(np.float32), mask) for mask in masks) == 1.0


COLOUR_CLASSES = ["red", "blue"]
COLOUR_SIDE, RED_COLUMNS = 16, 10  # red on the left 10 columns, so red is the predicted class


def _colour_model() -> keras.Model:
    """Known weights: channel 0 of the `colours` layer is the photo's red, channel 1 its blue;
    class `red` scores the mean of channel 0, class `blue` the mean of channel 1."""
    inputs = keras.Input((COLOUR_SIDE, COLOUR_SIDE, 3))
    colours = keras.layers.Conv2D(2, 1, use_bias=False, name="colours")
    x = keras.layers.GlobalAveragePooling2D(name=HEAD_POOL)(colours(inputs))
    predictions = keras.layers.Dense(2, activation="softmax", name=PREDICTIONS)
    model = keras.Model(inputs, predictions(x))
    colours.set_weights([np.array([[[[1, 0], [0, 0], [0, 1]]]], np.float32) / 255])
    predictions.set_weights([4 * np.eye(2, dtype=np.float32), np.zeros(2, np.float32)])
    return model


@pytest.mark.parametrize("method", list(METHODS))
def test_each_method_explains_the_class_asked_for_not_the_predicted_one(method):
    pixels = np.zeros((COLOUR_SIDE, COLOUR_SIDE, 3), np.uint8)
    pixels[:, :RED_COLUMNS, 0] = 255
    pixels[:, RED_COLUMNS:, 2] = 255
    regions = {"red": np.zeros(pixels.shape[:2], bool)}
    regions["red"][:, :RED_COLUMNS] = True
    regions["blue"] = ~regions["red"]
    model, photo = _colour_model(), _png(pixels)
    for name in COLOUR_CLASSES:
        explanation = explain_image(
            model, photo, method, target_class=name, class_names=COLOUR_CLASSES, with_faithfulness=False
        )
        assert explanation.predicted_class == "red"
        peak = tuple(map(int, np.unravel_index(np.argmax(explanation.model_heatmap), pixels.shape[:2])))
        assert points_inside(explanation.model_heatmap, regions[name]), (
            f"{method}: the map asked for class {name!r} peaks at {peak}, outside {name}'s half: "
            "it does not explain the requested class"
        )
