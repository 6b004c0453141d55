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
        rows.append({"lower": float(edges[b]), "upper": float(edges[b + 1]), "confidence": mean_conf,
                     "accuracy": accuracy, "count": int(members.sum())})
    return {"ece": float(ece), "bins": rows}
