"""Predict the flower in any photo a person may upload: top-k classes and a low-confidence flag.

Photos go through `flower_core.data.images.model_input`, the very function the training pipeline
uses, so inference sees exactly the pixels training saw. The model holds its own preprocessing.

Low confidence ("the model is unsure") is flagged when the top probability is below the run's
own threshold, chosen on its validation photos when it trained (`metrics.json` "confidence",
`calibration.confidence_threshold`): below it the run is right less often than the target
accuracy. Runs trained before that field existed fall back to `MIN_TOP_PROBABILITY`. A softmax
classifier has no "none of these" class: a low top probability says the model hesitates between
flowers, not that the photo is no flower (docs/RESULTS.md measures both).
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import keras
import numpy as np
from PIL import Image

from flower_core.data.images import DECODE_THREADS, ImageSource, is_candidate_image, model_input
from flower_core.errors import FlowerError, ImageError
from flower_core.models.inference import predict_probabilities
from flower_core.store.run_files import Metrics
from flower_core.store.runs import FACTS, Run, atomic_write_bytes, load_run_model

if TYPE_CHECKING:
    import pandas as pd

# The fallback threshold for runs without their own: where the `best` preset's reliability curve
# on the real test photos turns (docs/RESULTS.md, "Calibration").
MIN_TOP_PROBABILITY = 0.6
BATCH_SIZE = 32
# Photo formats Pillow cannot read: listed in a folder's results as errors, not skipped quietly.
UNSUPPORTED_PHOTO_EXTENSIONS = frozenset({".heic", ".heif", ".svg", ".dng", ".cr2", ".nef", ".arw"})


def run_class_names(run_dir: str | os.PathLike) -> list[str]:
    """The class names of a run, in label order, from what it learned when it started."""
    names = Run(run_dir).facts.class_names
    if not names:
        raise FlowerError(f"not a run folder with a trained model (no class names in {FACTS}): {run_dir}")
    return list(names)


def load_run(run_dir: str | os.PathLike) -> tuple[keras.Model, list[str]]:
    """A run's model and its class names, checked against each other."""
    class_names = run_class_names(run_dir)
    model = load_run_model(Path(run_dir))
    outputs = model.output_shape[-1]
    if outputs != len(class_names):
        raise FlowerError(
            f"run {run_dir}: the model has {outputs} outputs but the run names {len(class_names)} classes"
        )
    return model, class_names


def model_image_size(model: keras.Model) -> int:
    """The square input size the model was built for."""
    return int(model.input_shape[1])


def predict_batch(model: keras.Model, pixels: np.ndarray) -> np.ndarray:
    """Probabilities for a batch of model inputs, (batch, classes), in inference mode, through
    the model's one compiled graph (`inference`: an eager call holds every layer's output)."""
    return predict_probabilities(model, pixels)


def run_threshold(run_dir: str | os.PathLike) -> float:
    """The run's own "sure" threshold from its validation photos, else `MIN_TOP_PROBABILITY`
    (a run trained before thresholds were stored, or an unreadable `metrics.json`)."""
    try:
        return metrics_threshold(Run(run_dir).metrics)
    except FlowerError:
        return MIN_TOP_PROBABILITY


def metrics_threshold(metrics: Metrics) -> float:
    """The threshold stored in a run's metrics (`confidence`), else `MIN_TOP_PROBABILITY`."""
    return MIN_TOP_PROBABILITY if metrics.threshold is None else metrics.threshold


def assess(probabilities: np.ndarray, threshold: float = MIN_TOP_PROBABILITY) -> dict:
    """Entropy and the low-confidence flag (with its reason) of one probability vector.

    Args:
        probabilities: the model's probabilities for one photo.
        threshold: the top probability below which the model is unsure (`run_threshold`).
            Defaults to `MIN_TOP_PROBABILITY`.
    """
    p = np.clip(np.asarray(probabilities, np.float64), 0.0, 1.0)
    entropy = float(-np.sum(p * np.log(p, where=p > 0, out=np.zeros_like(p))))
    normalised = entropy / math.log(len(p)) if len(p) > 1 else 0.0
    unsure = bool(p.max() < threshold)
    return {
        "entropy": entropy,
        "normalised_entropy": normalised,
        "low_confidence": unsure,
        "threshold": float(threshold),
        "reason": f"the model is unsure: top probability {p.max():.2f} is below this run's "
        f"threshold {threshold:.2f}"
        if unsure
        else "",
    }


def describe(
    probabilities: np.ndarray, class_names: list[str], top_k: int = 3, threshold: float = MIN_TOP_PROBABILITY
) -> dict:
    """The prediction record of one photo: top-k, every probability, entropy and the flag."""
    if top_k < 1:
        raise FlowerError(f"top-k must be at least 1. Received: top_k={top_k}")
    order = np.argsort(-np.asarray(probabilities), kind="stable")[:top_k]
    top = [{"class": class_names[i], "probability": float(probabilities[i])} for i in order]
    return {
        "predicted_class": top[0]["class"],
        "probability": top[0]["probability"],
        "top_k": top,
        "probabilities": {name: float(p) for name, p in zip(class_names, probabilities, strict=True)},
        **assess(probabilities, threshold),
    }


def predict_image(
    model: keras.Model,
    class_names: list[str],
    image_source: ImageSource,
    top_k: int = 3,
    image_size: int | None = None,
    threshold: float = MIN_TOP_PROBABILITY,
) -> dict:
    """Predict one photo (a path, its bytes or an open file).

    Args:
        model: the classifier.
        class_names: its class names in label order.
        image_source: the photo.
        top_k: how many classes to list. Defaults to `3`.
        image_size: the model's input size. Defaults to `None` (read from the model).
        threshold: the run's low-confidence threshold (`run_threshold`). Defaults to
            `MIN_TOP_PROBABILITY`.

    Returns:
        A dict from `describe`.

    Raises:
        ImageError: the photo cannot be read (with the reason in one line).
    """
    pixels = model_input(image_source, image_size or model_image_size(model))
    return describe(predict_batch(model, pixels[None])[0], class_names, top_k, threshold)


def _is_image_file(path: Path) -> bool:
    """A photo by its name (so a broken one is reported) or by its content (whatever its name)."""
    if is_candidate_image(path) or path.suffix.lower() in UNSUPPORTED_PHOTO_EXTENSIONS:
        return True
    try:
        with Image.open(path):
            return True
    except Image.DecompressionBombError:
        return True
    except (OSError, ValueError, SyntaxError):
        return False


def find_images(paths: list[str | os.PathLike]) -> list[Path]:
    """Files as given, and the images inside folders (recursively, hidden entries skipped)."""
    found = []
    for entry in map(Path, paths):
        if entry.is_dir():
            files = sorted(
                p
                for p in entry.rglob("*")
                if p.is_file() and not any(part.startswith(".") for part in p.relative_to(entry).parts)
            )
            found += [p for p in files if _is_image_file(p)]
        else:
            found.append(entry)
    return found


def read_pixels(path: Path, image_size: int) -> np.ndarray | ImageError:
    """The model input of one file, or the `ImageError` saying why it cannot be read."""
    try:
        return model_input(path, image_size)
    except ImageError as error:
        return error


def predict_files(
    model: keras.Model, paths: list[Path], size: int, batch_size: int = BATCH_SIZE, progress=None
) -> Iterator[tuple[Path, np.ndarray | ImageError]]:
    """Each file's probabilities, or the `ImageError` saying why it cannot be read, in order;
    photos are decoded on `DECODE_THREADS` threads and predicted `batch_size` at a time.

    Args:
        progress: called as `progress(done, total)` after each batch. Defaults to `None`.
    """
    with ThreadPoolExecutor(DECODE_THREADS) as pool:
        for start in range(0, len(paths), batch_size):
            chunk = paths[start : start + batch_size]
            loaded = list(pool.map(lambda p: read_pixels(p, size), chunk))
            good = [item for item in loaded if isinstance(item, np.ndarray)]
            probabilities = iter(predict_batch(model, np.stack(good)) if good else [])
            for path, item in zip(chunk, loaded, strict=True):
                yield path, (item if isinstance(item, ImageError) else next(probabilities))
            if progress:
                progress(min(start + batch_size, len(paths)), len(paths))


def predict_loaded(
    model: keras.Model,
    class_names: list[str],
    files: list[Path],
    *,
    threshold: float = MIN_TOP_PROBABILITY,
    top_k: int = 3,
    batch_size: int = BATCH_SIZE,
    names: list[str] | None = None,
    progress=None,
) -> list[dict]:
    """Predict many photo files with a loaded model (`predict_files`); one bad file never stops
    the batch.

    Args:
        names: how each file is named in the results. Defaults to `None` (its path).
        progress: called as `progress(done, total)` after each batch. Defaults to `None`.

    Returns:
        One dict per file, in order: `path` and the fields of `describe`, or `path` and `error`
        (a one-line reason) for a file that cannot be read.
    """
    names = names or [str(path) for path in files]
    results = []
    outcomes = predict_files(model, files, model_image_size(model), batch_size, progress)
    for name, (_, outcome) in zip(names, outcomes, strict=True):
        record = (
            {"error": str(outcome)}
            if isinstance(outcome, ImageError)
            else describe(outcome, class_names, top_k, threshold)
        )
        results.append({"path": name, **record})
    return results


def predict_paths(
    run_dir: str | os.PathLike,
    paths: list[str | os.PathLike],
    top_k: int = 3,
    batch_size: int = BATCH_SIZE,
) -> list[dict]:
    """Predict many photos and folders (walked for photos) with a run's model.

    Returns:
        `predict_loaded`'s records.

    Raises:
        FlowerError: the run cannot be loaded, no image was found, or none could be read.
    """
    model, class_names = load_run(run_dir)
    files = find_images(paths)
    if not files:
        raise FlowerError(f"no images found in: {', '.join(map(str, paths))}")
    results = predict_loaded(
        model, class_names, files, threshold=run_threshold(run_dir), top_k=top_k, batch_size=batch_size
    )
    if all("error" in r for r in results):
        raise FlowerError(f"no readable image: {results[0]['path']}: {results[0]['error']}")
    return results


def predict_zip(
    model: keras.Model, class_names: list[str], source, *, max_bytes: int, **options
) -> list[dict]:
    """Predict every photo in a zip (an upload), unpacked with the dataset zip's safety rules
    (`intake.archive.extract_zip`: no traversal or links, at most `max_bytes` unpacked) into a
    temporary folder that is removed afterwards; each photo named by its path in the zip.

    Args:
        source: the zip's path or an open binary file.
        max_bytes: the most bytes its photos may hold unpacked.
        **options: `predict_loaded`'s keywords (`threshold`, `top_k`, `progress`).

    Raises:
        FlowerError: not a zip, unsafe, over the limit, or no photo in it.
    """
    from flower_core.intake.archive import extract_zip

    with tempfile.TemporaryDirectory(prefix="flower-predict-") as folder:
        root = Path(folder) / "photos"
        extract_zip(source, root, max_bytes=max_bytes)
        files = find_images([root])
        if not files:
            raise FlowerError("no photos in this zip; put .jpg or .png photos in it")
        names = [path.relative_to(root).as_posix() for path in files]
        return predict_loaded(model, class_names, files, names=names, **options)


def predictions_table(results: list[dict]) -> pd.DataFrame:
    """One row per photo: path, prediction, flag, error, top-k and each class's probability.
    (pandas is imported here, not with the module: a training reads this module for its test
    evaluation and would otherwise pay for importing it.)"""
    import pandas as pd

    rows = []
    for r in results:
        row = {
            "path": r["path"],
            "predicted_class": r.get("predicted_class"),
            "probability": r.get("probability"),
            "low_confidence": r.get("low_confidence"),
            "top_k": ", ".join(f"{t['class']} {t['probability']:.3f}" for t in r.get("top_k", [])),
            "error": r.get("error", ""),
        }
        row.update({f"p_{name}": p for name, p in r.get("probabilities", {}).items()})
        rows.append(row)
    return pd.DataFrame(rows)


def csv_bytes(results: list[dict]) -> bytes:
    """`predictions_table(results)` as CSV (what `to_csv` writes, the app's download)."""
    return predictions_table(results).to_csv(index=False).encode()


def to_csv(results: list[dict], path: str | os.PathLike) -> Path:
    """Write `predictions_table(results)` as CSV, atomically (a reader never sees half a file,
    an earlier file stays whole if the write fails); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, csv_bytes(results))
    return path


def format_predictions(results: list[dict]) -> str:
    """Human-readable lines for the terminal: one per photo, with the flag or the error."""
    lines = []
    for r in results:
        if "error" in r:
            lines.append(f"{r['path']}: error: {r['error']}")
            continue
        top = ", ".join(f"{t['class']} {t['probability']:.1%}" for t in r["top_k"])
        flag = f"  [{r['reason']}]" if r["low_confidence"] else ""
        lines.append(f"{r['path']}: {top}{flag}")
    return "\n".join(lines)
