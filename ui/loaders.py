"""Everything slow is loaded here, once: datasets and reports (`st.cache_data`, keyed by a cheap
stamp of the folder), models (`st.cache_resource`, keyed by run id and model file time, few
kept, one copy shared by every session), photos (a huge one downscaled once) and predictions and
explanations (small, bounded caches), so pages switch quickly and memory stays flat however many
photos are explained.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
from collections import OrderedDict
from pathlib import Path

import streamlit as st
from PIL import ImageOps

from flower_core.data.dataset import Dataset, folder_stamp, scan_dataset, split_dataset
from flower_core.data.images import bounded_photo, load_image
from flower_core.errors import FlowerError
from flower_core.evaluation.compare import best_first
from flower_core.store.runs import MODEL, RunStore
from ui.common import runs_root


@st.cache_data(show_spinner="Checking the photos…", max_entries=8)
def load_dataset(root: str, stamp: str) -> Dataset:
    """The scanned dataset (every photo decoded once to find unreadable ones)."""
    return scan_dataset(root)


def current_dataset(root: str | os.PathLike) -> Dataset:
    """The dataset at `root`, from the cache unless its folders changed."""
    return load_dataset(str(root), folder_stamp(root))


def dataset_or_none(root: str | os.PathLike) -> tuple[Dataset | None, str]:
    """The dataset at `root`, or `None` and the one-line reason it is not usable."""
    try:
        return current_dataset(root), ""
    except FlowerError as error:
        return None, str(error)


@st.cache_data(show_spinner="Measuring every photo (sizes, colours, duplicates)…", max_entries=4)
def eda_tables(root: str, stamp: str) -> dict:
    """The EDA of a dataset: the per-photo table, per-class summary, duplicates and the split."""
    from flower_core.data import eda

    dataset = load_dataset(root, stamp)
    table = eda.image_table(dataset)
    exact, near = eda.exact_duplicates(table), eda.near_duplicates(table)
    split = split_dataset(dataset)
    return {
        "dataset": dataset,
        "table": table,
        "summary": eda.class_summary(table, dataset.class_names),
        "imbalance": eda.imbalance_ratio(dataset.counts()),
        "exact": exact,
        "near": near,
        "leaks": eda.split_leaks(exact + near, split),
        "split": eda.split_table(split, dataset.class_names),
    }


@st.cache_data(max_entries=128, show_spinner=False)
def thumbnail(path: str, size: int = 256):
    """A photo, upright and centre-cropped to a `size` pixels square (for grids)."""
    return ImageOps.fit(load_image(path, draft_size=size), (size, size))


@st.cache_data(max_entries=8, show_spinner=False)
def held_photo(data: bytes) -> bytes:
    """A photo as the app holds it: a huge one downscaled once (`images.bounded_photo`), so no
    later prediction, heatmap or cache decodes it at full size again."""
    return bounded_photo(data)


def model_stamp(run_dir: str | os.PathLike) -> float:
    """The model file's modification time: a new model in a run loads afresh."""
    path = Path(run_dir) / MODEL
    return path.stat().st_mtime if path.is_file() else 0.0


@st.cache_resource(max_entries=3, show_spinner="Loading the model…")
def _load_run(run_dir: str, stamp: float):
    from flower_core.evaluation.predict import load_run

    return load_run(run_dir)


def run_model(run_dir: str | os.PathLike):
    """A run's `(model, class_names)`, loaded once per run and model file."""
    return _load_run(str(run_dir), model_stamp(run_dir))


@st.cache_data(max_entries=64, show_spinner=False)
def predict(run_dir: str, stamp: float, image: bytes, top_k: int = 5) -> dict:
    """The prediction record of a photo (see `flower_core.evaluation.predict.describe`)."""
    from flower_core.evaluation.predict import predict_image, run_threshold

    model, class_names = _load_run(run_dir, stamp)
    return predict_image(model, class_names, image, top_k=top_k, threshold=run_threshold(run_dir))


@st.cache_resource
def _results() -> tuple[OrderedDict, threading.Lock]:
    """Heatmaps and a zip's predictions, shared by every session: kept here rather than in
    `st.cache_data`, whose cached functions may not move a progress bar drawn outside them."""
    return OrderedDict(), threading.Lock()


def _remembered(key: tuple, compute, max_entries: int):
    """`compute()`, or what it gave for `key` before; the `max_entries` newest are kept per
    kind (`key[0]`)."""
    results, lock = _results()
    with lock:
        if key in results:
            results.move_to_end(key)
            return results[key]
    value = compute()
    with lock:
        results[key] = value
        kept = [k for k in results if k[0] == key[0]]
        for old in kept[: max(len(kept) - max_entries, 0)]:
            del results[old]
    return value


def predict_zip(run_dir: str, stamp: float, archive: bytes, progress=None) -> list[dict]:
    """The prediction records of every photo in a zip (`predict.predict_zip`: unpacked with the
    dataset zip's safety rules, at most the upload limit, then removed), named by their path in it;
    `progress` hears how far they are (not when they were computed before)."""
    from flower_core.evaluation.predict import predict_zip, run_threshold

    def compute() -> list[dict]:
        model, class_names = _load_run(run_dir, stamp)
        return predict_zip(
            model,
            class_names,
            io.BytesIO(archive),
            max_bytes=int(st.get_option("server.maxUploadSize")) * 1024**2,
            threshold=run_threshold(run_dir),
            progress=progress,
        )

    return _remembered(("zip", run_dir, stamp, hashlib.sha256(archive).hexdigest()), compute, 2)


def explain(
    run_dir: str,
    stamp: float,
    image: bytes,
    method: str,
    layer: str | None,
    target: str | None,
    progress=None,
):
    """An `Explanation` of a photo by a run's model (see `flower_core.explain`); `progress`
    hears how far the map is (not when it was computed before)."""
    from flower_core.explain import explain_image

    def compute():
        model, class_names = _load_run(run_dir, stamp)
        return explain_image(
            model, image, method, layer=layer, target_class=target, class_names=class_names, progress=progress
        )

    key = ("explain", run_dir, stamp, hashlib.sha256(image).hexdigest(), method, layer, target)
    return _remembered(key, compute, 8)


@st.cache_resource(max_entries=1, show_spinner=False)
def _audit_map_model(config_json: str, num_classes: int):
    from flower_core.config import TrainConfig
    from flower_core.models.classifier import build_classifier

    return build_classifier(TrainConfig.from_json(json.loads(config_json)), num_classes).map_model


def audit_map_model(audit):
    """The audit's backbone to its last feature maps (`explain.audit_map`), built once per setting."""
    return _audit_map_model(
        json.dumps(audit.config.to_json(), sort_keys=True), len(audit.dataset.class_names)
    )


@st.cache_data(max_entries=8, show_spinner=False)
def explainable_layers(run_dir: str, stamp: float) -> tuple[list[str], str]:
    """The model's explainable layers and the default one."""
    from flower_core.explain import resolve_layer, spatial_layers

    model, _ = _load_run(run_dir, stamp)
    return spatial_layers(model), resolve_layer(model)


def runs() -> list[dict]:
    """Summaries of every run, newest first."""
    return RunStore(runs_root()).list_runs()


def finished_runs() -> list[dict]:
    """Runs with a model, the best test accuracy first (`compare.best_first`)."""
    return best_first(r for r in runs() if r.get("has_model"))
