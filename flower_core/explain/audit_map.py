"""Grad-CAM of the audit's own head: where in a photo the features that point to a class lie.

Why this model: the review queue shows the audit's suspicion (given label, suggested class), and
the audit has no Keras classifier: its probabilities come from logistic-regression heads on the
L2-normalized pooled features of one backbone (`data.label_issues`). The heatmap explains that
same model. A trained run's model would explain another classifier (trained on a split of the
photos as they were before the fixes, often with other settings) and is not there before a first
run; this needs only the backbone the audit used. The out-of-fold heads are not kept, so one head
is fitted on every photo but those the audit doubts (as its second pass leaves them out); its
logit for the class is differentiated through the normalization and the pooling back to the
backbone's last feature maps, and each channel weighs by its mean gradient (Grad-CAM, as
`explain.gradcam`).

Example:
    >>> head = AuditHead.fit(audit)
    >>> maps = build_classifier(audit.config, len(audit.dataset.class_names)).map_model
    >>> overlay = audit_heatmap(maps, head, "tulip/daisy_0003.jpg", "daisy", root)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from flower_core.data.images import load_image, model_input
from flower_core.errors import FlowerError
from flower_core.explain.base import normalise
from flower_core.explain.overlay import overlay_heatmap

# The review's overlays are shown this many pixels on the long side at most.
REVIEW_SIZE = 512


@dataclass(frozen=True)
class AuditHead:
    """One audit head as arrays: its `weights` (features, classes; the bias moves no gradient),
    the class names, and the pooling and image size of the features it was fitted on."""

    weights: np.ndarray
    class_names: tuple[str, ...]
    pooling: str
    image_size: int

    @classmethod
    def fit(cls, audit) -> AuditHead:
        """A head on every photo of an `Audit` but those it doubts (`label_issues.doubted`)."""
        from flower_core.data import label_issues  # scikit-learn, only when a heatmap is asked for

        labels = np.asarray(audit.dataset.labels)
        kept = ~label_issues.doubted(audit.probabilities, labels)
        head = label_issues.make_head(audit.config.seed).fit(audit.features[kept], labels[kept])
        linear = head[-1]
        # A class with no photo kept keeps zero weights: its map is empty.
        weights = np.zeros((audit.features.shape[1], len(audit.dataset.class_names)), np.float32)
        # For two classes scikit-learn keeps one row, the logit of the second minus the first's.
        coef = (
            np.concatenate([-linear.coef_, linear.coef_]) / 2 if len(linear.classes_) == 2 else linear.coef_
        )
        weights[:, linear.classes_] = coef.T
        names = tuple(audit.dataset.class_names)
        return cls(weights, names, audit.config.pooling, audit.config.image_size)

    def index(self, class_name: str) -> int:
        if class_name not in self.class_names:
            raise FlowerError(
                f"unknown class for the heatmap. Choose one of: {', '.join(self.class_names)}. "
                f"Received: {class_name!r}"
            )
        return self.class_names.index(class_name)


def audit_cam(feature_maps: np.ndarray, head: AuditHead, target: int) -> np.ndarray:
    """The Grad-CAM of one photo's feature maps (height, width, channels) for class `target`
    of the head, in [0, 1] at the maps' grid."""
    maps = tf.convert_to_tensor(feature_maps[None], tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(maps)
        pooled = tf.reduce_max(maps, (1, 2)) if head.pooling == "max" else tf.reduce_mean(maps, (1, 2))
        logit = tf.math.l2_normalize(pooled, axis=-1) @ head.weights[:, target : target + 1]
    gradients = tape.gradient(logit, maps)[0]
    weights = tf.reduce_mean(gradients, axis=(0, 1))
    return normalise(tf.nn.relu(tf.reduce_sum(maps[0] * weights, axis=-1)).numpy())


def audit_heatmap(
    map_model: keras.Model, head: AuditHead, photo: str | os.PathLike, class_name: str
) -> np.ndarray:
    """A photo with the audit head's Grad-CAM for `class_name` over it (uint8 RGB, at most
    `REVIEW_SIZE` px on the long side).

    Args:
        map_model: the audit's backbone to its last feature maps (`Classifier.map_model` of
            `audit.config`).
        head: the audit's head (`AuditHead.fit`).
        photo: the photo's path.
        class_name: the class whose evidence is drawn.

    Raises:
        FlowerError: an unknown class or an unreadable photo.
    """
    target = head.index(class_name)
    pixels = model_input(Path(photo), head.image_size)[None].astype(np.float32)
    feature_maps = np.asarray(map_model(pixels, training=False))[0]
    shown = load_image(Path(photo), draft_size=REVIEW_SIZE)
    shown.thumbnail((REVIEW_SIZE, REVIEW_SIZE))
    return overlay_heatmap(shown, audit_cam(feature_maps, head, target))
