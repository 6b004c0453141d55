"""Evaluate a model on labelled photos: loss, accuracy, per-class report, confusion, mistakes.

`evaluate_model` is what training calls on the test split to write `metrics.json`;
`evaluate_run` evaluates a stored run on its own test split or on any folder laid out
`<root>/<class>/<image>` whose classes are some of the run's (matched by name). Photos are read
with `model_input`, the training pipeline's own function, so the numbers match training's.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np

from flower_core.data.dataset import labels_for, list_candidates, load_split
from flower_core.errors import FlowerError, ImageError
from flower_core.evaluation.calibration import confidence_threshold, reliability
from flower_core.evaluation.predict import load_run, model_image_size, predict_files
from flower_core.evaluation.uncertainty import accuracy_text
from flower_core.store.runs import SPLIT, Run

# Keras' categorical cross-entropy clips probabilities to [eps, 1 - eps] the same way.
_EPSILON = 1e-7


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
    """Counts of (true, predicted) pairs; rows are true classes, columns predicted ones."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true, int), np.asarray(y_pred, int)), 1)
    return matrix


def per_class_report(confusion: np.ndarray, class_names: list[str]) -> dict:
    """Precision, recall, F1 and support per class; 0.0 where a ratio has nothing to divide."""
    hits = np.diag(confusion).astype(float)
    predicted, support = confusion.sum(axis=0), confusion.sum(axis=1)
    precision = np.divide(hits, predicted, out=np.zeros_like(hits), where=predicted > 0)
    recall = np.divide(hits, support, out=np.zeros_like(hits), where=support > 0)
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(hits), where=total > 0)
    return {
        name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for name, p, r, f, s in zip(class_names, precision, recall, f1, support, strict=True)
    }


def most_confused(confusion: np.ndarray, class_names: list[str], top: int | None = 5) -> list[dict]:
    """The largest off-diagonal cells: which class is most often taken for which. `top=None`
    lists every cell with a mistake."""
    off_diagonal = np.array(confusion)
    np.fill_diagonal(off_diagonal, 0)
    order = np.argsort(-off_diagonal, axis=None, kind="stable")[:top]
    cells = zip(*np.unravel_index(order, off_diagonal.shape), strict=True)
    return [
        {"true": class_names[t], "predicted": class_names[p], "count": int(off_diagonal[t, p])}
        for t, p in cells
        if off_diagonal[t, p] > 0
    ]


def summarise(probabilities: np.ndarray, labels, class_names: list[str], files: list[str]) -> dict:
    """All metrics from predicted probabilities (n, classes) and true labels (n,)."""
    probabilities = np.asarray(probabilities, np.float64)
    labels = np.asarray(labels, int)
    predicted = probabilities.argmax(axis=1)
    true_probability = probabilities[np.arange(len(labels)), labels]
    losses = -np.log(np.clip(true_probability, _EPSILON, 1.0 - _EPSILON))
    confusion = confusion_matrix(labels, predicted, len(class_names))
    wrong = [
        {
            "path": files[i],
            "true_class": class_names[labels[i]],
            "predicted_class": class_names[predicted[i]],
            "confidence": float(probabilities[i, predicted[i]]),
            "true_probability": float(true_probability[i]),
            "loss": float(losses[i]),
        }
        for i in np.flatnonzero(predicted != labels)
    ]
    return {
        "test_loss": float(losses.mean()),
        "test_accuracy": float((predicted == labels).mean()),
        "num_files": len(labels),
        "per_class": per_class_report(confusion, class_names),
        "confusion": confusion.tolist(),
        "class_names": list(class_names),
        "most_confused": most_confused(confusion, class_names),
        "misclassified": sorted(wrong, key=lambda row: -row["loss"]),
        "calibration": reliability(probabilities, labels),
    }


def _predict_files(model, root: Path, files: list[str], size: int, batch_size: int, progress):
    """Probabilities of the readable files in order, their indices, and the unreadable ones."""
    kept, probabilities, skipped = [], [], []
    outcomes = predict_files(model, [root / rel for rel in files], size, batch_size, progress)
    for index, (rel, (_, outcome)) in enumerate(zip(files, outcomes, strict=True)):
        if isinstance(outcome, ImageError):
            skipped.append({"path": rel, "reason": str(outcome)})
        else:
            kept.append(index)
            probabilities.append(outcome[None])
    return kept, probabilities, skipped


def confidence_on(
    model: keras.Model,
    class_names: list[str],
    data_root,
    files: list[str],
    image_size: int | None = None,
    batch_size: int = 32,
) -> dict:
    """A run's confidence threshold (`calibration.confidence_threshold`) from the model's
    predictions on labelled photos, its validation split; unreadable photos are left out."""
    size = image_size or model_image_size(model)
    kept, probabilities, _ = _predict_files(model, Path(data_root), files, size, batch_size, None)
    if not kept:
        raise FlowerError(f"none of the {len(files)} validation photos could be read in {data_root}")
    labels = labels_for(files, class_names)
    return confidence_threshold(np.concatenate(probabilities), [labels[i] for i in kept])


def evaluate_model(
    model: keras.Model,
    class_names: list[str],
    data_root: str | os.PathLike,
    files: list[str],
    batch_size: int = 32,
    image_size: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Evaluate a model on labelled photos, the fields of `metrics.json` and the mistakes.

    Unreadable photos are left out and listed in `skipped`, so one bad file costs one line,
    not the whole evaluation.

    Args:
        model: the classifier.
        class_names: its class names in label order.
        data_root: the dataset folder.
        files: paths relative to `data_root`, `<class>/<name>`; the class folder is the label.
        batch_size: photos per forward pass. Defaults to `32`.
        image_size: the model's input size. Defaults to `None` (read from the model).
        progress: called as `progress(done, total)` after each batch. Defaults to `None`.

    Returns:
        `test_loss`, `test_accuracy`, `per_class`, `confusion` (rows = true), `class_names`,
        `num_files`, `most_confused`, `misclassified` (sorted by loss, highest first) and
        `skipped` (unreadable files with their reason).

    Example:

    >>> metrics = evaluate_model(model, ["daisy", "rose"], "data/flowers", split.test)
    >>> metrics["test_accuracy"]
    """
    if not files:
        raise FlowerError(f"no photos to evaluate in {data_root}")
    labels = labels_for(files, class_names)
    size = image_size or model_image_size(model)
    kept, probabilities, skipped = _predict_files(model, Path(data_root), files, size, batch_size, progress)
    if not kept:
        raise FlowerError(f"none of the {len(files)} photos could be read in {data_root}")
    metrics = summarise(
        np.concatenate(probabilities),
        [labels[i] for i in kept],
        class_names,
        [files[i] for i in kept],
    )
    return {**metrics, "skipped": skipped}


def folder_files(data_root: str | os.PathLike, class_names: list[str]) -> tuple[list[str], list[str]]:
    """Photos of a `<root>/<class>/<image>` folder whose class is one of `class_names`.

    Returns:
        The relative paths, and the folder's other class folders (ignored).
    """
    folders, candidates = list_candidates(data_root, min_classes=1)
    matched = [name for name in folders if name in class_names]
    if not matched:
        raise FlowerError(
            f"no class folder of {data_root} matches the run's classes ({', '.join(class_names)}). "
            f"Received: folders {', '.join(folders)}"
        )
    files = [rel for name in matched for rel in candidates[name]]
    return files, [name for name in folders if name not in class_names]


def evaluate_run(run_dir: str | os.PathLike, data_root: str | os.PathLike | None = None) -> dict:
    """Evaluate a run on its test split, or on a folder holding some of its classes.

    Args:
        run_dir: the run folder.
        data_root: a folder `<root>/<class>/<image>`. Defaults to `None`: the run's test split
            (`split.json`) in the run's dataset (`data_root` of `config.json`).

    Returns:
        The dict of `evaluate_model`, plus `run`, `data_root`, `source` ("test split" or
        "folder") and `ignored_classes`.
    """
    run_dir = Path(run_dir)
    model, class_names = load_run(run_dir)
    ignored: list[str] = []
    if data_root is None:
        data_root = Run(run_dir).config.data_root
        if not data_root or not (run_dir / SPLIT).is_file():
            raise FlowerError(f"run {run_dir.name} has no dataset or {SPLIT}: pass --data DIR")
        files, source = list(load_split(run_dir / SPLIT).test), "test split"
    else:
        files, ignored = folder_files(data_root, class_names)
        source = "folder"
    metrics = evaluate_model(model, class_names, data_root, files)
    metrics.update(run=str(run_dir), data_root=str(data_root), source=source, ignored_classes=ignored)
    return metrics


def format_metrics(metrics: dict) -> str:
    """A terminal report: loss and accuracy, the per-class table, the worst mistakes."""
    lines = [
        f"loss {metrics['test_loss']:.4f}  accuracy "
        f"{accuracy_text(metrics['test_accuracy'], metrics['num_files'], digits=2)}",
        f"{'class':<16}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>9}",
    ]
    for name, row in metrics["per_class"].items():
        lines.append(
            f"{name:<16}{row['precision']:>10.3f}{row['recall']:>10.3f}{row['f1']:>10.3f}{row['support']:>9d}"
        )
    lines.append(
        "confusion (rows = true): "
        + " | ".join(" ".join(str(c) for c in row) for row in metrics["confusion"])
    )
    for row in metrics["misclassified"][:10]:
        lines.append(
            f"  {row['path']}: {row['true_class']} taken for {row['predicted_class']} "
            f"({row['confidence']:.1%}, loss {row['loss']:.2f})"
        )
    lines += [f"  skipped {row['path']}: {row['reason']}" for row in metrics.get("skipped", [])]
    return "\n".join(lines)
