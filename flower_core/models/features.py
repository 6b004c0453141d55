"""An on-disk cache of frozen-backbone features, so the head trains in seconds instead of hours.

A frozen backbone maps the same photo to the same features every epoch, so they are computed
once per (dataset fingerprint, backbone, weights, image size, preprocessing, pooling) and kept
as memory-mapped `.npy` files. With augmentation there are two ways: K augmented views of each
training photo, computed once, one drawn per epoch (K backbone passes per photo); or the feature
maps before pooling, which the head augments anew each epoch (one pass per photo). Entries are
built in a private temp folder and renamed into place, so two processes may build or read the
same entry at once.

The same folder holds `pixels/`: scratch space where end-to-end training keeps the decoded
photos of one `fit` (`pixel_scratch`). It is not part of the cache: clearing the cache leaves it
to the trainings that use it, and each new scratch folder sweeps those of dead processes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from flower_core.config import TrainConfig
from flower_core.data.pipeline import image_dataset
from flower_core.models.backbone_specs import PAIR_MAPS_LAYER
from flower_core.models.backbones import get_backbone
from flower_core.models.classifier import augmentation_layers, global_pooling, preprocessing_mode
from flower_core.store.runs import pid_alive

DEFAULT_CACHE_DIR = Path(".cache/features")
FEATURES_FILE = "features.npy"
INDEX_FILE = "index.json"
PIXELS_DIR = "pixels"
# Room left free on the disk after a pixel scratch folder is filled; with less, decode instead.
PIXELS_DISK_MARGIN = 1024**3
StageReporter = Callable[[int, int], None]
# Augmented views are drawn with one fixed seed, so runs that differ only in their seed (for
# seed-noise estimates) share one cache entry instead of recomputing the backbone K times each.
VIEWS_SEED = 1234
# Bumped whenever the augmentation draws differently for the same seed, so that cached views
# made by older code are recomputed: 2 seeds each augmentation layer on its own.
VIEWS_DRAWS = 2


def resolve_cache_root(explicit: str | os.PathLike | None = None) -> Path:
    """The cache folder: `explicit`, else `FLOWER_CACHE`, else `.cache/features`."""
    return Path(explicit or os.environ.get("FLOWER_CACHE") or DEFAULT_CACHE_DIR)


def weights_identity(config: TrainConfig) -> str:
    if config.weights == "none":
        return f"random-init-seed{config.seed}"
    if config.weights == "imagenet":
        return "imagenet"
    stat = Path(config.weights).stat()
    return f"{Path(config.weights).resolve()}:{stat.st_size}:{stat.st_mtime_ns}"


def cache_key(
    config: TrainConfig, fingerprint: str, files: list[str], views: int = 0, maps: bool = False
) -> str:
    """A hash of everything that changes the features; `views > 0` keys augmented views, `maps`
    the feature maps before pooling (which pooling then does not change)."""
    parts = {
        "fingerprint": fingerprint,
        "backbone": config.backbone,
        "weights": weights_identity(config),
        "image_size": config.image_size,
        "preprocessing": preprocessing_mode(config),
        "pooling": None if maps else config.pooling,
        **({"maps": True} if maps else {}),
        "files": hashlib.sha256("\n".join(files).encode()).hexdigest(),
        "views": views,
        "views_seed": VIEWS_SEED if views else None,
        **({"views_draws": VIEWS_DRAWS} if views else {}),
        "keras": keras.__version__,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


def _clean_forward(model):
    """`model`'s compiled forward pass, kept on the model so that all its extractions share one
    trace: tracing a backbone takes seconds, and a run extracts its train, validation and test
    photos. A frozen backbone's weights are read into it once (`_compiled`): fine-tuning, which
    changes them, evaluates the full model instead."""
    forward = getattr(model, "_flower_forward", None)
    if forward is None:
        forward = model._flower_forward = _compiled(model)
    return forward


def _compiled(feature_model, augment=None):
    """The feature forward pass (augmentation first, if any) as one graph, traced once for any
    batch size: on a CPU, eager calls run markedly slower (bench/README.md).

    A backbone of depthwise convolutions with batch normalization (MobileNet, MobileNetV2, the
    EfficientNets) runs on its weights as graph constants, read when the pass is first called
    (the cache's backbones are frozen), so that TensorFlow's graph optimizer folds each
    normalization into the convolution before it and fuses the activation, for a little more
    time on the first call and more memory (bench/README.md). ResNet50's dense convolutions
    gain too little for what folding costs them, and VGG16 has nothing to fold."""
    folds = all(
        any(isinstance(layer, kind) for layer in feature_model.layers)
        for kind in (keras.layers.DepthwiseConv2D, keras.layers.BatchNormalization)
    )

    @tf.function(input_signature=[tf.TensorSpec((None, *feature_model.input_shape[1:]), tf.float32)])
    def forward(batch):
        if augment is not None:
            batch = augment(batch, training=True)
        if not folds:
            return feature_model(batch, training=False)
        trainable, frozen = _weights_as_constants(feature_model)
        return feature_model.stateless_call(trainable, frozen, batch, training=False)[0]

    return forward


def _weights_as_constants(model) -> tuple[list, list]:
    """`model`'s trainable and other weights as constants of the graph being traced: read
    eagerly, outside the trace, then written into it."""
    with tf.init_scope():
        values = [
            [keras.ops.convert_to_numpy(v) for v in variables]
            for variables in (model.trainable_variables, model.non_trainable_variables)
        ]
    return tuple([tf.constant(value) for value in group] for group in values)


def _extract(feature_model, forward, root, files, config, views, out_path, progress):
    """Write `views` passes of `forward` over `files` to the `.npy` file `out_path`: shape
    (views, len(files), *output) for views > 0, else (len(files), *output) for one clean pass.

    Each batch is decoded once for all its views (decoding is a good part of the cost per photo,
    bench/README.md), and rows go straight into a memory-mapped file, so
    memory never holds the whole array (feature maps of many photos would not fit).
    """
    dataset = image_dataset(root, files, None, image_size=config.image_size, batch_size=32)
    row_shape = tuple(feature_model.output_shape[1:])
    out = np.lib.format.open_memmap(
        out_path, mode="w+", dtype="float32", shape=((views,) if views else ()) + (len(files), *row_shape)
    )
    _reserve(out_path)
    passes = max(views, 1)
    done = 0
    for batch in dataset:
        count = int(batch.shape[0])
        for view in range(passes):
            rows = forward(batch).numpy()
            if views:
                out[view, done : done + count] = rows
            else:
                out[done : done + count] = rows
        done += count
        if progress:
            progress(done * passes, len(files) * passes)
    out.flush()
    del out


def _reserve(path) -> None:
    """Allocate a memory-mapped file's blocks now: writing rows into a sparse file on a full disk
    kills the process (SIGBUS) instead of raising an `OSError` that names the file."""
    with open(path, "r+b") as handle:
        os.posix_fallocate(handle.fileno(), 0, os.fstat(handle.fileno()).st_size)


class FeatureCache:
    """Get or build cached features for a list of files (see the module docstring)."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = resolve_cache_root(root)

    def entry(self, key: str) -> Path:
        return self.root / key

    def load(self, key: str) -> np.ndarray | None:
        """The cached array (memory-mapped, read-only) or `None` on a miss."""
        path = self.entry(key) / FEATURES_FILE
        if not path.is_file():
            return None
        return np.load(path, mmap_mode="r")

    def get_or_build(self, key, build: Callable[[Path], None], meta: dict) -> tuple[np.ndarray, bool]:
        """Return `(array, hit)`; on a miss, `build(path)` writes the `.npy` file at `path` in a
        private staging folder, which is then published atomically."""
        cached = self.load(key)
        if cached is not None:
            return cached, True
        self.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=self.root, prefix=f".{key}."))
        try:
            started = time.monotonic()
            build(staging / FEATURES_FILE)
            # How long the build took: `flower_core.training.estimate` measures this machine's speed from it.
            meta = {**meta, "seconds": round(time.monotonic() - started, 2)}
            (staging / INDEX_FILE).write_text(json.dumps(meta))
            os.rename(staging, self.entry(key))
        except OSError as error:
            shutil.rmtree(staging, ignore_errors=True)
            if self.load(key) is None:
                error.filename = error.filename or str(self.entry(key))
                raise
        except BaseException:  # a cancel or a bug while building: leave no staging folder behind
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return self.load(key), False

    def _entry_dirs(self) -> list[Path]:
        """Cache entries and staging folders: everything under the root but the pixel scratch."""
        if not self.root.is_dir():
            return []
        return [p for p in sorted(self.root.iterdir()) if p.name != PIXELS_DIR]

    def size_bytes(self) -> int:
        return sum(f.stat().st_size for d in self._entry_dirs() for f in d.rglob("*") if f.is_file())

    def entries(self) -> list[dict]:
        """What is cached, for the app: key, description and size of each entry."""
        rows = []
        for entry in self._entry_dirs():
            try:
                meta = json.loads((entry / INDEX_FILE).read_text())
            except (OSError, ValueError):  # a staging folder, or a damaged entry: not listed
                continue
            if entry.name.startswith(".") or not isinstance(meta, dict):
                continue
            size = sum(p.stat().st_size for p in entry.iterdir())
            rows.append({"key": entry.name, **meta, "bytes": size})
        return rows

    def clear(self) -> int:
        """Delete every entry; returns the bytes freed. A training's pixel scratch is left alone."""
        freed = self.size_bytes()
        for entry in self._entry_dirs():
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
        return freed


@contextmanager
def pixel_scratch(run_name: str, photos: int, image_size: int, root=None):
    """A folder for the decoded photos of one end-to-end `fit` (`pipeline.image_dataset`'s
    `pixel_cache`), or `None` when there is nothing to keep (`photos` 0: a single epoch) or the
    disk has no room for them (then every epoch decodes).

    It lives in `<cache>/pixels/<run>-<pid>` and is removed when the fit ends; folders left by
    killed processes are swept here, when the next one is made.
    """
    parent = resolve_cache_root(root) / PIXELS_DIR
    parent.mkdir(parents=True, exist_ok=True)
    for stale in parent.iterdir():
        pid = stale.name.rsplit("-", 1)[-1]
        if not (pid.isdigit() and pid_alive(int(pid))):
            shutil.rmtree(stale, ignore_errors=True)
    needed = photos * image_size * image_size * 3
    if not photos or shutil.disk_usage(parent).free < needed + PIXELS_DISK_MARGIN:
        yield None
        return
    folder = parent / f"{run_name}-{os.getpid()}"
    folder.mkdir()
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _meta(config, root, files, kind: str, pooling: str | None) -> dict:
    """What an entry holds, for the app's cache list and `flower_core.training.estimate`'s cache check."""
    return {
        "backbone": config.backbone,
        "image_size": config.image_size,
        "photos": len(files),
        "kind": kind,
        "preprocessing": preprocessing_mode(config),
        "pooling": pooling,
        "weights": weights_identity(config),
        "data_root": str(Path(root).resolve()),
    }


def clean_entry(config, root, files, fingerprint, maps: bool = False) -> tuple[str, dict]:
    """The cache key and description of the clean pooled features of `files`, or of their
    feature maps (`maps`): what `photo_features.cached_features` and `cached_maps` build, and
    `flower_core.models.sharded` builds from shards."""
    if maps:
        return cache_key(config, fingerprint, files, maps=True), _meta(
            config, root, files, "feature maps", None
        )
    return cache_key(config, fingerprint, files), _meta(config, root, files, "clean", config.pooling)


def extract_clean(model, root, files, config, out_path, progress=None) -> None:
    """One clean pass of `model` over `files` into the `.npy` file `out_path`, rows in `files`
    order, uncached (the cache's entries, a cluster's shards and `photo_features` all use it)."""
    _extract(model, _clean_forward(model), root, files, config, 0, out_path, progress)


def extractors(config: TrainConfig) -> list[TrainConfig]:
    """The configs whose cache entries hold `config`'s pooled features: each member's, for a pair
    of backbones with ImageNet weights (a member cached by a run of its own is read back, and the
    pair's features are its members' side by side, as its pooled maps are), else `config`."""
    members = get_backbone(config.backbone).members
    if not members or config.weights != "imagenet":
        return [config]
    return [dataclasses.replace(config, backbone=member) for member in members]


def by_member(build, key, cache, feature_model, config, root, files, fingerprint, progress):
    """`build` (`photo_features.cached_features` or `cached_views`) of a pair of backbones: each
    member's own entry (`key(member config)`), through the member's part of `feature_model`,
    concatenated. `progress` counts the members not yet cached as one pass over `files`."""
    configs = extractors(config)
    pooled = [
        keras.Model(feature_model.inputs, global_pooling(config.pooling)(maps))
        for maps in feature_model.get_layer(PAIR_MAPS_LAYER).input
    ]
    todo = [c for c in configs if cache.load(key(c)) is None]

    def member_progress(member: TrainConfig):
        if progress is None or member not in todo:
            return None
        before = todo.index(member)
        return lambda done, total: progress(round((before * total + done) / len(todo)), total)

    parts = [
        build(cache, model, member, root, files, fingerprint, member_progress(member))
        for member, model in zip(configs, pooled, strict=True)
    ]
    return np.concatenate([np.asarray(values) for values, _ in parts], axis=-1), all(hit for _, hit in parts)


def cached_views(cache, feature_model, config, root, files, fingerprint, progress=None):
    """`config.augment_views` augmented views of each file: shape (views, len(files), dim)."""
    views = config.augment_views
    if len(extractors(config)) > 1:
        return by_member(
            cached_views,
            lambda member: cache_key(member, fingerprint, files, views=views),
            *(cache, feature_model, config, root, files, fingerprint, progress),
        )
    key = cache_key(config, fingerprint, files, views=views)
    meta = {**_meta(config, root, files, f"{views} augmented views", config.pooling), "passes": views}

    def build(path):
        keras.utils.set_random_seed(VIEWS_SEED)
        augment = keras.Sequential(augmentation_layers(VIEWS_SEED), name="view_augmentation")
        _extract(feature_model, _compiled(feature_model, augment), root, files, config, views, path, progress)

    return cache.get_or_build(key, build, meta)


def cached_maps(cache, map_model, config, root, files, fingerprint, progress=None):
    """The backbone's last feature maps of `files`, before pooling: shape (len(files), h, w, c).

    Kept as float32, like the pooled features: float16 would halve the disk they take (200 KB
    per photo for MobileNet at 224 px) but turns the tiny activations of a random-init backbone
    into zeros."""
    key, meta = clean_entry(config, root, files, fingerprint, maps=True)
    return cache.get_or_build(
        key, lambda path: extract_clean(map_model, root, files, config, path, progress), meta
    )
