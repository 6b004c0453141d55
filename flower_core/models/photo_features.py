"""Clean backbone features kept per photo, by the photo's content: a dataset being fixed (photos
relabelled, excluded, added) has its unchanged photos' features read back, and only new photos
go through the backbone.

The run cache (`features.cache_key`) keys a whole file list; on a miss, a run's clean features
(`cached_features`) are read from this store, as the audit's and the embedding map's are, so a
run after a fix computes only the photos the store has not seen. It lives in
`<FLOWER_CACHE>/photos/<settings key>/` as shards: `<id>.npy` rows and `<id>.json`, the SHA-256
of each row's photo, the `.json` renamed into place last, so a reader never sees half a shard
and processes adding shards at once never write the same file.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np

from flower_core.config import TrainConfig
from flower_core.models.classifier import preprocessing_mode
from flower_core.models.features import (
    FeatureCache,
    by_member,
    cache_key,
    clean_entry,
    extract_clean,
    extractors,
    resolve_cache_root,
    weights_identity,
)

PHOTOS_DIR = "photos"


def settings_key(config: TrainConfig) -> str:
    """What changes a photo's features, but not which photos: backbone, weights, size,
    preprocessing, pooling and the Keras version."""
    parts = {
        "backbone": config.backbone,
        "weights": weights_identity(config),
        "image_size": config.image_size,
        "preprocessing": preprocessing_mode(config),
        "pooling": config.pooling,
        "keras": keras.__version__,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


def content_hashes(root: str | os.PathLike, files: list[str]) -> list[str]:
    """The SHA-256 of each photo's bytes: the store's key."""
    return [hashlib.sha256((Path(root) / rel).read_bytes()).hexdigest() for rel in files]


class PhotoFeatures:
    """The store of one setting's features (see the module docstring)."""

    def __init__(self, config: TrainConfig, cache_root: str | os.PathLike | None = None):
        self.config = config
        self.folder = resolve_cache_root(cache_root) / PHOTOS_DIR / settings_key(config)

    def _known(self) -> dict[str, tuple[Path, int]]:
        """Each stored photo's hash -> (its shard's rows file, its row)."""
        known = {}
        for index in sorted(self.folder.glob("*.json")) if self.folder.is_dir() else []:
            try:
                hashes = json.loads(index.read_text())
            except (OSError, ValueError):  # damaged: its photos are computed again
                continue
            rows = index.with_suffix(".npy")
            known.update((digest, (rows, row)) for row, digest in enumerate(hashes))
        return known

    def get(
        self,
        feature_model,
        root: str | os.PathLike,
        files: list[str],
        hashes: list[str],
        progress: Callable[[int, int], None] | None = None,
    ) -> tuple[np.ndarray, int]:
        """Features of `files` (rows in `files` order) and how many had to be computed.

        Args:
            feature_model: the clean feature model of `config` (`Classifier.feature_model`).
            root: the dataset folder `files` are relative to.
            files: relative photo paths.
            hashes: their `content_hashes`.
            progress: `progress(done, total)` while new photos are computed. Defaults to `None`.
        """
        known = self._known()
        missing = sorted({h: rel for rel, h in zip(files, hashes) if h not in known}.items())
        if missing:
            self._add(feature_model, root, missing, progress)
            known = self._known()
        shards: dict[Path, np.ndarray] = {}
        rows = []
        for digest in hashes:
            path, row = known[digest]
            if path not in shards:
                shards[path] = np.load(path, mmap_mode="r")
            rows.append(shards[path][row])
        return np.stack(rows).astype(np.float32), len(missing)

    def _add(self, feature_model, root, missing: list[tuple[str, str]], progress) -> None:
        """Compute the `missing` (hash, photo) pairs into a new shard."""
        self.folder.mkdir(parents=True, exist_ok=True)
        shard = self.folder / uuid.uuid4().hex
        rows, index = shard.with_suffix(".npy"), shard.with_suffix(".json")
        extract_clean(feature_model, root, [rel for _, rel in missing], self.config, rows, progress)
        staging = self.folder / f".{shard.name}.json"
        staging.write_text(json.dumps([digest for digest, _ in missing]))
        os.rename(staging, index)


def cached_features(cache: FeatureCache, feature_model, config, root, files, fingerprint, progress=None):
    """Clean features of `files` (rows in `files` order) and whether the run cache had them; on
    a miss they are assembled from the per-photo store, which computes only the photos it lacks.
    A pair of backbones' are its members' own, side by side (`features.by_member`)."""
    if len(extractors(config)) > 1:
        return by_member(
            cached_features,
            lambda member: cache_key(member, fingerprint, files),
            *(cache, feature_model, config, root, files, fingerprint, progress),
        )
    key, meta = clean_entry(config, root, files, fingerprint)

    def build(path: Path) -> None:
        store = PhotoFeatures(config, cache.root)
        rows, _ = store.get(feature_model, root, files, content_hashes(root, files), progress)
        np.save(path, rows)

    return cache.get_or_build(key, build, meta)
