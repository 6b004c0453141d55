"""Grad-CAM (Selvaraju et al., 2017): weigh each channel by its mean gradient."""

from __future__ import annotations

import tensorflow as tf

from flower_core.explain.base import BaseCAM


class GradCAM(BaseCAM):
    """Channel weight = the spatial mean of d logit[target] / d activation.

    Example:

    >>> heatmap, probabilities = GradCAM(model)(pixels)
    """

    name = "gradcam"
    label = "Grad-CAM"

    def get_cam_weights(self, pixels, activations, gradients, target: int) -> tf.Tensor:
        return tf.reduce_mean(gradients, axis=(0, 1))
