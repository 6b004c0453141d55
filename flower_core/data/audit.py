"""Audit a dataset: its likely label errors, duplicates and outliers, ranked for review
(`python -m flower_core audit`, the Dataset page's review queue).

The photos' clean features come from the per-photo store (`models.photo_features`), so an
audit after a few fixes computes only the photos that are new; then the heads of
`label_issues` run in seconds. Duplicates are the EDA's (`data.eda`): exact and near, under two
labels, and across the default split.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flower_core.config import PRESETS, SUGGESTED_PRESET, TrainConfig, make_config
from flower_core.data import eda, label_issues
from flower_core.data.dataset import DEFAULT_SPLIT, Dataset, scan_dataset, split_dataset

# The audit's backbone and size unless told: those of the recipe the app suggests (its weights
# install with the requirements, so an audit needs no download).
DEFAULT_BACKBONE = PRESETS[SUGGESTED_PRESET]["backbone"]
DEFAULT_IMAGE_SIZE = PRESETS[SUGGESTED_PRESET]["image_size"]
# progress(stage, done, total), stage one of "checking", "measuring", "features".
AuditProgress = Callable[[str, int, int], None]


@dataclass
class Audit:
    """An audit's result: the photos in order, their features and out-of-fold probabilities,
    the ranked suspects with a summary (`to_json`), and the settings its features came from."""

    dataset: Dataset
    features: np.ndarray
    probabilities: np.ndarray
    suspects: list[dict]
    summary: dict
    config: TrainConfig

    def to_json(self) -> dict:
        return {**self.summary, "suspects": self.suspects}

    def is_of(self, root: str | os.PathLike) -> bool:
        """Whether this audit is of the dataset at `root`, however the path is spelt (a link)."""
        return Path(self.dataset.root).resolve() == Path(root).resolve()


def _feature_config(backbone: str | None, weights: str | None, image_size: int | None, seed: int):
    """The training config whose clean features the audit uses: the suggested recipe's pooling
    and preprocessing, with the backbone, weights and size asked for."""
    return make_config(
        SUGGESTED_PRESET,
        backbone=backbone or DEFAULT_BACKBONE,
        weights=weights,
        image_size=image_size or DEFAULT_IMAGE_SIZE,
        seed=seed,
    )


def _duplicates(table, dataset: Dataset) -> dict[str, list[list[str]]]:
    exact, near = eda.exact_duplicates(table), eda.near_duplicates(table)
    groups = exact + near
    leaks = eda.split_leaks(groups, split_dataset(dataset, **DEFAULT_SPLIT))
    two_labels = [g for g in groups if len({rel.split("/", 1)[0] for rel in g}) > 1]
    return {
        "duplicate_labels": two_labels,
        "duplicate_split": [leak["files"] for leak in leaks],
        "duplicate": [g for g in groups if g not in two_labels],
    }


def audit_dataset(
    root: str | os.PathLike,
    *,
    backbone: str | None = None,
    weights: str | None = None,
    image_size: int | None = None,
    folds: int = label_issues.DEFAULT_FOLDS,
    seed: int = 0,
    progress: AuditProgress | None = None,
    cache_root: str | os.PathLike | None = None,
) -> Audit:
    """Rank a dataset's suspects: likely label errors, duplicates and outliers.

    Args:
        root: the dataset folder, one sub-folder per class.
        backbone: the feature backbone. Defaults to `DEFAULT_BACKBONE`.
        weights: `imagenet`, `none` or a weights file. Defaults to `imagenet`.
        image_size: the backbone's input size in px. Defaults to `DEFAULT_IMAGE_SIZE`.
        folds: stratified folds of the out-of-fold heads. Defaults to `5`.
        seed: the folds' and heads' seed. Defaults to `0`.
        progress: called as `progress(stage, done, total)`. Defaults to `None`.
        cache_root: the feature cache folder. Defaults to `FLOWER_CACHE`, else `.cache/features`.

    Returns:
        An `Audit`.

    Raises:
        FlowerError: a bad dataset, backbone, size or fold count, or missing weights.
    """
    from flower_core.models.classifier import build_classifier
    from flower_core.models.photo_features import PhotoFeatures

    started = time.perf_counter()
    tick = progress or (lambda stage, done, total: None)
    config = _feature_config(backbone, weights, image_size, seed)
    label_issues.check_folds(folds)  # before any photo is read
    dataset = scan_dataset(root, progress=lambda done, total: tick("checking", done, total))
    table = eda.image_table(dataset, progress=lambda done, total: tick("measuring", done, total))
    measured = time.perf_counter()
    model = build_classifier(config, len(dataset.class_names)).feature_model
    features, computed = PhotoFeatures(config, cache_root).get(
        model,
        dataset.root,
        dataset.files,
        list(table["sha256"]),
        progress=lambda done, total: tick("features", done, total),
    )
    extracted = time.perf_counter()
    labels = np.asarray(dataset.labels)
    probabilities = label_issues.audit_probabilities(features, labels, len(dataset.class_names), folds, seed)
    issues, estimated = label_issues.find_label_issues(probabilities, labels)
    headed = time.perf_counter()
    outlier_z = label_issues.outlier_z_scores(features)
    duplicates = _duplicates(table, dataset)
    suspects = label_issues.rank_suspects(
        dataset.files, labels, dataset.class_names, probabilities, issues, outlier_z, duplicates
    )
    summary = {
        "root": str(dataset.root),
        "classes": dataset.class_names,
        "photos": len(dataset.files),
        "backbone": config.backbone,
        "image_size": config.image_size,
        "folds": folds,
        "seed": seed,
        "out_of_fold_accuracy": round(float((probabilities.argmax(axis=1) == labels).mean()), 4),
        "label_issues": int(issues.sum()),
        "estimated_label_errors": estimated,
        "outliers": int((outlier_z > label_issues.OUTLIER_Z).sum()),
        "duplicates": {kind: len(groups) for kind, groups in duplicates.items()},
        "features_computed": computed,
        "seconds": {
            "measuring": round(measured - started, 2),
            "features": round(extracted - measured, 2),
            "heads": round(headed - extracted, 2),
            "total": round(time.perf_counter() - started, 2),
        },
    }
    return Audit(dataset, features, probabilities, suspects, summary, config)


def format_audit(result: dict, shown: int = 20) -> str:
    """The audit as text for a terminal: the summary, then the top suspects."""
    duplicates = ", ".join(f"{kind} {count}" for kind, count in result["duplicates"].items())
    lines = [
        f"audit of {result['root']}: {result['photos']} photos, {len(result['classes'])} classes "
        f"({result['backbone']} at {result['image_size']} px, {result['folds']} folds, "
        f"seed {result['seed']})",
        f"out-of-fold accuracy {result['out_of_fold_accuracy']:.4f}; {result['label_issues']} likely label "
        f"errors (confident learning estimates {result['estimated_label_errors']}); "
        f"{result['outliers']} outliers; duplicate groups: {duplicates}",
        f"features computed for {result['features_computed']} photos; "
        f"took {result['seconds']['total']:.1f} s",
        "",
    ]
    for suspect in result["suspects"][:shown]:
        suggested = f" -> {suspect['suggested']}" if suspect["suggested"] else ""
        group = f" (+{len(suspect['group']) - 1} alike)" if "group" in suspect else ""
        lines.append(
            f"{suspect['score']:.3f} {suspect['kind']:<16} {suspect['path']} "
            f"[{suspect['given']}{suggested}]{group}"
        )
    if len(result["suspects"]) > shown:
        lines.append(f"... and {len(result['suspects']) - shown} more (see --json)")
    return "\n".join(lines)
