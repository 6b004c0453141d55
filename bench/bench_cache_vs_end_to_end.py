"""Training with the feature cache against end-to-end training, same preset, data and epochs.

Full runs through `train_new_run` (scan, split, train, test metrics), each timed by the wall
clock: end to end (`cache_features=False`), with a cold cache (the cache build is counted) and
again with the cache warm (another run of a preset sharing the same features, e.g. another
dropout); with augmentation, cold and warm for each way of caching it (views and maps). Early
stopping is held off (patience = epochs) so every run does all its epochs.
Nothing is extrapolated: every figure is measured on what ran, which is printed with it.

    FLOWER_DATA=/work/shared/data/flowers FLOWER_WEIGHTS_DIR=/work/shared/weights \
    python bench/bench_cache_vs_end_to_end.py [--backbone mobilenet] [--image-size 224]
        [--preset dropout20] [--epochs 20] [--subset N] [--augment-views 5] [--weights imagenet]
        [--ways views maps]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

# common first: it puts the project on sys.path
from common import Stopwatch, dataset_root, emit, load_average, subset_folder

# isort: split
import keras

from flower_core.config import make_config
from flower_core.models.backbones import builder, get_backbone
from flower_core.store.runs import Run
from flower_core.training.jobs import train_new_run


def _weights(choice: str, backbone: str, size: int, workdir: Path) -> str:
    """`imagenet`, or `random`: a saved random-init file, so the frozen-backbone path runs offline."""
    if choice != "random":
        return choice
    path = workdir / f"{backbone}_random.weights.h5"
    builder(get_backbone(backbone))(
        include_top=False, weights=None, input_shape=(size, size, 3)
    ).save_weights(path)
    return str(path)


def timed_run(config, data: Path, runs: Path) -> dict:
    """Train one run; its wall seconds, epochs, epoch seconds (the first one also traces the
    training step), test accuracy and photos."""
    with Stopwatch() as t:
        run_dir = train_new_run(config, data, runs)
    run = Run.open(run_dir)
    status, history = run.status, run.history
    if status.state != "done":
        raise SystemExit(f"run {run_dir} ended {status.state}: {status.message}")
    return {
        "seconds": round(t.seconds, 1),
        "cpu_seconds": round(t.cpu_seconds, 1),
        "loadavg_after": load_average(),
        "epochs_run": len(history),
        "first_epoch_seconds": history[0].seconds,
        "median_epoch_seconds": round(statistics.median(h.seconds for h in history), 3),
        "test_accuracy": run.metrics.test_accuracy,
        "photos": run.facts.split_sizes,
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="mobilenet")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--preset", default="dropout20")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--subset", type=int, default=None, help="photos per class (default: all)")
    parser.add_argument("--augment-views", type=int, default=5)
    parser.add_argument("--weights", default="imagenet", help="imagenet, random or a file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--ways",
        nargs="+",
        choices=["views", "maps"],
        default=["views", "maps"],
        help="ways of caching augmentation to time (default both)",
    )
    return parser.parse_args()


def compare(args: argparse.Namespace, work: Path) -> None:
    """End to end, then each way of caching cold and warm: one JSON line per run, then the ratios.

    With augmentation both ways are timed: K augmented views (`views`, K backbone passes per
    training photo) and augmented feature maps (`maps`, one pass)."""
    os.environ["FLOWER_CACHE"] = str(work / "cache")
    root, kind = dataset_root(args.subset or 60, 128, work)
    data = subset_folder(root, args.subset, work)
    settings = dict(
        backbone=args.backbone,
        image_size=args.image_size,
        epochs=args.epochs,
        patience=args.epochs,
        augment_views=args.augment_views,
        seed=args.seed,
        weights=_weights(args.weights, args.backbone, args.image_size, work),
    )
    keras.utils.set_random_seed(args.seed)
    end_to_end = timed_run(make_config(args.preset, cache_features=False, **settings), data, work / "runs")
    ways = args.ways if make_config(args.preset).augment else [None]  # nothing to augment
    what = {
        "data": kind,
        "subset_per_class": args.subset,
        "backbone": args.backbone,
        "image_size": args.image_size,
        "preset": args.preset,
        "epochs": args.epochs,
        "augment_views": args.augment_views,
        "weights": args.weights,
        "photos": end_to_end["photos"],
    }
    emit("train_run", run="end_to_end", **what, **{k: v for k, v in end_to_end.items() if k != "photos"})
    for way in ways:
        config = make_config(args.preset, augment_cache=way, **settings)
        cold, warm = (timed_run(config, data, work / "runs") for _ in range(2))
        for name, run in (("cache_cold", cold), ("cache_warm", warm)):
            emit(
                "train_run",
                run=name,
                augment_cache=way,
                **what,
                **{k: v for k, v in run.items() if k != "photos"},
            )
        emit(
            "cache_speedup",
            augment_cache=way,
            **what,
            end_to_end_seconds=end_to_end["seconds"],
            cache_cold_seconds=cold["seconds"],
            cache_warm_seconds=warm["seconds"],
            speedup_cold=round(end_to_end["seconds"] / cold["seconds"], 2),
            speedup_warm=round(end_to_end["seconds"] / warm["seconds"], 2),
            cpu_speedup_cold=round(end_to_end["cpu_seconds"] / cold["cpu_seconds"], 2),
            cpu_speedup_warm=round(end_to_end["cpu_seconds"] / warm["cpu_seconds"], 2),
            head_epoch_seconds=warm["median_epoch_seconds"],
            end_to_end_epoch_seconds=end_to_end["median_epoch_seconds"],
        )


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench_cache_") as work:
        compare(parse_args(), Path(work))


if __name__ == "__main__":
    main()
