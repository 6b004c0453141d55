"""Calibration: does a predicted confidence of 0.8 mean right 80% of the time?

The expected calibration error (ECE) and the reliability curve come from the same equal-width
confidence bins; `predict`'s low-confidence threshold is set from such a curve (RESULTS.md).
"""

from __future__ import annotations

import numpy as np


def reliability(probabilities, labels, bins: int = 10) -> dict:
    """Reliability curve and expected calibration error of top-1 predictions.

    Args:
        probabilities: (n, classes) predicted probabilities.
        labels: (n,) true labels.
        bins: equal-width confidence bins over [0, 1]. Defaults to `10`.

    Returns:
        `{"ece": float, "bins": [{"lower", "upper", "confidence", "accuracy", "count"}]}`;
        empty bins are left out. ECE is the count-weighted mean |accuracy - confidence|.

    Example:

    >>> reliability([[0.9, 0.1], [0.6, 0.4]], [0, 1])["ece"]
    0.35
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels, dtype=int)
    if bins < 1:
        raise ValueError(f"bins must be at least 1. Received: bins={bins}")
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    rows, ece = [], 0.0
    for b in range(bins):
        members = which == b
        if not members.any():
            continue
        mean_conf, accuracy = float(confidence[members].mean()), float(correct[members].mean())
        ece += members.sum() / len(labels) * abs(accuracy - mean_conf)
        rows.append(
            {
                "lower": float(edges[b]),
                "upper": float(edges[b + 1]),
                "confidence": mean_conf,
                "accuracy": accuracy,
                "count": int(members.sum()),
            }
        )
    return {"ece": float(ece), "bins": rows}


# The accuracy a run must keep on the validation photos it is sure of: below its threshold the
# model "is unsure". 0.95 keeps the `best` preset's flag on its weakest photos (RESULTS.md).
TARGET_ACCURACY = 0.95


def confidence_threshold(probabilities, labels, target: float = TARGET_ACCURACY) -> dict:
    """The top probability from which a run's own validation predictions are right at least
    `target` of the time: the run's "sure" threshold, chosen on data it did not train on.

    The validation photos are ranked by top probability; the threshold is the lowest top
    probability such that the photos at or above it are right at least `target` of the time
    (the largest such set). A model that never reaches `target` gets threshold 1.0: unsure of
    everything.

    Args:
        probabilities: (n, classes) predicted probabilities of the validation photos.
        labels: (n,) their true labels.
        target: the accuracy to keep. Defaults to `TARGET_ACCURACY` (0.95).

    Returns:
        `{"threshold", "target_accuracy", "val_photos", "coverage", "accuracy_above"}`: coverage
        is the share of validation photos at or above the threshold, `accuracy_above` their
        accuracy (`None` when none is).

    Example:

    >>> p = [[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.55, 0.45]]
    >>> confidence_threshold(p, [0, 0, 1, 0], target=0.9)["threshold"]
    0.8
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels, dtype=int)
    if not 0 < target <= 1:
        raise ValueError(f"target must be in (0, 1]. Received: target={target}")
    if len(labels) == 0:
        raise ValueError("no validation predictions to choose a threshold from")
    confidence = probabilities.max(axis=1)
    order = np.argsort(-confidence, kind="stable")
    correct = (probabilities.argmax(axis=1) == labels)[order]
    accuracy = np.cumsum(correct) / np.arange(1, len(labels) + 1)
    # only cut between different confidences: tied photos are all sure or all unsure
    cuts = np.r_[confidence[order][1:] < confidence[order][:-1], True]
    kept = np.flatnonzero((accuracy >= target - 1e-12) & cuts)
    if not len(kept):
        return {
            "threshold": 1.0,
            "target_accuracy": target,
            "val_photos": int(len(labels)),
            "coverage": 0.0,
            "accuracy_above": None,
        }
    k = kept[-1]
    return {
        "threshold": float(confidence[order][k]),
        "target_accuracy": target,
        "val_photos": int(len(labels)),
        "coverage": float((k + 1) / len(labels)),
        "accuracy_above": float(accuracy[k]),
    }
