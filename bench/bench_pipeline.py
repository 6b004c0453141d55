"""Input-pipeline overhead: frozen-backbone forward passes fed from disk by
`pipeline.image_dataset`, against the same forward passes on batches already in memory.

If decoding and resizing (Pillow, in a parallel tf.data map with prefetch) keep up with the
model, an epoch streamed from disk costs no more than pure compute. The goal is under 10 %.
Measured twice: decoding every epoch, and as training does it, with the decoded photos in a
`tf.data` cache file written by the first epoch and read by the later ones (the first epoch is
reported on its own). The timings alternate and the best of `--repeats` is kept, to damp other
load on the machine.

    FLOWER_DATA=/work/shared/data/flowers python bench/bench_pipeline.py
        [--backbone mobilenet] [--image-size 224] [--photos 320] [--batch 32] [--repeats 3]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

# common first: it puts the project on sys.path
from common import Stopwatch, dataset_root, emit

# isort: split
import tensorflow as tf

from flower_core.config import make_config
from flower_core.data.dataset import list_candidates
from flower_core.data.pipeline import image_dataset
from flower_core.models.classifier import build_classifier


def spread_files(root: Path, count: int) -> list[str]:
    """`count` photos taken round-robin over the classes, so every kind of photo is in the mix."""
    classes, candidates = list_candidates(root)
    files = [rel for group in zip(*(candidates[name] for name in classes)) for rel in group]
    return files[:count]


def epoch_seconds(forward, batches) -> float:
    """Wall seconds of one pass of `forward` over `batches` (any iterable of pixel batches)."""
    with Stopwatch() as t:
        for batch in batches:
            forward(batch).numpy()
    return t.seconds


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="mobilenet")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--photos", type=int, default=320)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    return parser.parse_args()


def measure(args: argparse.Namespace, work: Path) -> None:
    """Streamed against in-memory epochs of forward passes; one JSON line."""
    root, kind = dataset_root(args.photos // 5 + 1, 256, work)
    files = spread_files(root, args.photos)
    config = make_config("base", backbone=args.backbone, weights="none", image_size=args.image_size)
    model = build_classifier(config, 5).feature_model
    forward = tf.function(lambda x: model(x, training=False))

    def streamed():
        return image_dataset(root, files, None, image_size=args.image_size, batch_size=args.batch)

    in_memory = list(streamed())
    decode = epoch_seconds(tf.identity, streamed())
    epoch_seconds(forward, in_memory)  # traces the full and the last partial batch
    cached = image_dataset(
        root, files, None, image_size=args.image_size, batch_size=args.batch, pixel_cache=work / "pixels"
    )
    first_cached = epoch_seconds(forward, cached)  # decodes and writes the cache file
    compute, piped, from_cache = [], [], []
    for _ in range(args.repeats):
        compute.append(epoch_seconds(forward, in_memory))
        piped.append(epoch_seconds(forward, streamed()))
        from_cache.append(epoch_seconds(forward, cached))
    emit(
        "input_pipeline",
        data=kind,
        photos=len(files),
        backbone=args.backbone,
        image_size=args.image_size,
        batch=args.batch,
        repeats=args.repeats,
        decode_only_photos_per_s=round(len(files) / decode, 1),
        compute_seconds=round(min(compute), 2),
        pipeline_seconds=round(min(piped), 2),
        compute_photos_per_s=round(len(files) / min(compute), 1),
        pipeline_photos_per_s=round(len(files) / min(piped), 1),
        overhead_percent=round(100 * (min(piped) / min(compute) - 1), 1),
        cached_first_epoch_seconds=round(first_cached, 2),
        cached_later_epoch_seconds=round(min(from_cache), 2),
        cached_overhead_percent=round(100 * (min(from_cache) / min(compute) - 1), 1),
    )


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench_pipe_") as work:
        measure(parse_args(), Path(work))


if __name__ == "__main__":
    main()
