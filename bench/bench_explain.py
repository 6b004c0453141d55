"""Time the Grad-CAM family on one 224 px photo with VGG16, against a plain forward pass.

Prints one JSON line per measurement with the machine: the CPU model, its cores and the
TensorFlow version. Random weights are fine: the cost does not depend on the weights.

    python bench/bench_explain.py [--backbone vgg16] [--size 224] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from functools import partial
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from flower_core.config import make_config  # noqa: E402
from flower_core.explain import METHODS  # noqa: E402
from flower_core.explain.faithfulness import faithfulness  # noqa: E402
from flower_core.model import build_classifier  # noqa: E402


def machine() -> dict:
    """CPU model (from /proc/cpuinfo), cores visible to this process, TensorFlow version."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu, "cores": cores, "tensorflow": tf.__version__}


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
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backbone", default="vgg16")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    config = make_config("base", backbone=args.backbone, weights="none", image_size=args.size)
    model = build_classifier(config, 5).model
    pixels = np.random.default_rng(0).integers(0, 256, (args.size, args.size, 3)).astype(np.float32)
    base = {
        **machine(),
        "backbone": args.backbone,
        "image_size": args.size,
        "repeats": args.repeats,
    }
    forward = timed(lambda: model(pixels[None], training=False).numpy(), args.repeats)
    print(json.dumps({**base, "method": "forward", "ms_per_photo": round(forward, 1)}))
    for name, cam_class in METHODS.items():
        ms = timed(partial(cam_class(model), pixels), args.repeats)
        print(
            json.dumps(
                {
                    **base,
                    "method": name,
                    "ms_per_photo": round(ms, 1),
                    "x_forward": round(ms / forward, 2),
                }
            )
        )
    heatmap = np.random.default_rng(1).random((args.size, args.size)).astype(np.float32)
    ms = timed(lambda: faithfulness(model, pixels, heatmap, 0), args.repeats)
    print(
        json.dumps(
            {
                **base,
                "method": "faithfulness",
                "ms_per_photo": round(ms, 1),
                "x_forward": round(ms / forward, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
