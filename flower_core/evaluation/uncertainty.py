"""How much an accuracy on a few photos can be trusted: its 95% Wilson interval, and whether two
accuracies differ by more than that noise.

An accuracy on n test photos moves in steps of 1/n (5 points on 20 photos), and the photos
drawn for the test set move it further: the interval says by how much. Wilson's interval is
used rather than the textbook `p ± 1.96 sqrt(p(1-p)/n)`, which collapses to a single point at
0% or 100% and spills outside [0, 1] on small sets.
"""

from __future__ import annotations

import math
from statistics import NormalDist

CONFIDENCE = 0.95
# How tables and messages name the interval.
CI_LABEL = f"{CONFIDENCE:.0%} CI"
_Z = NormalDist().inv_cdf(0.5 + CONFIDENCE / 2)


def wilson_interval(accuracy: float, n: int) -> tuple[float, float]:
    """The 95% Wilson score interval of an accuracy measured on `n` photos.

    Args:
        accuracy: the fraction right, 0 to 1 (a mean over seeds is read the same way).
        n: how many photos it was measured on.

    Returns:
        `(low, high)`, both within [0, 1]; `(0.0, 1.0)` when `n` is 0.

    Example:

    >>> [round(x, 3) for x in wilson_interval(0.9, 20)]
    [0.699, 0.972]
    """
    if n <= 0:
        return 0.0, 1.0
    z2 = _Z * _Z
    centre = (accuracy + z2 / (2 * n)) / (1 + z2 / n)
    half = _Z / (1 + z2 / n) * math.sqrt(accuracy * (1 - accuracy) / n + z2 / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def within_noise(a: float, b: float, n: int, n_b: int | None = None) -> bool:
    """Whether two accuracies differ by no more than their photos' noise: either one lies inside
    the other's 95% interval (equal ones always do).

    Args:
        a, b: the two accuracies.
        n: the photos `a` was measured on, and `b` too unless `n_b` is given.
        n_b: the photos `b` was measured on, when it was another test set (a run trained again
            on a cleaned dataset splits it anew). Defaults to `None` (`n`).

    Example:

    >>> within_noise(0.90, 0.95, 20), within_noise(0.90, 0.95, 2000), within_noise(0.90, 0.95, 2000, 20)
    (True, False, True)
    """
    if a == b:
        return True
    (a_low, a_high), (b_low, b_high) = wilson_interval(a, n), wilson_interval(b, n if n_b is None else n_b)
    return a_low <= b <= a_high or b_low <= a <= b_high


def interval_range(accuracy: float | None, n: int | None) -> str:
    """`70–97%`: the interval alone, for a narrow table column; `''` when either is unknown."""
    if accuracy is None or not n:
        return ""
    low, high = wilson_interval(accuracy, n)
    return f"{low * 100:.0f}–{high:.0%}"


def interval_text(accuracy: float | None, n: int | None) -> str:
    """`95% CI 70–97% on 20 photos`, or `''` when either is unknown."""
    if accuracy is None or not n:
        return ""
    return f"{CI_LABEL} {interval_range(accuracy, n)} on {n:,} photos"


def accuracy_text(accuracy: float | None, n: int | None, digits: int = 1) -> str:
    """`90.0% (95% CI 70–97% on 20 photos)`: an accuracy with its interval, for tables and lines;
    `–` when unknown, the accuracy alone when `n` is."""
    if accuracy is None:
        return "–"
    interval = interval_text(accuracy, n)
    return f"{accuracy:.{digits}%}" + (f" ({interval})" if interval else "")
