"""Expected calibration error and the reliability curve, checked by hand."""

import numpy as np
import pytest

from flower_core.evaluation.calibration import confidence_threshold, reliability


def test_hand_computed_ece_and_bins():
    probabilities = [[0.9, 0.1], [0.95, 0.05], [0.6, 0.4], [0.55, 0.45]]
    labels = [0, 1, 1, 1]
    result = reliability(probabilities, labels, bins=4)
    low, high = result["bins"]
    assert (low["count"], low["accuracy"], low["confidence"]) == (2, 0.0, pytest.approx(0.575))
    assert (high["count"], high["accuracy"], high["confidence"]) == (2, 0.5, pytest.approx(0.925))
    assert result["ece"] == pytest.approx(0.5 * 0.575 + 0.5 * 0.425)


def test_perfectly_calibrated_predictions_have_near_zero_ece():
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.5, 1.0, 20000)
    correct = rng.uniform(size=20000) < confidence
    labels = np.where(correct, 0, 1)
    probabilities = np.stack([confidence, 1 - confidence], axis=1)
    assert reliability(probabilities, labels)["ece"] < 0.02


def test_overconfident_model_has_large_ece_and_bad_bins_are_refused():
    probabilities = np.tile([0.99, 0.01], (100, 1))
    labels = np.r_[np.zeros(50, int), np.ones(50, int)]
    assert reliability(probabilities, labels)["ece"] == pytest.approx(0.49)
    with pytest.raises(ValueError, match="Received: bins=0"):
        reliability(probabilities, labels, bins=0)


def test_threshold_is_the_lowest_confidence_that_keeps_the_target_accuracy():
    # ranked by confidence: right, right, wrong, right, wrong -> running accuracy 1, 1, .67, .75, .6
    p = [[0.95, 0.05], [0.9, 0.1], [0.3, 0.7], [0.65, 0.35], [0.55, 0.45]]
    result = confidence_threshold(p, [0, 0, 0, 0, 1], target=0.75)
    assert result["threshold"] == 0.65 and result["coverage"] == 0.8 and result["accuracy_above"] == 0.75
    assert confidence_threshold(p, [0, 0, 0, 0, 1], target=0.9)["threshold"] == 0.9


def test_a_model_that_never_reaches_the_target_is_unsure_of_everything():
    result = confidence_threshold([[0.9, 0.1], [0.8, 0.2]], [1, 1], target=0.5)
    assert result == {
        "threshold": 1.0,
        "target_accuracy": 0.5,
        "val_photos": 2,
        "coverage": 0.0,
        "accuracy_above": None,
    }


def test_tied_confidences_are_not_split():
    result = confidence_threshold([[0.8, 0.2], [0.8, 0.2], [0.6, 0.4]], [0, 1, 0], target=0.75)
    assert result["threshold"] == 1.0  # the two 0.8 photos together are right half the time


def test_bad_threshold_inputs_say_what_was_received():
    with pytest.raises(ValueError, match="Received: target=1.5"):
        confidence_threshold([[0.9, 0.1]], [0], target=1.5)
    with pytest.raises(ValueError, match="no validation predictions"):
        confidence_threshold(np.zeros((0, 2)), [])
