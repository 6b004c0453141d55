"""How long a run, or a group of runs, will take on this machine, before it is started.

A run's time is mostly backbone passes over the photos: none when the feature cache already
holds what it needs, one pass per photo (K for augmented views) when it does not, and every
epoch for a network trained end to end. So an estimate is the photos still to pass through the
backbone, divided by this machine's speed for that backbone and image size, plus the head's
epochs and a fixed overhead. The speed comes from, in order:

1. the feature cache: each entry records how long it took to build (`seconds`), so the machine's
   speed is measured from its own past runs (`"measured"`);
2. a short timed probe of the backbone on random pixels, when asked for (`"probe"`);
3. the backbone's `fallback_photos_per_s` (`backbone_specs`), for a 2-core CPU at 224 px (`"fallback"`).

Figures for another image size are scaled by the pixel count. The head's seconds per photo and
epoch are measured from past runs' histories when there are any. Epochs are counted in full:
early stopping usually ends a run sooner, so the estimate is an upper bound.
"""

from __future__ import annotations

import functools
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from flower_core.config import MIN_MAP_POSITIONS, TrainConfig
from flower_core.data.dataset import list_candidates
from flower_core.errors import FlowerError
from flower_core.models.backbones import get_backbone
from flower_core.models.classifier import preprocessing_mode
from flower_core.models.features import FeatureCache, weights_identity
from flower_core.store.runs import Run, RunStore

REFERENCE_SIZE = 224
# A training step (forward and backward pass) costs about three forward passes.
TRAIN_COST = 3.0
# The head's seconds per training photo and epoch when no past run says: the medians of the
# study's MobileNet runs on the real photos (docs/RESULTS.md); on feature maps the head also
# augments and pools them.
FALLBACK_HEAD_S_PER_PHOTO = {"features": 0.0003, "maps": 0.0006}
# Building the model, tracing it and scanning the photos, per run.
RUN_OVERHEAD_S = 10.0


@dataclass(frozen=True)
class Speed:
    """Backbone forward passes per second on this machine, and where the figure came from."""

    photos_per_s: float
    source: str


def backbone_speed(backbone: str, image_size: int, cache_root=None, *, probe: bool = False) -> Speed:
    """This machine's forward speed for `backbone` at `image_size` (see the module docstring)."""
    rates = []
    for entry in FeatureCache(cache_root).entries():
        if entry.get("backbone") == backbone and entry.get("seconds") and entry.get("photos"):
            rate = entry["photos"] * entry.get("passes", 1) / entry["seconds"]
            rates.append(rate * (entry["image_size"] / image_size) ** 2)
    if rates:
        return Speed(statistics.median(rates), "measured")
    if probe:
        return Speed(_probe(backbone, image_size), "probe")
    fallback = get_backbone(backbone).fallback_photos_per_s
    return Speed(fallback * (REFERENCE_SIZE / image_size) ** 2, "fallback")


@functools.cache
def _probe(backbone: str, image_size: int, batch: int = 8, repeats: int = 2) -> float:
    """Time `repeats` batches of random pixels through a random-init backbone (the arithmetic is
    the weights'), after one untimed batch that traces the graph."""
    import keras
    import numpy as np

    from flower_core.models.backbones import build_backbone

    inputs = keras.Input((image_size, image_size, 3))
    model = build_backbone(backbone, "none", inputs, image_size)
    pixels = np.random.default_rng(0).random((batch, image_size, image_size, 3), dtype="float32")
    model.predict_on_batch(pixels)
    started = time.perf_counter()
    for _ in range(repeats):
        model.predict_on_batch(pixels)
    return batch * repeats / (time.perf_counter() - started)


def feature_needs(config: TrainConfig) -> list[dict]:
    """The cache entries a run reads, as (kind, pooling, passes, part of the photos); none for a
    network trained end to end."""
    if not config.head_on_cache:
        return []
    cells = config.image_size // get_backbone(config.backbone).stride
    if config.augments_maps and cells**2 >= MIN_MAP_POSITIONS:
        return [{"kind": "feature maps", "pooling": None, "passes": 1, "part": "all"}]
    clean = {"kind": "clean", "pooling": config.pooling, "passes": 1}
    if config.augment:
        views = config.augment_views
        return [
            {"kind": f"{views} augmented views", "pooling": config.pooling, "passes": views, "part": "train"},
            {**clean, "part": "val+test"},
        ]
    return [{**clean, "part": "all"}]


def _parts(config: TrainConfig, photos: int) -> dict[str, float]:
    val, test = photos * config.val_fraction, photos * config.test_fraction
    return {"all": photos, "train": photos - val - test, "val": val, "test": test, "val+test": val + test}


def _signature(config: TrainConfig, need: dict, data_root) -> tuple:
    return (
        config.backbone,
        config.image_size,
        preprocessing_mode(config),
        need["kind"],
        need["pooling"],
        weights_identity(config),
        str(Path(data_root).resolve()),
    )


def _covered(signature: tuple, entries: list[dict], photos: float) -> bool:
    """Whether cache entries of this signature hold about `photos` photos (entries made before
    the cache recorded pooling, weights or dataset match any)."""
    backbone, size, prep, kind, pooling, weights, root = signature
    held = sum(
        e.get("photos", 0)
        for e in entries
        if (e.get("backbone"), e.get("image_size"), e.get("preprocessing"), e.get("kind"))
        == (backbone, size, prep, kind)
        and e.get("pooling", pooling) == pooling
        and e.get("weights", weights) == weights
        and e.get("data_root", root) == root
    )
    return held >= 0.99 * photos


def _head_s_per_photo(runs_root) -> dict[str, float]:
    """Median head seconds per training photo and epoch of past finished runs, by input kind."""
    samples: dict[str, list[float]] = {"features": [], "maps": []}
    store = RunStore(runs_root)
    for run_dir in store.run_dirs():
        run = Run(run_dir)
        try:
            settings, train = run.config.settings, run.facts.split_sizes.get("train")
        except (FlowerError, OSError):  # an unreadable run says nothing about speed
            continue
        if not train or settings.weights == "none" or settings.fine_tune_blocks:
            continue
        kind = "maps" if settings.augment and run.augment_cache_ran == "maps" else "features"
        samples[kind] += [row.seconds / train for row in run.history if row.seconds]
    return {k: statistics.median(v) if v else FALLBACK_HEAD_S_PER_PHOTO[k] for k, v in samples.items()}


def estimate_run(
    config: TrainConfig,
    data_root,
    *,
    runs_root=None,
    cache_root=None,
    probe: bool = False,
    photos: int | None = None,
    computed: set | None = None,
) -> dict:
    """Seconds one run should take here: backbone passes not yet cached, epochs, overhead.

    Args:
        config: the run's settings.
        data_root: the dataset folder (its photos are counted, not decoded).
        runs_root, cache_root: where past runs and the feature cache live. Default to
            `FLOWER_RUNS` / `FLOWER_CACHE`.
        probe: time the backbone when neither the cache nor past runs measured it. Defaults to `False`.
        photos: the number of photos, when already known. Defaults to counting them.
        computed: cache signatures an earlier run of the same group will have built; this run's
            are added to it. Defaults to `None`.

    Returns:
        `{"seconds", "extraction_s", "training_s", "overhead_s", "photos", "photos_per_s",
        "speed_source", "cached"}`.
    """
    if photos is None:
        photos = sum(len(files) for files in list_candidates(data_root)[1].values())
    speed = backbone_speed(config.backbone, config.image_size, cache_root, probe=probe)
    parts = _parts(config, photos)
    entries = FeatureCache(cache_root).entries()
    computed = set() if computed is None else computed
    extraction = 0.0
    for need in feature_needs(config):
        signature = _signature(config, need, data_root)
        if signature not in computed and not _covered(signature, entries, parts[need["part"]]):
            extraction += parts[need["part"]] * need["passes"] / speed.photos_per_s
        computed.add(signature)
    if feature_needs(config):
        head = _head_s_per_photo(runs_root)
        kind = "maps" if feature_needs(config)[0]["kind"] == "feature maps" else "features"
        training = config.epochs * parts["train"] * head[kind]
    else:
        epoch = (parts["train"] * TRAIN_COST + parts["val"]) / speed.photos_per_s
        training = config.epochs * epoch + parts["test"] / speed.photos_per_s
    if config.fine_tune_blocks:
        training += (
            config.fine_tune_epochs * (parts["train"] * TRAIN_COST + parts["val"]) / speed.photos_per_s
        )
    return {
        "seconds": extraction + training + RUN_OVERHEAD_S,
        "extraction_s": extraction,
        "training_s": training,
        "overhead_s": RUN_OVERHEAD_S,
        "photos": photos,
        "photos_per_s": speed.photos_per_s,
        "speed_source": speed.source,
        "cached": extraction == 0,
    }


def estimate_group(
    configs: list[TrainConfig],
    data_root,
    *,
    runs_root=None,
    cache_root=None,
    probe: bool = False,
    photos: int | None = None,
) -> dict:
    """Seconds a group of runs should take, in order: features one run builds, the next ones
    reuse (a group shares one split, so its runs share cache entries).

    Args:
        photos: the number of photos, when already known. Defaults to counting them once.
        Others: as `estimate_run`.

    Returns:
        `{"seconds", "runs": [per-run estimates], "photos", "speed_source"}`.
    """
    if photos is None:
        photos = sum(len(files) for files in list_candidates(data_root)[1].values())
    computed: set = set()
    runs = [
        estimate_run(
            c,
            data_root,
            runs_root=runs_root,
            cache_root=cache_root,
            probe=probe,
            photos=photos,
            computed=computed,
        )
        for c in configs
    ]
    sources = sorted({r["speed_source"] for r in runs})
    return {
        "seconds": sum(r["seconds"] for r in runs),
        "runs": runs,
        "photos": photos,
        "speed_source": ", ".join(sources),
    }


def format_duration(seconds: float) -> str:
    """`45 s`, `12 min`, `2 h 05 min`: rounded as an estimate should be."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"
