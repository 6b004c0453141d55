"""How often each low-confidence signal fires on real flowers and on photos that are no flowers.

Signals, for one trained run:
- `unsure`: the run's own threshold from its validation photos (`metrics.json` "confidence"),
  what `predict` flags today ("the model is unsure");
- `old_rule`: the former flag, top probability < 0.6 or normalised entropy > 0.7 ("may not be one
  of these flowers");
- `feature_distance`: a candidate out-of-distribution signal, the Mahalanobis distance of the
  backbone's pooled features to the nearest class mean of the training photos (shared, shrunk
  covariance), flagged above the 95th percentile of the validation photos' distances.

Flowers: the run's test split. Non-flowers: generated here (uniform and Gaussian noise, colour
gradients, checkerboards and stripes, flat-shaded "scenes" of sky, ground and shapes) and, with
`--photos DIR`, the photos in DIR (e.g. the sample photos scikit-image's wheel ships in
`skimage/data`: an astronaut, a cat, coffee, coins, a rocket, the moon...).

    FLOWER_CACHE=/work/cache-shared python bench/bench_confidence_flag.py --run RUN_DIR --photos DIR

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import io
import math
from pathlib import Path

# common first: it puts the project on sys.path
from common import emit

# isort: split
import keras
import numpy as np
from PIL import Image, ImageDraw

from flower_core.data.dataset import fingerprint, labels_for, load_split, scan_dataset
from flower_core.data.images import model_input
from flower_core.evaluation.predict import load_run, model_image_size, predict_batch, run_threshold
from flower_core.models.classifier import HEAD_POOL
from flower_core.models.features import FeatureCache
from flower_core.models.photo_features import cached_features
from flower_core.store.runs import SPLIT, Run

PHOTO_SUFFIXES = {".png", ".jpg", ".jpeg"}


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.clip(array, 0, 255).astype("uint8")).save(buffer, "PNG")
    return buffer.getvalue()


def generated_non_flowers(per_kind: int = 15, size: int = 256, seed: int = 0) -> dict[str, list[bytes]]:
    """Four kinds of images that are no flowers, `per_kind` of each, as PNG bytes."""
    rng = np.random.default_rng(seed)
    kinds: dict[str, list[bytes]] = {"noise": [], "gradient": [], "pattern": [], "scene": []}
    y, x = np.mgrid[0:size, 0:size] / size
    for i in range(per_kind):
        noise = rng.integers(0, 256, (size, size, 3)) if i % 2 else rng.normal(128, 50, (size, size, 3))
        kinds["noise"].append(_png(noise))
        a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        t = (np.cos(rng.uniform(0, math.pi)) * x + np.sin(rng.uniform(0, math.pi)) * y)[..., None]
        kinds["gradient"].append(_png(a + (b - a) * (t - t.min()) / (np.ptp(t) + 1e-9)))
        period = rng.integers(8, 64)
        cells = ((x * size // period + (y * size // period) * (i % 2)) % 2)[..., None]
        kinds["pattern"].append(_png(np.where(cells > 0, a, b)))
        scene = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(90, 230, 3)))
        draw = ImageDraw.Draw(scene)
        draw.rectangle(
            [0, size * rng.uniform(0.5, 0.8), size, size], fill=tuple(int(v) for v in rng.integers(0, 160, 3))
        )
        for _ in range(rng.integers(2, 6)):
            x0, y0 = rng.integers(0, size - 40, 2)
            box = [int(x0), int(y0), int(x0 + rng.integers(20, 120)), int(y0 + rng.integers(20, 120))]
            colour = tuple(int(v) for v in rng.integers(0, 256, 3))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
        buffer = io.BytesIO()
        scene.save(buffer, "PNG")
        kinds["scene"].append(buffer.getvalue())
    return kinds


def _probabilities_and_features(model, pooled, sources) -> tuple[np.ndarray, np.ndarray]:
    size = model_image_size(model)
    probabilities, features = [], []
    for start in range(0, len(sources), 32):
        pixels = np.stack([model_input(s, size) for s in sources[start : start + 32]])
        probabilities.append(predict_batch(model, pixels))
        features.append(keras.ops.convert_to_numpy(pooled(pixels, training=False)))
    return np.concatenate(probabilities), np.concatenate(features)


class Mahalanobis:
    """Distance to the nearest class mean under the training features' shared covariance, shrunk
    towards its mean variance so that 1024 dimensions from a few thousand photos invert."""

    def __init__(self, features: np.ndarray, labels: np.ndarray, shrink: float = 0.1):
        self.means = np.stack([features[labels == c].mean(0) for c in np.unique(labels)])
        centred = features - self.means[labels]
        cov = centred.T @ centred / len(features)
        cov = (1 - shrink) * cov + shrink * np.trace(cov) / len(cov) * np.eye(len(cov))
        self.precision = np.linalg.inv(cov)

    def __call__(self, features: np.ndarray) -> np.ndarray:
        diff = features[:, None, :] - self.means[None]
        return np.einsum("ncd,de,nce->nc", diff, self.precision, diff).min(1)


def _old_rule(probabilities: np.ndarray) -> np.ndarray:
    p = np.clip(probabilities, 1e-12, 1)
    entropy = -(p * np.log(p)).sum(1) / math.log(p.shape[1])
    return (probabilities.max(1) < 0.6) | (entropy > 0.7)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True)
    parser.add_argument("--photos", help="a folder of photos that are no flowers")
    args = parser.parse_args()
    run_dir = Path(args.run)
    model, names = load_run(run_dir)
    pooled = keras.Model(model.input, model.get_layer(HEAD_POOL).output)
    stored, split = Run.open(run_dir).config, load_split(run_dir / SPLIT)
    root, config = Path(stored.data_root), stored.settings
    dataset = scan_dataset(root)
    train_features, _ = cached_features(
        FeatureCache(), pooled, config, root, split.train, fingerprint(dataset)
    )
    val_features, _ = cached_features(FeatureCache(), pooled, config, root, split.val, fingerprint(dataset))
    distance = Mahalanobis(np.asarray(train_features), np.asarray(labels_for(split.train, names)))
    cut = float(np.percentile(distance(np.asarray(val_features)), 95))
    threshold = run_threshold(run_dir)

    groups = {"flowers (test split)": [root / f for f in split.test], **generated_non_flowers()}
    if args.photos:
        groups["photos (--photos)"] = sorted(
            p for p in Path(args.photos).iterdir() if p.suffix.lower() in PHOTO_SUFFIXES
        )
    rates = {}
    for group, sources in groups.items():
        probabilities, features = _probabilities_and_features(model, pooled, sources)
        rates[group] = {
            "n": len(sources),
            "unsure": float((probabilities.max(1) < threshold).mean()),
            "old_rule": float(_old_rule(probabilities).mean()),
            "feature_distance": float((distance(features) > cut).mean()),
            "median_top_probability": float(np.median(probabilities.max(1))),
        }
    emit("confidence_flag", run=run_dir.name, threshold=threshold, distance_cut=cut, rates=rates)


if __name__ == "__main__":
    main()
