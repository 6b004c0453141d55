"""Feature extraction at scale: scan and cache features of a generated folder of N photos,
streamed from disk, and report photos/s and the process's peak memory.

The photos are a few synthetic templates per class, each written with its own JPEG comment
(distinct bytes, distinct files) into a folder under /tmp, so generating 100 000 takes seconds.
The folder is reused when it already holds `--count` photos.

    python bench/bench_scale.py [--count 100000] [--backbone mobilenet] [--image-size 224]
        [--photo-size 128] [--out /tmp/flower_scale_N]
"""

from __future__ import annotations

import argparse
import io
import struct
import tempfile
from pathlib import Path

# common first: it puts the project on sys.path
from common import Stopwatch, emit, peak_rss_mb

# isort: split
from flower_core.config import make_config
from flower_core.data import fingerprint, scan_dataset
from flower_core.features import FeatureCache, cached_features
from flower_core.model import build_classifier
from flower_core.synthetic import CLASSES, draw_flower

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--backbone", default="mobilenet")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--photo-size", type=int, default=128)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or Path(tempfile.gettempdir()) / f"flower_scale_{args.count}"
    generated = generate(out, args.count, args.photo_size)
    with Stopwatch() as scan:
        dataset = scan_dataset(out)
    config = make_config("base", backbone=args.backbone, weights="none", image_size=args.image_size)
    model = build_classifier(config, len(CLASSES)).feature_model
    before = peak_rss_mb()
    cache = FeatureCache(Path(tempfile.mkdtemp(prefix="bench_scale_cache_")))
    with Stopwatch() as extract:
        features, hit = cached_features(cache, model, config, out, dataset.files, fingerprint(dataset))
    assert not hit and features.shape[0] == args.count
    emit("feature_extraction_scale", photos=args.count, photo_size=args.photo_size,
         backbone=args.backbone, image_size=args.image_size, folder=str(out),
         generate_seconds=None if generated is None else round(generated, 2),
         folder_reused=generated is None, scan_seconds=round(scan.seconds, 1),
         scan_photos_per_s=round(args.count / scan.seconds, 1),
         extract_seconds=round(extract.seconds, 1),
         extract_photos_per_s=round(args.count / extract.seconds, 1),
         features_mb=round(features.nbytes / 2**20, 1), peak_rss_mb_before_extract=before,
         peak_rss_mb=peak_rss_mb(), cache_mb=round(cache.size_bytes() / 2**20, 1))


if __name__ == "__main__":
    main()
