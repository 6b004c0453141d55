"""Which photos of a dataset look mislabelled, duplicated or out of place, from their features.

Label errors are found by confident learning (Northcutt, Jiang and Chuang, "Confident Learning:
Estimating Uncertainty in Dataset Labels", JAIR 2021), written here from the paper: cleanlab, its
reference implementation, is AGPL-3.0. Each photo's class probabilities come from a head that
never saw it (K stratified folds, two passes: `audit_probabilities`); a class's threshold is the
mean probability its own photos give it; a photo counts towards the confident joint under the most
likely class whose threshold it reaches; and, per (given, true) cell off the diagonal, as many
photos as the calibrated joint estimates are flagged, those with the largest margin first
("prune by noise rate"). Outliers are photos whose nearest neighbours in feature space are far
compared with everyone else's (a robust z-score of the mean cosine distance).

A suspect's `score` is how likely its label or place is wrong, in [0, 1], most suspicious first:
for a label error (1 + margin) / 2, the margin being P(likeliest other class) - P(given class),
which ranks confidently wrong labels above photos the heads find merely hard; fixed levels below
label errors for duplicates (`DUPLICATE_SCORES`); for outliers a level growing with their distance.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.neighbors import NearestNeighbors
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import Normalizer

from flower_core.errors import FlowerError

DEFAULT_FOLDS = 5
# The heads' inverse L2 strength, on L2-normalized features.
HEAD_C = 10.0
# Loose enough to stop early: the probabilities' ranking no longer changes.
HEAD_TOL = 1e-3
OUTLIER_NEIGHBOURS = 10
# A photo whose mean distance to its neighbours is this many robust deviations above the median.
OUTLIER_Z = 3.5
# Duplicates under two labels, across the train/val/test split, under one label.
DUPLICATE_SCORES = {"duplicate_labels": 0.5, "duplicate_split": 0.4, "duplicate": 0.3}
OUTLIER_SCORES = (0.25, 0.45)


def check_folds(folds: int, smallest: int | None = None) -> None:
    """Refuse fewer than 2 folds, or more folds than the smallest class has photos."""
    if folds < 2 or (smallest is not None and smallest < folds):
        found = "" if smallest is None else f"; the smallest class has {smallest} photos"
        raise FlowerError(
            f"an audit needs at least 2 folds and as many photos in every class as folds{found}: "
            f"pass another --folds or add photos. Received: folds={folds}"
        )


def make_head(seed: int = 0) -> Pipeline:
    """An audit head, not fitted: logistic regression on L2-normalized features."""
    return make_pipeline(
        Normalizer(), LogisticRegression(C=HEAD_C, tol=HEAD_TOL, max_iter=1000, random_state=seed)
    )


def doubted(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The photos a pass of heads doubts (a boolean mask): a confident-learning issue, or
    another class most probable."""
    issues, _ = find_label_issues(probabilities, labels)
    return issues | (probabilities.argmax(axis=1) != labels)


def out_of_fold_probabilities(
    features: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    folds: int = DEFAULT_FOLDS,
    seed: int = 0,
    left_out: np.ndarray | None = None,
) -> np.ndarray:
    """Each photo's class probabilities from a logistic-regression head (on L2-normalized
    features) trained on the other folds, stratified and seeded; photos marked in `left_out`
    are predicted but never trained on.

    Raises:
        FlowerError: `folds` is below 2, or a class has fewer photos than `folds`.
    """
    labels = np.asarray(labels)
    check_folds(folds, int(np.bincount(labels, minlength=num_classes).min()))
    probabilities = np.zeros((len(labels), num_classes), dtype=np.float64)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train, held in splitter.split(features, labels):
        if left_out is not None:
            train = train[~left_out[train]]
        head = make_head(seed).fit(features[train], labels[train])
        probabilities[np.ix_(held, head.classes_)] = head.predict_proba(features[held])
    return probabilities


def audit_probabilities(
    features: np.ndarray, labels: np.ndarray, num_classes: int, folds: int = DEFAULT_FOLDS, seed: int = 0
) -> np.ndarray:
    """Out-of-fold probabilities in two passes: the second pass's heads leave out of their
    training the photos the first pass doubts (a confident-learning issue, or another class
    most probable), so planted or real label errors pull the heads less."""
    labels = np.asarray(labels)
    first = out_of_fold_probabilities(features, labels, num_classes, folds, seed)
    left_out = doubted(first, labels)
    return out_of_fold_probabilities(features, labels, num_classes, folds, seed, left_out=left_out)


def confident_joint(probabilities: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The confident joint C[given, true] and each photo's confident class (-1: none reached).

    A class's threshold is the mean probability of that class over the photos labelled with it;
    a photo counts under the most probable class whose threshold it reaches.
    """
    num_classes = probabilities.shape[1]
    thresholds = np.array([probabilities[labels == j, j].mean() for j in range(num_classes)])
    above = probabilities >= thresholds[None, :]
    guess = np.where(above, probabilities, -1.0).argmax(axis=1)
    guess[~above.any(axis=1)] = -1
    joint = np.zeros((num_classes, num_classes), dtype=np.int64)
    counted = guess >= 0
    np.add.at(joint, (labels[counted], guess[counted]), 1)
    return joint, guess


def find_label_issues(probabilities: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, int]:
    """Which photos' given labels look wrong (a boolean mask) and how many errors the calibrated
    confident joint estimates in all.

    Per off-diagonal cell (given i, true j), the calibrated count of photos labelled i with the
    largest margin P(j) - P(i) are flagged; a photo whose most probable class is its given one
    is never flagged.
    """
    labels = np.asarray(labels)
    num_classes = probabilities.shape[1]
    joint, _ = confident_joint(probabilities, labels)
    counts = np.bincount(labels, minlength=num_classes)
    row_sums = joint.sum(axis=1, keepdims=True)
    calibrated = np.divide(joint * counts[:, None], row_sums, out=np.zeros(joint.shape), where=row_sums > 0)
    issues = np.zeros(len(labels), dtype=bool)
    for given in range(num_classes):
        members = np.flatnonzero(labels == given)
        for true in range(num_classes):
            count = int(round(calibrated[given, true]))
            if true == given or count == 0:
                continue
            margin = probabilities[members, true] - probabilities[members, given]
            issues[members[np.argsort(-margin, kind="stable")[:count]]] = True
    issues &= probabilities.argmax(axis=1) != labels
    estimated = int(round(calibrated.sum() - np.trace(calibrated)))
    return issues, estimated


def outlier_z_scores(features: np.ndarray, neighbours: int = OUTLIER_NEIGHBOURS) -> np.ndarray:
    """How far each photo lies from its nearest neighbours compared with the others: the robust
    z-score (median, MAD) of its mean cosine distance to its `neighbours` nearest."""
    k = min(neighbours, len(features) - 1)
    finder = NearestNeighbors(n_neighbors=k + 1, metric="cosine").fit(features)
    distances, _ = finder.kneighbors(features)
    spread = distances[:, 1:].mean(axis=1)
    median = np.median(spread)
    deviation = 1.4826 * np.median(np.abs(spread - median)) or 1e-12
    return (spread - median) / deviation


def rank_suspects(
    files: list[str],
    labels: np.ndarray,
    class_names: list[str],
    probabilities: np.ndarray,
    issues: np.ndarray,
    outlier_z: np.ndarray,
    duplicates: dict[str, list[list[str]]],
) -> list[dict]:
    """Every suspect once, most suspicious first: `{"path", "given", "suggested", "score",
    "kind"}`; a duplicate group is one suspect under its first photo, with `"group"`, its photos.

    Args:
        duplicates: groups of dataset-relative paths by kind, the keys of `DUPLICATE_SCORES`.
    """
    row = {rel: i for i, rel in enumerate(files)}
    others = probabilities.copy()
    others[np.arange(len(labels)), labels] = -1.0

    def entry(i: int, kind: str, score: float, suggested: int | None) -> dict:
        return {
            "path": files[i],
            "given": class_names[labels[i]],
            "suggested": None if suggested is None else class_names[suggested],
            "score": round(float(score), 4),
            "kind": kind,
        }

    # One entry per photo, and one per duplicate group (under its first photo), the highest kind's.
    best: dict[str | tuple, dict] = {}

    def offer(suspect: dict) -> None:
        key = tuple(suspect["group"]) if "group" in suspect else suspect["path"]
        held = best.get(key)
        if held is None or suspect["score"] > held["score"]:
            best[key] = suspect

    for i in np.flatnonzero(issues | (probabilities.argmax(axis=1) != labels)):
        margin = others[i].max() - probabilities[i, labels[i]]
        offer(entry(i, "label", (1.0 + margin) / 2, int(others[i].argmax())))
    low, high = OUTLIER_SCORES
    for i in np.flatnonzero(outlier_z > OUTLIER_Z):
        level = low + (high - low) * min(1.0, (outlier_z[i] - OUTLIER_Z) / OUTLIER_Z)
        offer(entry(i, "outlier", level, int(probabilities[i].argmax())))
    for kind, groups in duplicates.items():
        for group in groups:
            present = [rel for rel in group if rel in row]
            if len(present) > 1:
                first = row[present[0]]
                offer({**entry(first, kind, DUPLICATE_SCORES[kind], None), "group": present})
    return sorted(best.values(), key=lambda s: (-s["score"], s["path"]))


def projection(features: np.ndarray, seed: int = 0) -> np.ndarray:
    """The features of every photo projected to 2-D for the embedding map: the first two
    principal components of the L2-normalized features (instant, and the same on every call)."""
    from sklearn.decomposition import PCA

    normalized = Normalizer().fit_transform(features)
    return PCA(n_components=2, random_state=seed).fit_transform(normalized)
