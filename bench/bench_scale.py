"""Feature extraction at scale: scan and cache features of a generated folder of N photos,
streamed from disk, and report photos/s and the process's peak memory. With `--train-epochs`,
the product's own `train` command does it all instead (scan, split, extract, train the head,
evaluate), in a child process whose peak memory is reported.

The photos are a few synthetic templates per class, each written with its own JPEG comment
(distinct bytes, distinct files) into a folder under /tmp, so generating 100 000 takes seconds.
The folder is reused when it already holds `--count` photos.

    python bench/bench_scale.py [--count 100000] [--backbone mobilenet] [--image-size 224]
        [--photo-size 128] [--out /tmp/flower_scale_N] [--train-epochs 2 [--weights imagenet]]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

# common first: it puts the project on sys.path
from common import REPO, Stopwatch, emit, peak_rss_mb

# isort: split
from flower_core.config import make_config
from flower_core.data.dataset import fingerprint, scan_dataset
from flower_core.data.synthetic import CLASSES, draw_flower
from flower_core.models.classifier import build_classifier
from flower_core.models.features import FeatureCache
from flower_core.models.photo_features import cached_features

TEMPLATES_PER_CLASS = 4


def _jpeg_templates(size: int) -> dict[str, list[bytes]]:
    """A few JPEG encodings per class, drawn once."""
    templates = {}
    for label, name in enumerate(CLASSES):
        templates[name] = []
        for i in range(TEMPLATES_PER_CLASS):
            buffer = io.BytesIO()
            draw_flower(name, size=size, seed=[label, i])[0].save(buffer, "JPEG", quality=90)
            templates[name].append(buffer.getvalue())
    return templates


def _with_comment(jpeg: bytes, text: str) -> bytes:
    """The same JPEG with a COM segment right after the start-of-image marker."""
    payload = text.encode()
    return jpeg[:2] + b"\xff\xfe" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def generate(out: Path, count: int, size: int) -> float | None:
    """Write `count` photos spread evenly over the classes; returns the seconds it took, or
    `None` when the folder already held them."""
    if sum(1 for _ in out.glob("*/*.jpg")) == count:
        return None
    templates = _jpeg_templates(size)
    with Stopwatch() as t:
        for name in CLASSES:
            (out / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            name = CLASSES[i % len(CLASSES)]
            jpeg = templates[name][(i // len(CLASSES)) % TEMPLATES_PER_CLASS]
            (out / name / f"{name}_{i:06d}.jpg").write_bytes(_with_comment(jpeg, f"photo {i}"))
    return t.seconds


def train_at_scale(out: Path, args: argparse.Namespace) -> None:
    """`python -m flower_core train` on the folder; its wall time, peak memory and result."""
    with tempfile.TemporaryDirectory(prefix="bench_scale_runs_") as work, Stopwatch() as t:
        command = [
            sys.executable,
            "-m",
            "flower_core",
            "train",
            "--data",
            str(out),
            "--runs",
            f"{work}/runs",
            "--preset",
            "base",
            "--backbone",
            args.backbone,
            "--weights",
            args.weights,
            "--image-size",
            str(args.image_size),
            "--epochs",
            str(args.train_epochs),
            "--json",
        ]
        env = {**os.environ, "FLOWER_CACHE": f"{work}/cache"}
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"train failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    child_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    emit(
        "train_at_scale",
        photos=args.count,
        photo_size=args.photo_size,
        backbone=args.backbone,
        weights=args.weights,
        image_size=args.image_size,
        epochs=args.train_epochs,
        command=" ".join(command[1:]),
        wall_seconds=round(t.seconds, 1),
        photos_per_s=round(args.count / t.seconds, 1),
        train_peak_rss_mb=round(child_peak, 1),
        state=result.get("state"),
        test_accuracy=result.get("test_accuracy"),
    )


def extract_at_scale(out: Path, args: argparse.Namespace, generated: float | None) -> None:
    """Scan, then cache the features of every photo in this process; one JSON line."""
    with Stopwatch() as scan:
        dataset = scan_dataset(out)
    config = make_config("base", backbone=args.backbone, weights="none", image_size=args.image_size)
    model = build_classifier(config, len(CLASSES)).feature_model
    before = peak_rss_mb()
    with tempfile.TemporaryDirectory(prefix="bench_scale_cache_") as cache_dir, Stopwatch() as extract:
        cache = FeatureCache(cache_dir)
        features, hit = cached_features(cache, model, config, out, dataset.files, fingerprint(dataset))
        cache_mb = round(cache.size_bytes() / 2**20, 1)
    assert not hit and features.shape[0] == args.count
    emit(
        "feature_extraction_scale",
        photos=args.count,
        photo_size=args.photo_size,
        backbone=args.backbone,
        image_size=args.image_size,
        folder=str(out),
        generate_seconds=None if generated is None else round(generated, 2),
        folder_reused=generated is None,
        scan_seconds=round(scan.seconds, 1),
        scan_photos_per_s=round(args.count / scan.seconds, 1),
        extract_seconds=round(extract.seconds, 1),
        extract_photos_per_s=round(args.count / extract.seconds, 1),
        features_mb=round(features.nbytes / 2**20, 1),
        peak_rss_mb_before_extract=before,
        peak_rss_mb=peak_rss_mb(),
        cache_mb=cache_mb,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--backbone", default="mobilenet")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--photo-size", type=int, default=128)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--train-epochs",
        type=int,
        default=0,
        help="run the product's train command with this many epochs instead",
    )
    parser.add_argument(
        "--weights",
        default="imagenet",
        help="for --train-epochs: imagenet (frozen backbone, feature cache; needs "
        "FLOWER_WEIGHTS_DIR offline) or none (the whole network trains)",
    )
    args = parser.parse_args()
    out = args.out or Path(tempfile.gettempdir()) / f"flower_scale_{args.count}"
    generated = generate(out, args.count, args.photo_size)
    if args.train_epochs:
        train_at_scale(out, args)
    else:
        extract_at_scale(out, args, generated)


if __name__ == "__main__":
    main()
