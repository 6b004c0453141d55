"""Grad-CAM++ (Chattopadhyay et al., 2018): weigh positive gradients pixel by pixel.

Better than Grad-CAM when a class appears several times in a photo (a bunch of daisies), because
each location's gradient counts with its own coefficient instead of one mean per channel.
"""

from __future__ import annotations

import tensorflow as tf

from flower_core.explain.base import BaseCAM

_EPSILON = 1e-7


class GradCAMPlusPlus(BaseCAM):
    """Channel weight = sum over locations of alpha * relu(gradient).

    With an exponential of the score as the target, the second and third derivatives are
    powers of the first, so alpha = g^2 / (2 g^2 + sum(A) g^3), as in pytorch-grad-cam.

    Example:

    >>> heatmap, probabilities = GradCAMPlusPlus(model, layer="block5_conv3")(pixels)
    """

    name = "gradcam++"
    label = "Grad-CAM++"

    def get_cam_weights(self, pixels, activations, gradients, target: int) -> tf.Tensor:
        squared = tf.square(gradients)
        cubed = squared * gradients
        activation_sums = tf.reduce_sum(activations, axis=(0, 1))
        alpha = squared / (2.0 * squared + activation_sums * cubed + _EPSILON)
        alpha = tf.where(gradients != 0.0, alpha, tf.zeros_like(alpha))
        return tf.reduce_sum(alpha * tf.nn.relu(gradients), axis=(0, 1))
