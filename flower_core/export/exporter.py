"""Export a finished run's model so it leaves the studio: SavedModel, TFLite (float16 and int8),
ONNX, with `labels.txt`, a model card and "use it" snippets, each format verified by its runtime.

Verified, not assumed: every exported file is loaded by its own runtime and run on the run's test
photos, with the very pixels the Keras model gets (`flower_core.data.images.model_input`). Float32
formats must give the same top class on every photo and probabilities within `FLOAT_TOLERANCE`;
the quantised ones (float16 weights, int8) the same top class on at least
`QUANTISED_MIN_AGREEMENT` of the photos. With the default formats, one that disagrees is left out
and the report says why (int8 may flip a model's near-ties); formats named explicitly are all
or nothing.

Everything is written into a private folder beside `out` and renamed into place only when all
went well, so a failed export leaves nothing behind; a failed write (a full disk, whichever
library was writing) is one line (`_write_errors`).
"""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from flower_core.data.dataset import Split, load_split
from flower_core.errors import FlowerError, ImageError
from flower_core.evaluation.predict import load_run, predict_batch, read_pixels
from flower_core.export import card as export_card
from flower_core.export import formats as export_formats
from flower_core.export.formats import (
    FLOAT_TOLERANCE,
    FORMATS,
    QUANTISED_MIN_AGREEMENT,
    parse_formats,
)
from flower_core.export.snippets import LABELS_FILE, snippets
from flower_core.models.backbones import get_backbone
from flower_core.models.classifier import preprocessing_mode
from flower_core.store.runs import ACTIVE_STATES, MODEL, SPLIT, Run, peek_status

# A few hundred training photos calibrate the int8 model's activation ranges.
REPRESENTATIVE_PHOTOS = 300
BATCH_SIZE = 32
# Photos per verification batch shrink with the image size: an eager Keras call's peak memory
# grows far faster than its photos' (bench/README.md, "Figures behind the code"), so large
# inputs go eight at a time.
BATCH_PIXELS = 8 * 384 * 384
Progress = Callable[[str, float], None]
# A full disk, as an errno or in the system's words for it (`os.strerror`), and as we say it.
_FULL_DISK = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded"}


def _check_run(run_dir: Path) -> tuple[Run, Split]:
    """The run and its split, or a one-line error for a run that cannot be exported."""
    run = Run.open(run_dir)
    state = peek_status(run_dir).state
    if state in ACTIVE_STATES:
        raise FlowerError(f"run {run_dir.name} is still {state}: export it when it has finished")
    if not (run_dir / MODEL).is_file():
        raise FlowerError(f"run {run_dir.name} has no {MODEL} to export (state {state})")
    split = load_split(run_dir / SPLIT) if (run_dir / SPLIT).is_file() else None
    if split is None or not split.test or not run.config.data_root:
        raise FlowerError(f"run {run_dir.name} has no test photos in {SPLIT} to verify the export on")
    return run, split


def export_problem(run_dir: str | os.PathLike) -> str | None:
    """Why a run cannot be exported (still training, no model, no test photos), or `None`."""
    try:
        _check_run(Path(run_dir))
    except FlowerError as error:
        return str(error)
    return None


def _check_out(out: Path) -> None:
    if os.path.lexists(out):  # a link to nowhere too: the rename into place would fail on it
        raise FlowerError(f"--out already exists; choose a new folder. Received: out={out}")
    parent = out.parent
    if not parent.is_dir():
        raise FlowerError(f"the folder for --out does not exist: {parent}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise FlowerError(f"cannot write to {parent}: choose another --out")


@contextmanager
def _write_errors(out: Path) -> Iterator[None]:
    """A full disk while exporting as one line, whichever library was writing: TensorFlow raises
    its own `ResourceExhaustedError`, and `shutil.copytree` one `shutil.Error` for all its files,
    both saying it only in the system's words."""
    import tensorflow as tf

    try:
        yield
    except (OSError, tf.errors.ResourceExhaustedError) as error:
        problem = next(
            (
                problem
                for code, problem in _FULL_DISK.items()
                if getattr(error, "errno", None) == code or os.strerror(code) in str(error)
            ),
            None,
        )
        if problem is None:
            raise
        raise FlowerError(f"{problem} while writing {out}; free some space or choose another --out") from None


def batch_size(size: int) -> int:
    """Photos per verification batch at `size` px: `BATCH_SIZE`, fewer when that many photos
    would exceed `BATCH_PIXELS` (8 at 384 px)."""
    return max(1, min(BATCH_SIZE, BATCH_PIXELS // (size * size)))


def _photo_batches(root: Path, files: list[str], size: int) -> Iterator[tuple[np.ndarray, list[int]]]:
    """The readable photos of `files` as float32 batches of `batch_size(size)`, with their indices
    in `files`. One batch is decoded at a time: holding every test and calibration photo of a run
    as float32 would take gigabytes at large sizes."""
    step = batch_size(size)
    for start in range(0, len(files), step):
        pixels, kept = [], []
        for index in range(start, min(start + step, len(files))):
            item = read_pixels(root / files[index], size)
            if not isinstance(item, ImageError):
                pixels.append(item)
                kept.append(index)
        if pixels:
            yield np.asarray(pixels, np.float32), kept


def representative_files(train: list[str], count: int = REPRESENTATIVE_PHOTOS) -> list[str]:
    """An evenly spaced sample of the (class-sorted) training photos, so every class is there."""
    step = max(1, len(train) // count)
    return list(train[::step][:count])


def _representative(root: Path, train: list[str], size: int) -> Callable[[], Iterator[np.ndarray]]:
    """The calibration photos, streamed from disk each time the converter asks for them."""
    files = representative_files(train)
    return lambda: (photo for pixels, _ in _photo_batches(root, files, size) for photo in pixels)


def _batched(run, root: Path, files: list[str], size: int) -> tuple[np.ndarray, float]:
    """Probabilities of every photo in `files` (all readable), streamed in batches, and photos
    per second of the model alone (decoding not counted)."""
    outputs, seconds = [], 0.0
    for pixels, _ in _photo_batches(root, files, size):
        start = time.perf_counter()
        outputs.append(run(pixels))
        seconds += time.perf_counter() - start
    return np.concatenate(outputs), len(files) / max(seconds, 1e-9)


def compare(probabilities: np.ndarray, reference: np.ndarray, labels: np.ndarray) -> dict:
    """Top-1 agreement, largest absolute probability difference and accuracy against labels."""
    top = probabilities.argmax(axis=1)
    return {
        "photos": len(reference),
        "agreement": float((top == reference.argmax(axis=1)).mean()),
        "max_abs_diff": float(np.abs(probabilities - reference).max()),
        "test_accuracy": float((top == labels).mean()),
    }


def check_agreement(name: str, row: dict) -> None:
    """Raise when a format disagrees with the Keras model more than its precision allows:
    float32 the same class on every photo and probabilities within `FLOAT_TOLERANCE`; quantised
    formats (float16, int8) the same class on at least `QUANTISED_MIN_AGREEMENT` of the photos."""
    if FORMATS[name].precision != "float32":
        if row["agreement"] < QUANTISED_MIN_AGREEMENT:
            raise FlowerError(
                f"{name} export agrees with the Keras model on {row['agreement']:.1%} of "
                f"the test photos, below {QUANTISED_MIN_AGREEMENT:.0%}; not exported"
            )
    elif row["agreement"] < 1.0 or row["max_abs_diff"] > FLOAT_TOLERANCE:
        raise FlowerError(
            f"{name} export differs from the Keras model (top-1 agreement "
            f"{row['agreement']:.1%}, largest probability difference "
            f"{row['max_abs_diff']:.2e} > {FLOAT_TOLERANCE}); not exported"
        )


def _bytes_check(
    folder: Path, root: Path, files: list[str], reference: np.ndarray, labels: np.ndarray
) -> dict:
    """The SavedModel's encoded-bytes signature on the test photos' files, against Keras on the
    studio's pixels (they may differ by a rounding step, and for EXIF-rotated or transparent photos)."""
    run = export_formats.saved_model_runner(
        folder / FORMATS["saved_model"].path, export_formats.BYTES_SIGNATURE
    )
    rows, kept = [], []
    for index, rel in enumerate(files):
        try:
            rows.append(run(np.array([(root / rel).read_bytes()], dtype=object))[0])
            kept.append(index)
        except Exception:  # noqa: BLE001 - a file TensorFlow cannot decode is counted, not fatal
            continue
    if not rows:
        return {"photos": 0, "undecoded": len(files)}
    return {**compare(np.array(rows), reference[kept], labels[kept]), "undecoded": len(files) - len(kept)}


def _write_format(
    name: str, model, size: int, staging: Path, scratch: Path, representative, backbone: str
) -> dict:
    """Write one format; returns what the report must say about how it was written."""
    target = staging / FORMATS[name].path
    if name == "saved_model":
        shutil.copytree(scratch, target)
    elif name == "tflite":
        export_formats.write_tflite_float16(scratch, target)
    elif name == "tflite_int8":
        float_layers = get_backbone(backbone).int8_float_layers
        export_formats.write_tflite_int8(scratch, target, representative, float_layers)
        return {"float_layers": list(float_layers)}
    else:
        export_formats.write_onnx(model, size, target)
    return {}


def _reference(model, root: Path, files: list[str]) -> tuple[list[str], np.ndarray, float]:
    """The readable test photos, the Keras model's probabilities on them and its photos/s."""
    size = int(model.input_shape[1])
    kept, outputs, seconds = [], [], 0.0
    for pixels, indices in _photo_batches(root, files, size):
        start = time.perf_counter()
        outputs.append(predict_batch(model, pixels))
        seconds += time.perf_counter() - start
        kept += [files[i] for i in indices]
    if not kept:
        raise FlowerError(f"none of the run's test photos could be read in {root}")
    return kept, np.concatenate(outputs), len(kept) / max(seconds, 1e-9)


def _build(
    run: Run, staging: Path, names: list[str], split: Split, progress: Progress, keep_what_agrees: bool
) -> dict:
    run_dir = run.path
    model, class_names = load_run(run_dir)
    size = int(model.input_shape[1])
    root = Path(run.config.data_root)
    progress("reading the test photos", 0.02)
    test_files, reference, keras_speed = _reference(model, root, split.test)
    labels = np.array([class_names.index(rel.split("/", 1)[0]) for rel in test_files])
    scratch = staging / ".saved_model_for_conversion"
    export_formats.write_saved_model(model, size, scratch)
    representative = _representative(root, split.train, size)
    report, skipped = {}, {}
    for step, name in enumerate(names):
        progress(f"writing and checking {name}", 0.1 + 0.8 * step / len(names))
        written = _write_format(
            name, model, size, staging, scratch, representative, run.config.settings.backbone
        )
        probabilities, speed = _batched(export_formats.runner(name, staging), root, test_files, size)
        row = {
            "file": FORMATS[name].path,
            "size_bytes": export_formats.size_bytes(staging / FORMATS[name].path),
            **compare(probabilities, reference, labels),
            "photos_per_second": round(speed, 1),
            **written,
        }
        try:
            check_agreement(name, row)
        except FlowerError as error:
            if not keep_what_agrees:
                raise
            _remove(staging / FORMATS[name].path)
            skipped[name] = str(error)
            continue
        if name == "saved_model":
            progress("checking the encoded-bytes signature", 0.1 + 0.8 * (step + 0.5) / len(names))
            row["bytes_signature"] = _bytes_check(staging, root, test_files, reference, labels)
        report[name] = row
    shutil.rmtree(scratch)
    if not report:
        raise FlowerError(f"no format agrees with the Keras model: {'; '.join(skipped.values())}")
    progress("writing the model card", 0.95)
    _write_card(run, staging, split, class_names, report, size)
    keras_row = {
        "test_accuracy": float((reference.argmax(1) == labels).mean()),
        "photos_per_second": round(keras_speed, 1),
        "size_bytes": (run_dir / MODEL).stat().st_size,
    }
    return {"keras": keras_row, "formats": report, "skipped": skipped}


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _write_card(run: Run, staging, split: Split, class_names, report, size) -> None:
    (staging / LABELS_FILE).write_text("\n".join(class_names) + "\n")
    texts = snippets(list(report), size)
    for file_name, text in texts.items():
        (staging / file_name).write_text(text)
    card_rows = {
        name: {k: v for k, v in row.items() if k != "photos_per_second"} for name, row in report.items()
    }
    data = export_card.card(
        run.config,
        run.facts,
        run.metrics,
        run.id,
        preprocessing_mode(run.config.settings),
        card_rows,
        {part: len(getattr(split, part)) for part in ("train", "val", "test")},
    )
    (staging / export_card.CARD_JSON).write_text(json.dumps(data, indent=2) + "\n")
    (staging / export_card.CARD_MD).write_text(export_card.markdown(data, texts))


def export_run(
    run_dir: str | os.PathLike, out: str | os.PathLike, formats=None, progress: Progress | None = None
) -> dict:
    """Export a run's model into the new folder `out`, every format checked by its runtime.

    Args:
        run_dir: a finished run folder (with `model.keras` and `split.json`).
        out: the folder to create; it must not exist yet.
        formats: names from `FORMATS` as a list or a comma-separated string, every one of which
            must agree with the Keras model. Defaults to `None`: `DEFAULT_FORMATS`, leaving out
            (and naming in "skipped") any that disagrees.
        progress: called as `progress(step, fraction)`. Defaults to `None`.

    Returns:
        `{"out", "run", "keras": {...}, "formats": {name: {"file", "size_bytes", "photos",
        "agreement", "max_abs_diff", "test_accuracy", "photos_per_second", ...}}}`; int8 also
        has "float_layers", the Keras layers it keeps in float32. "skipped": `{name: why}` for
        default formats left out.

    Raises:
        FlowerError: the run cannot be exported, `out` exists or cannot be written, an unknown
            format, a format named in `formats` (or every default one) that disagrees with the
            Keras model; nothing is left in `out`.

    Example:
        >>> export_run("runs/20260101-best-mobilenet-ab12", "exports/flowers", "tflite,onnx")
    """
    run_dir, out = Path(run_dir), Path(out).absolute()
    names = parse_formats(formats)
    run, split = _check_run(run_dir)
    _check_out(out)
    progress = progress or (lambda step, fraction: None)
    try:
        staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".partial"))
    except OSError as error:
        raise FlowerError(f"cannot write to {out.parent}: {error.strerror}") from None
    try:
        with _write_errors(out):
            result = _build(run, staging, names, split, progress, keep_what_agrees=formats is None)
            os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    progress("done", 1.0)
    return {"out": str(out), "run": str(run_dir), **result}


def zip_folder(folder: str | os.PathLike) -> bytes:
    """A folder as zip bytes, its files under one top folder named after it."""
    folder = Path(folder)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            archive.write(path, Path(folder.name) / path.relative_to(folder))
    return buffer.getvalue()


def export_zip(
    run_dir: str | os.PathLike, formats=None, progress: Progress | None = None
) -> tuple[bytes, dict]:
    """`export_run` into a temporary folder, returned as zip bytes with the report (the app's
    download); the folder is removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="flower_export_") as scratch:
        out = Path(scratch) / f"{Path(run_dir).name}-export"
        report = export_run(run_dir, out, formats, progress)
        return zip_folder(out), report


def format_report(report: dict) -> str:
    """Terminal lines: one per format with size, agreement, difference, accuracy and speed."""
    lines = [f"exported to {report['out']}"]
    for name, row in report["formats"].items():
        lines.append(
            f"  {name:<12} {row['size_bytes'] / 1e6:8.2f} MB  agreement {row['agreement']:.2%}  "
            f"max diff {row['max_abs_diff']:.2e}  accuracy {row['test_accuracy']:.2%}  "
            f"{row['photos_per_second']:.1f} photos/s"
        )
    lines += [f"  {name:<12} left out: {why}" for name, why in report.get("skipped", {}).items()]
    return "\n".join(lines)
