"""Clean features and feature maps of a large dataset computed in shards, one Ray task per node,
and merged into the one feature-cache entry a single machine would have built (same key, same
rows in the same order).

Each shard task builds the run's feature model on its node (the same weights: a weights file,
ImageNet's, or a random init drawn from the run's seed) and writes its rows into the entry's
staging folder, on the cache every node mounts; the merge copies them into `features.npy` and
removes them before the entry is published. Augmented views are not sharded: their random draws
follow one sequence over all photos.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from flower_core import cluster
from flower_core.config import TrainConfig
from flower_core.errors import FlowerError
from flower_core.models.features import cached_maps, clean_entry, extract_clean
from flower_core.models.photo_features import cached_features

# A run on a cluster shards the clean features (or maps) of at least this many photos;
# `FLOWER_RAY_SHARD_PHOTOS` sets it.
SHARD_PHOTOS_ENV = "FLOWER_RAY_SHARD_PHOTOS"
DEFAULT_SHARD_PHOTOS = 2000


def shard_photos() -> int:
    raw = os.environ.get(SHARD_PHOTOS_ENV, "").strip()
    if not raw:
        return DEFAULT_SHARD_PHOTOS
    if not raw.isdigit() or int(raw) < 1:
        raise FlowerError(
            f"{SHARD_PHOTOS_ENV} must be a whole number of photos, 1 or more. Received: {raw!r}"
        )
    return int(raw)


def for_cluster(build, photos: int):
    """The sharded form of `build` (`cached_features` or `cached_maps`) when runs train on a
    cluster and there are at least `shard_photos()` photos; else `build` itself."""
    if not cluster.address() or photos < shard_photos():
        return build
    return {cached_features: sharded_features, cached_maps: sharded_maps}.get(build, build)


def sharded_maps(cache, map_model, config, root, files, fingerprint, progress=None, *, shards=None):
    """`cached_maps`, computed in shards on the cluster (see `sharded_features`)."""
    return sharded_features(
        cache, map_model, config, root, files, fingerprint, progress, shards=shards, maps=True
    )


def sharded_features(
    cache, feature_model, config, root, files, fingerprint, progress=None, *, shards=None, maps=False
):
    """`cached_features` (the same entry), computed as `shards` Ray tasks on the cluster.

    Args:
        feature_model: unused here (each node builds its own from `config`); kept so that this
            replaces `cached_features` where it is called.
        shards: how many tasks. Defaults to `None` (one per node alive).
        maps: the feature maps before pooling instead (`cached_maps`). Defaults to `False`.

    Returns:
        `(array, hit)` as `FeatureCache.get_or_build`.
    """
    key, meta = clean_entry(config, root, files, fingerprint, maps=maps)
    meta["nodes"] = []  # the nodes its shards were computed on, once built
    return cache.get_or_build(
        key,
        lambda path: meta["nodes"].extend(_build(path, config, root, files, shards, maps, progress)),
        meta,
    )


def _build(
    path: Path, config: TrainConfig, root, files: list[str], shards, maps: bool, progress
) -> list[str]:
    """Extract `files` in shards on the cluster into the `.npy` file `path`; returns the nodes."""
    ray = cluster.connect()
    resources = cluster.run_resources(ray)
    task = ray.remote(max_calls=1)(_extract_shard).options(**resources)
    count = max(1, min(shards or cluster.alive_nodes(ray), len(files)))
    bounds = np.linspace(0, len(files), count + 1).astype(int)
    parts = [path.parent / f"shard-{i}.npy" for i in range(count)]
    refs = {
        task.remote(config.to_json(), str(root), files[a:b], str(part), maps, resources["num_cpus"]): b - a
        for part, a, b in zip(parts, bounds[:-1], bounds[1:])
    }
    waiting, done, nodes = list(refs), 0, set()
    try:
        while waiting:
            ready, waiting = ray.wait(waiting, num_returns=1)
            nodes.add(ray.get(ready[0]))
            done += refs[ready[0]]
            if progress:
                progress(done, len(files))
    finally:
        for ref in waiting:  # a cancelled run, or a shard that failed: stop the others
            ray.cancel(ref, force=True)
    _merge(parts, path)
    return sorted(nodes)


def _merge(parts: list[Path], path: Path) -> None:
    """Copy the shards' rows, in order, into the `.npy` file `path`; the shards are removed."""
    arrays = [np.load(part, mmap_mode="r") for part in parts]
    out = np.lib.format.open_memmap(
        path, mode="w+", dtype="float32", shape=(sum(len(a) for a in arrays), *arrays[0].shape[1:])
    )
    start = 0
    for array in arrays:
        out[start : start + len(array)] = array
        start += len(array)
    out.flush()
    del out, arrays
    for part in parts:
        part.unlink()


def _extract_shard(stored: dict, root: str, files: list[str], out_path: str, maps: bool, cpus: float) -> str:
    """The task: build the run's feature model on this node and extract one shard; returns the
    node's id."""
    import ray

    cluster.limit_threads(cpus)
    from flower_core.models.classifier import build_classifier

    config = TrainConfig.from_json(stored)
    clf = build_classifier(config, 2)  # the class count changes only the head, never the features
    extract_clean(clf.map_model if maps else clf.feature_model, root, files, config, Path(out_path))
    return ray.get_runtime_context().get_node_id()
