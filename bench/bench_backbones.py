"""Inference speed of each backbone, and how much of the CPU's fp32 peak it reaches.

The photos/s of the frozen backbone bound everything on a CPU: the feature-cache build, end-to-end
epochs and batch prediction. The share of peak says whether a slow backbone is slow because it
does more arithmetic (VGG16) or because its layers use the CPU poorly (depthwise convolutions).
Random weights: speed does not depend on the weights.

    python bench/bench_backbones.py [--backbones vgg16 mobilenet ...] [--sizes 224 128]
                                    [--batch 32] [--repeats 3]
"""

from __future__ import annotations

import argparse
import math
import statistics

from common import Stopwatch, emit  # first: puts the project on sys.path

# isort: split
import numpy as np
import tensorflow as tf
from keras import layers

from flower_core.backbones import BACKBONES
from flower_core.config import make_config
from flower_core.model import build_classifier


def count_macs(model) -> int:
    """Multiply-accumulates of one photo through the Conv2D, DepthwiseConv2D and Dense layers,
    from the layers' shapes (batch-norm, activations, pooling and adds are ignored: they are a
    few percent of the arithmetic)."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, layers.DepthwiseConv2D):
            _, h, w, c = layer.output.shape
            total += h * w * c * math.prod(layer.kernel_size)
        elif isinstance(layer, layers.Conv2D):
            _, h, w, c = layer.output.shape
            cin = layer.input.shape[-1] // layer.groups
            total += h * w * c * cin * math.prod(layer.kernel_size)
        elif isinstance(layer, layers.Dense):
            total += math.prod(layer.input.shape[1:]) * layer.units
    return int(total)


def peak_gflops(size: int = 4096, repeats: int = 5) -> float:
    """The machine's practical fp32 peak: the best of `repeats` timed size x size matmuls."""
    a = tf.random.normal((size, size))
    b = tf.random.normal((size, size))
    tf.matmul(a, b)
    best = math.inf
    for _ in range(repeats):
        with Stopwatch() as t:
            tf.matmul(a, b)
        best = min(best, t.seconds)
    return 2 * size**3 / best / 1e9


def photos_per_second(model, size: int, batch: int, repeats: int) -> float:
    """Median photos/s of a compiled forward pass on one batch in memory, after a warm-up."""
    forward = tf.function(lambda x: model(x, training=False))
    pixels = tf.constant(np.random.default_rng(0).uniform(0, 255, (batch, size, size, 3)), tf.float32)
    forward(pixels).numpy()
    times = []
    for _ in range(repeats):
        with Stopwatch() as t:
            forward(pixels).numpy()
        times.append(t.seconds)
    return batch / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbones", nargs="+", default=list(BACKBONES), choices=list(BACKBONES))
    parser.add_argument("--sizes", nargs="+", type=int, default=[224, 128])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    for name in args.backbones:
        peak = peak_gflops()  # again for each backbone: other load on the machine changes it
        emit("peak_fp32", matmul="4096x4096 float32", gflops_per_s=round(peak, 1))
        for size in args.sizes:
            config = make_config("base", backbone=name, weights="none", image_size=size)
            model = build_classifier(config, 5).feature_model
            gflops = 2 * count_macs(model) / 1e9
            rate = photos_per_second(model, size, args.batch, args.repeats)
            emit("backbone_inference", backbone=name, image_size=size, batch=args.batch,
                 repeats=args.repeats, photos_per_s=round(rate, 1), gflops_per_photo=round(gflops, 3),
                 gflops_per_s=round(rate * gflops, 1), peak_gflops_per_s=round(peak, 1),
                 share_of_peak=round(rate * gflops / peak, 3))


if __name__ == "__main__":
    main()
