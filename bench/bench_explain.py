"""Time the Grad-CAM family on one 224 px photo with VGG16, against a plain forward pass.

Prints one JSON line per measurement with the machine (see `common.emit`). Random weights are
fine: the cost does not depend on the weights.

    python bench/bench_explain.py [--backbone vgg16] [--size 224] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from functools import partial

# common first: it puts the project on sys.path
from common import emit

# isort: split
import numpy as np

from flower_core.config import make_config
from flower_core.explain import METHODS
from flower_core.explain.faithfulness import faithfulness
from flower_core.models.classifier import build_classifier


def timed(function, repeats: int) -> float:
    """Median milliseconds of `repeats` calls, after one warm-up call."""
    function()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="vgg16")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    config = make_config("base", backbone=args.backbone, weights="none", image_size=args.size)
    model = build_classifier(config, 5).model
    pixels = np.random.default_rng(0).integers(0, 256, (args.size, args.size, 3)).astype(np.float32)
    heatmap = np.random.default_rng(1).random((args.size, args.size)).astype(np.float32)
    runs = {"forward": lambda: model(pixels[None], training=False).numpy()}
    runs.update({name: partial(cam_class(model), pixels) for name, cam_class in METHODS.items()})
    runs["faithfulness"] = lambda: faithfulness(model, pixels, heatmap, 0)
    forward = None
    for method, function in runs.items():
        ms = timed(function, args.repeats)
        forward = forward or ms
        emit(
            "explain_latency",
            method=method,
            backbone=args.backbone,
            image_size=args.size,
            repeats=args.repeats,
            ms_per_photo=round(ms, 1),
            x_forward=round(ms / forward, 2),
        )


if __name__ == "__main__":
    main()
