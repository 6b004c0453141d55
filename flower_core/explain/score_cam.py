"""Score-CAM (Wang et al., 2020): weigh each channel by what it alone lets the model see.

No gradients: every activation map, upsampled and scaled to [0, 1], masks the photo, and the
channel's weight is the model's confidence in the target class on that masked photo, above its
confidence on a black photo. It is the least noisy of the three and the slowest: one forward
pass per channel, so only the `max_channels` most active channels are scored, in batches.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from flower_core.explain.base import BaseCAM
from flower_core.models.inference import predict_probabilities

MAX_CHANNELS = 32
BATCH_SIZE = 16


class ScoreCAM(BaseCAM):
    """Channel weight = p(target | photo * upsampled map) - p(target | black photo).

    Args:
        model: the classifier.
        layer: the target layer. Defaults to `None` (the backbone's last convolution).
        max_channels: how many channels, the most active on average, are scored; the rest
            weigh 0. Defaults to `MAX_CHANNELS`.

    Example:

    >>> heatmap, probabilities = ScoreCAM(model, max_channels=16)(pixels)
    """

    name = "scorecam"
    label = "Score-CAM"
    uses_gradients = False

    def __init__(self, model, layer: str | None = None, max_channels: int = MAX_CHANNELS):
        super().__init__(model, layer)
        if max_channels < 1:
            raise ValueError(f"max_channels must be at least 1. Received: max_channels={max_channels}")
        self.max_channels = max_channels

    def get_cam_weights(self, pixels, activations, gradients, target: int) -> tf.Tensor:
        channels = activations.shape[-1]
        means = tf.reduce_mean(activations, axis=(0, 1)).numpy()
        chosen = np.argsort(-means, kind="stable")[: self.max_channels]
        chosen = chosen[means[chosen] > 0]
        if chosen.size == 0:
            return tf.zeros((channels,))
        maps = tf.image.resize(tf.gather(activations, chosen, axis=-1)[None], pixels.shape[1:3])
        maps = tf.transpose(maps[0], (2, 0, 1))[..., None]
        low = tf.reduce_min(maps, axis=(1, 2, 3), keepdims=True)
        high = tf.reduce_max(maps, axis=(1, 2, 3), keepdims=True)
        masks = tf.math.divide_no_nan(maps - low, high - low)
        masked = tf.concat([tf.zeros_like(pixels), pixels * masks], axis=0)
        starts = range(0, masked.shape[0], BATCH_SIZE)
        scores = []
        for done, start in enumerate(starts, 1):
            scores.append(predict_probabilities(self.model, masked[start : start + BATCH_SIZE])[:, target])
            self.report(done, len(starts))
        scores = np.concatenate(scores)
        weights = np.zeros(channels, dtype=np.float32)
        weights[chosen] = scores[1:] - scores[0]
        return tf.constant(weights)
