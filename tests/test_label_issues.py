"""Confident learning and the suspects' ranking (`flower_core.data.dataset.label_issues`) on known
answers: labels flipped on purpose in separable synthetic features, a confident joint worked by
hand, and far-off points as outliers."""

import numpy as np
import pytest

from flower_core.data import label_issues
from flower_core.errors import FlowerError


def blobs(per_class=80, classes=4, dim=16, seed=0):
    """Separable clusters: each class around its own random centre."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 4, (classes, dim))
    labels = np.repeat(np.arange(classes), per_class)
    return centres[labels] + rng.normal(0, 1, (len(labels), dim)), labels


def flip(labels, count, classes, seed=1):
    rng = np.random.default_rng(seed)
    flipped = rng.choice(len(labels), count, replace=False)
    noisy = labels.copy()
    noisy[flipped] = (labels[flipped] + rng.integers(1, classes, count)) % classes
    return noisy, flipped


def test_confident_joint_counts_each_photo_under_the_likeliest_class_over_its_threshold():
    probabilities = np.array([[0.9, 0.1], [0.7, 0.3], [0.2, 0.8], [0.6, 0.4], [0.5, 0.5]])
    labels = np.array([0, 0, 1, 1, 1])
    # thresholds: class 0 mean(0.9, 0.7) = 0.8; class 1 mean(0.8, 0.4, 0.5) = 0.5667
    joint, guess = label_issues.confident_joint(probabilities, labels)
    assert guess.tolist() == [0, -1, 1, -1, -1]
    assert joint.tolist() == [[1, 0], [0, 1]]


def test_planted_label_flips_are_found_ranked_first_with_the_true_class_suggested():
    features, truth = blobs()
    noisy, flipped = flip(truth, 20, 4)
    probabilities = label_issues.audit_probabilities(features, noisy, 4, folds=5, seed=0)
    issues, estimated = label_issues.find_label_issues(probabilities, noisy)
    assert set(flipped) <= set(np.flatnonzero(issues))
    assert issues.sum() <= 24 and 15 <= estimated <= 25
    files = [f"c{label}/{i}.jpg" for i, label in enumerate(noisy)]
    names = ["c0", "c1", "c2", "c3"]
    z = label_issues.outlier_z_scores(features)
    suspects = label_issues.rank_suspects(files, noisy, names, probabilities, issues, z, {})
    top = {s["path"]: s for s in suspects[:40]}
    found = [files[i] for i in flipped if files[i] in top]
    assert len(found) == 20
    assert all(top[files[i]]["suggested"] == names[truth[i]] for i in flipped)
    assert [s["score"] for s in suspects] == sorted((s["score"] for s in suspects), reverse=True)


def test_clean_labels_give_no_label_issues():
    features, labels = blobs()
    probabilities = label_issues.out_of_fold_probabilities(features, labels, 4)
    issues, estimated = label_issues.find_label_issues(probabilities, labels)
    assert issues.sum() == 0 and estimated <= 2


def test_far_points_are_outliers_and_duplicates_are_one_suspect_per_group():
    features, labels = blobs()
    far = np.random.default_rng(5).normal(0, 40, (3, features.shape[1]))
    features = np.vstack([features, far])
    labels = np.concatenate([labels, [0, 1, 2]])
    z = label_issues.outlier_z_scores(features)
    assert set(np.argsort(-z)[:3]) == {320, 321, 322} and z[320:].min() > 4 * label_issues.OUTLIER_Z
    z = np.where(np.arange(len(z)) >= 320, z, 0.0)  # the blobs' own tails are not the test here
    files = [f"c{label}/{i}.jpg" for i, label in enumerate(labels)]
    probabilities = np.eye(4)[labels]
    duplicates = {
        "duplicate_labels": [[files[0], files[100]]],
        "duplicate": [[files[1], files[2], "gone.jpg"]],
    }
    suspects = label_issues.rank_suspects(
        files, labels, ["c0", "c1", "c2", "c3"], probabilities, np.zeros(len(labels), bool), z, duplicates
    )
    kinds = [s["kind"] for s in suspects]
    assert kinds == ["duplicate_labels", "outlier", "outlier", "outlier", "duplicate"]
    assert suspects[-1]["group"] == [files[1], files[2]]


@pytest.mark.parametrize("folds", [1, 0, 81])
def test_fold_counts_the_classes_cannot_fill_are_refused(folds):
    features, labels = blobs()
    with pytest.raises(FlowerError, match=f"Received: folds={folds}"):
        label_issues.out_of_fold_probabilities(features, labels, 4, folds=folds)
