"""Inference speed of each backbone, and how much of the CPU's fp32 peak it reaches.

The photos/s of the frozen backbone bound everything on a CPU: the feature-cache build, end-to-end
epochs and batch prediction. The share of peak says whether a slow backbone is slow because it
does more arithmetic (VGG16) or because its layers use the CPU poorly (depthwise convolutions).
Random weights: speed does not depend on the weights. Each time is the best of several calls,
and the peak is the best 4096 x 4096 matmul of the run, as other work on a shared machine only
slows things down.

    python bench/bench_backbones.py [--backbones vgg16 mobilenet ...] [--sizes 224 128]
                                    [--batch 32] [--repeats 3] [--eager]
                                    [--graph cache|variables|xla] [--threads INTRA INTER]
"""

from __future__ import annotations

import argparse
import math

# common first: it puts the project on sys.path
from common import Stopwatch, emit

# isort: split
import numpy as np
import tensorflow as tf
from keras import layers

from flower_core.config import make_config
from flower_core.models.backbone_specs import BACKBONES
from flower_core.models.classifier import build_classifier
from flower_core.models.features import _compiled


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


def best_seconds(function, repeats: int, min_seconds: float = 2.0) -> float:
    """The fastest of at least `repeats` calls (and of at least `min_seconds` of calls), after a
    warm-up: other work on a shared machine only ever slows a call down, so the best is closest
    to what the machine can do."""
    function()
    times = []
    while len(times) < repeats or sum(times) < min_seconds:
        with Stopwatch() as t:
            function()
        times.append(t.seconds)
    return min(times)


def peak_gflops(size: int = 4096, repeats: int = 5) -> float:
    """The machine's practical fp32 peak from timed size x size matmuls."""
    a = tf.random.normal((size, size))
    b = tf.random.normal((size, size))
    return 2 * size**3 / best_seconds(lambda: tf.matmul(a, b), repeats) / 1e9


def photos_per_second(model, size: int, batch: int, repeats: int, how: str = "cache") -> float:
    """Photos/s of a forward pass on one batch in memory: `cache`, the feature cache's compiled
    pass (on weights as constants, folding batch normalization, for backbones of depthwise
    convolutions);
    `variables`, one graph on the weights as variables (as `fit` and `predict` run it); `xla`,
    that graph compiled by XLA; `eager`, layer by layer."""

    def call(x):
        return model(x, training=False)

    forward = {
        "cache": lambda: _compiled(model),
        "variables": lambda: tf.function(call),
        "xla": lambda: tf.function(call, jit_compile=True),
        "eager": lambda: call,
    }[how]()
    pixels = tf.constant(np.random.default_rng(0).uniform(0, 255, (batch, size, size, 3)), tf.float32)
    return batch / best_seconds(lambda: forward(pixels).numpy(), repeats)


def measure(name: str, size: int, args) -> dict:
    """One backbone at one size: photos/s, arithmetic per photo, and eager photos/s if asked."""
    config = make_config("base", backbone=name, weights="none", image_size=size)
    model = build_classifier(config, 5).feature_model
    row = {
        "backbone": name,
        "image_size": size,
        "batch": args.batch,
        "graph": args.graph,
        "threads": args.threads or "default",
        "photos_per_s": photos_per_second(model, size, args.batch, args.repeats, args.graph),
        "gflops_per_photo": 2 * count_macs(model) / 1e9,
    }
    if args.eager:
        row["eager_photos_per_s"] = photos_per_second(model, size, args.batch, args.repeats, "eager")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbones", nargs="+", default=list(BACKBONES), choices=list(BACKBONES))
    parser.add_argument("--sizes", nargs="+", type=int, default=[224, 128])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--eager", action="store_true", help="also time eager (uncompiled) calls")
    parser.add_argument(
        "--graph",
        choices=["cache", "variables", "xla"],
        default="cache",
        help="the forward pass timed (see photos_per_second; default: the feature cache's)",
    )
    parser.add_argument(
        "--threads", nargs=2, type=int, metavar=("INTRA", "INTER"), help="TensorFlow's thread pools"
    )
    args = parser.parse_args()
    if args.threads:  # before the first operation creates the pools
        tf.config.threading.set_intra_op_parallelism_threads(args.threads[0])
        tf.config.threading.set_inter_op_parallelism_threads(args.threads[1])
    peaks, rows = [], []
    for name in args.backbones:
        peaks.append(peak_gflops())  # before each backbone: the load of the machine changes
        rows += [measure(name, size, args) for size in args.sizes]
    peak = max(peaks)
    emit(
        "peak_fp32",
        matmul="4096x4096 float32",
        gflops_per_s=round(peak, 1),
        samples=[round(p, 1) for p in peaks],
    )
    for row in rows:
        achieved = row["photos_per_s"] * row["gflops_per_photo"]
        figure = {**row, "repeats": args.repeats, "gflops_per_s": achieved, "share_of_peak": achieved / peak}
        if "eager_photos_per_s" in row:
            figure["compiled_over_eager"] = row["photos_per_s"] / row["eager_photos_per_s"]
        emit(
            "backbone_inference", **{k: round(v, 3) if isinstance(v, float) else v for k, v in figure.items()}
        )


if __name__ == "__main__":
    main()
