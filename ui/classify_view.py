"""The Classify & explain page's pieces: choose a run and photos, predict, and explain."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import streamlit as st
from PIL import Image, ImageOps

from flower_core import charts
from flower_core.data.dataset import load_split
from flower_core.errors import FlowerError
from flower_core.evaluation.compare import run_label
from flower_core.evaluation.predict import csv_bytes
from flower_core.evaluation.predict import predictions_table as predictions_frame
from flower_core.explain import COLORMAPS, DEFAULT_ALPHA, METHODS, preprocessed_view
from flower_core.explain.faithfulness import RANDOM_DRAWS, REMOVE_FRACTION
from flower_core.explain.faithfulness import verdict as faithfulness_verdict
from flower_core.intake.uploads import MAX_PHOTO_MB, check_total, check_upload
from flower_core.store.run_files import Metrics
from flower_core.store.runs import SPLIT, Run
from ui import loaders
from ui.common import (
    data_root,
    failure,
    guard,
    percent,
    progress_reporter,
    runs_root,
    short_name,
    timed_reporter,
    upload_limit_mb,
)

UPLOAD_TYPES = ["jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff"]
MISTAKES_SHOWN = 6
CAMERA_PHOTO_NAME = "webcam.jpg"
ZIP_SUFFIX = ".zip"


@dataclass
class Controls:
    """How to draw the heatmap: method, layer, explained class, opacity and colours."""

    method: str = "gradcam"
    layer: str | None = None
    target: str | None = None
    alpha: float = DEFAULT_ALPHA
    colormap: str = "jet"


def _run_label(row: dict) -> str:
    return f"{run_label(row)} — test accuracy {percent(row.get('test_accuracy'))}"


def choose_run(rows: list[dict]) -> str:
    """A run folder, default: the one just trained here, else the best test accuracy."""
    ids = [r["run_id"] for r in rows]
    preferred = st.session_state.get("classify_run")
    index = ids.index(preferred) if preferred in ids else 0
    labels = {r["run_id"]: _run_label(r) for r in rows}
    run_id = st.selectbox(
        "Model (run)",
        ids,
        index=index,
        format_func=labels.get,
        key="classify_run_select",
        help="Runs with a model, best test accuracy first.",
    )
    return str(runs_root() / run_id)


def _dataset_photo() -> list[tuple[str, bytes]]:
    dataset, problem = loaders.dataset_or_none(data_root())
    if dataset is None:
        st.info(f"No dataset in use. {problem}", icon=":material/info:")
        return []
    left, right = st.columns(2)
    name = left.selectbox("Class", dataset.class_names, key="classify_class")
    files = [rel for rel in dataset.files if rel.split("/", 1)[0] == name]
    rel = right.selectbox("Photo", files, key=f"classify_file_{name}", format_func=lambda r: r.split("/")[-1])
    with guard(f"Cannot read {rel}"):
        return [(rel, (dataset.root / rel).read_bytes())]


def _camera_photo() -> list[tuple[str, bytes]]:
    """A photo taken with the webcam (the browser asks for the camera first)."""
    shot = st.camera_input("Take a photo of a flower", key="classify_camera")
    if shot is None:
        return []
    try:
        check_upload(CAMERA_PHOTO_NAME, shot.size, min(MAX_PHOTO_MB, upload_limit_mb()))
    except FlowerError as error:
        st.error(f"Photo refused: {error}", icon=":material/error:")
        return []
    return [(CAMERA_PHOTO_NAME, shot.getvalue())]


def choose_photos() -> list[tuple[str, bytes]]:
    """Uploaded photos, a webcam photo, or one photo picked from the dataset, as (name, bytes),
    each bounded in size (`loaders.held_photo`) before anything decodes or caches it."""
    source = st.segmented_control(
        "Photo source",
        ["Upload", "Webcam", "From the dataset"],
        default="Upload",
        key="classify_source",
    )
    if source == "From the dataset":
        photos = _dataset_photo()
    elif source == "Webcam":
        photos = _camera_photo()
    else:
        photos = _uploaded_photos()
    return [(name, data if _is_zip(name) else loaders.held_photo(data)) for name, data in photos]


def _is_zip(name: str) -> bool:
    return name.lower().endswith(ZIP_SUFFIX)


def _uploaded_photos() -> list[tuple[str, bytes]]:
    """The uploader's photos that pass the size limits (each refusal shown)."""
    per_photo, at_once = min(MAX_PHOTO_MB, upload_limit_mb()), upload_limit_mb()
    uploads = st.file_uploader(
        "Photos of flowers, or a zip of them",
        type=[*UPLOAD_TYPES, ZIP_SUFFIX.lstrip(".")],
        accept_multiple_files=True,
        key="classify_upload",
        max_upload_size=at_once,
        help=f"Up to {per_photo} MB per photo and {at_once} MB at once; a zip's photos are "
        "predicted together, in one table you can download as CSV.",
    )
    accepted = []
    for upload in uploads or []:
        try:
            check_upload(upload.name, upload.size, at_once if _is_zip(upload.name) else per_photo)
            accepted.append(upload)
        except FlowerError as error:
            st.error(f"Upload refused: {error}", icon=":material/error:")
    try:
        check_total((upload.size for upload in accepted), at_once)
    except FlowerError as error:
        st.error(f"Upload refused: {error}", icon=":material/error:")
        return []
    return [(upload.name, upload.getvalue()) for upload in accepted]


def _table(records: list[dict], key: str) -> None:
    """Predictions, one row per photo (`predict.predictions_table`: top classes, each class's
    probability, the unsure flag, the problem), and the same as a CSV download."""
    st.dataframe(
        predictions_frame(records),
        hide_index=True,
        key=key,
        placeholder="",
        column_config={
            "path": st.column_config.TextColumn("photo"),
            "probability": st.column_config.ProgressColumn(format="percent", min_value=0, max_value=1),
            "low_confidence": st.column_config.CheckboxColumn("unsure"),
        },
    )
    st.download_button(
        "Download as CSV",
        csv_bytes(records),
        file_name="predictions.csv",
        mime="text/csv",
        icon=":material/download:",
        key=f"{key}_csv",
    )


def predictions_table(run_dir: str, photos: list[tuple[str, bytes]]) -> str:
    """With several photos: a table of every prediction; returns the name of the one to explain."""
    stamp = loaders.model_stamp(run_dir)
    records = []
    for name, data in photos:
        try:
            records.append({"path": name, **loaders.predict(run_dir, stamp, data)})
        except Exception as error:  # one photo that fails must not hide the others
            records.append({"path": name, "error": failure(error)})
    _table(records, "classify_table")
    return st.selectbox("Explain", [name for name, _ in photos], key="classify_pick")


def zip_predictions(run_dir: str, name: str, data: bytes) -> None:
    """Every photo of an uploaded zip predicted in batches, with a progress bar: the table and
    its CSV."""
    label = f"Predicting the photos in {name}"
    with guard(f"Cannot predict {name}", progress=f"{label}…") as bar:
        records = loaders.predict_zip(
            run_dir, loaders.model_stamp(run_dir), data, progress=progress_reporter(bar, label)
        )
    st.markdown(f"**{name}**: {len(records):,} photos")
    _table(records, f"classify_zip_{name}")


def prediction(run_dir: str, name: str, data: bytes) -> dict:
    """The top-k bar chart and, when the model is unsure, a warning."""
    with guard(f"Cannot classify {name}"):
        result = loaders.predict(run_dir, loaders.model_stamp(run_dir), data)
    st.metric(
        "Prediction",
        result["predicted_class"],
        f"{percent(result['probability'])} sure",
        delta_color="off",
        delta_arrow="off",
    )
    if result["low_confidence"]:
        st.warning(f"{result['reason'][0].upper()}{result['reason'][1:]}.", icon=":material/help:")
    st.plotly_chart(charts.top_k_bar(result["top_k"]), key=f"classify_topk_{name}")
    return result


def controls(run_dir: str, class_names: list[str]) -> Controls:
    """Method, layer, explained class, opacity and colour map."""
    layers, default = loaders.explainable_layers(run_dir, loaders.model_stamp(run_dir))
    cells = st.columns([2, 2, 2, 2, 1])
    method = cells[0].selectbox(
        "Method",
        list(METHODS),
        format_func=lambda method: METHODS[method].label,
        key="classify_method",
        help="Grad-CAM is fastest; Score-CAM is the least noisy and the slowest.",
    )
    layer = cells[1].selectbox(
        "Layer",
        layers[::-1],
        key="classify_layer",
        index=layers[::-1].index(default),
        help="Deeper layers: coarser maps about whole objects.",
    )
    target = cells[2].selectbox(
        "Class",
        ["(predicted)", *class_names],
        key="classify_target",
        help="Which class's evidence the heatmap shows.",
    )
    alpha = cells[3].slider("Opacity", 0.0, 1.0, DEFAULT_ALPHA, 0.05, key="classify_alpha")
    colormap = cells[4].selectbox("Colours", list(COLORMAPS), key="classify_colormap")
    return Controls(
        method,
        None if layer == default else layer,
        None if target == "(predicted)" else target,
        alpha,
        colormap,
    )


def _explain(run_dir: str, data: bytes, ctl: Controls):
    """The explanation, with a progress bar (and the time so far) while it is computed."""
    label = f"Computing the {METHODS[ctl.method].label} heatmap"
    with guard("Cannot explain this photo", progress=f"{label}…") as bar:
        return loaders.explain(
            run_dir,
            loaders.model_stamp(run_dir),
            data,
            ctl.method,
            ctl.layer,
            ctl.target,
            progress=timed_reporter(bar, label),
        )


def explanation(run_dir: str, data: bytes, ctl: Controls) -> None:
    """The heatmap over the photo, the image the model sees, and the faithfulness score. Drawn
    in one slot that the next photo's or setting's run empties first, so an earlier photo's
    heatmap and score never stay on screen (faded) while the next one computes."""
    with st.empty().container():
        _explanation(run_dir, data, ctl)


def _explanation(run_dir: str, data: bytes, ctl: Controls) -> None:
    result = _explain(run_dir, data, ctl)
    model, _ = loaders.run_model(run_dir)
    left, middle, right = st.columns([3, 2, 2])
    left.image(
        result.overlay(ctl.alpha, ctl.colormap),
        width="stretch",
        caption=f"{METHODS[result.method].label} for '{result.target_class}' at {result.layer}",
    )
    middle.image(
        preprocessed_view(model, result.model_view),
        width="stretch",
        caption=f"What the model sees ({result.model_view.shape[0]} px, after its preprocessing)",
    )
    faithful = result.faithfulness or {}
    score = faithful.get("score")
    right.metric(
        "Faithfulness",
        "–" if score is None else f"{score:+.3f}",
        help=f"Confidence drop when the {REMOVE_FRACTION:.0%} hottest pixels are removed, minus the drop "
        f"for {RANDOM_DRAWS} random blobs of the same size. Above what the random blobs themselves "
        "score: the map points at evidence.",
    )
    if score is not None:
        right.caption(faithfulness_verdict(score, faithful.get("random_band", (0.0, 0.0))))
    right.caption(f"Computed in {result.seconds:.2f} s.")


def compare_runs(rows: list[dict], data: bytes, ctl: Controls) -> None:
    """The same photo explained by two or more runs (same method and opacity)."""
    labels = {r["run_id"]: _run_label(r) for r in rows}
    chosen = st.multiselect(
        "Runs",
        list(labels),
        default=list(labels)[:2],
        key="classify_runs",
        format_func=labels.get,
        max_selections=4,
    )
    if len(chosen) < 2:
        st.info("Choose at least two runs.", icon=":material/info:")
        return
    for column, run_id in zip(st.columns(len(chosen)), chosen):
        run_dir = str(runs_root() / run_id)
        result = _explain(run_dir, data, Controls(ctl.method, alpha=ctl.alpha, colormap=ctl.colormap))
        with column:
            st.image(result.overlay(ctl.alpha, ctl.colormap), width="stretch")
            st.markdown(
                f"**{result.predicted_class}** {percent(float(result.probabilities[result.predicted_index]))}"
            )
            score = (result.faithfulness or {}).get("score")
            faithful = "" if score is None else f" · faithfulness {score:+.3f}"
            st.caption(f"{labels[run_id]}{faithful}")


def photo_tab(run_dir: str, rows: list[dict], photos: list, ctl: Controls, side_by_side: bool) -> None:
    """The chosen photo (a table first when there are several), explained by one run or more."""
    if not photos:
        st.info(
            "Upload a photo, take one with the webcam or pick one from the dataset to see a prediction.",
            icon=":material/upload:",
        )
        return
    for name, data in [item for item in photos if _is_zip(item[0])]:
        zip_predictions(run_dir, name, data)
    photos = [item for item in photos if not _is_zip(item[0])]
    if not photos:
        return
    name = predictions_table(run_dir, photos) if len(photos) > 1 else photos[0][0]
    data = dict(photos)[name]
    if side_by_side:
        compare_runs(rows, data, ctl)
        return
    left, right = st.columns([1, 2], gap="large")
    with left:
        prediction(run_dir, name, data)
    with right:
        explanation(run_dir, data, ctl)


def mistakes(run_dir: str, ctl: Controls) -> None:
    """Choose a cell of the run's confusion matrix (`Metrics.confused_cells`, most confused first),
    by a click or in a list; see those test photos with heatmaps."""
    run = Run.open(run_dir)
    metrics = run.metrics
    if not metrics.evaluated:
        st.info("This run has no test metrics.", icon=":material/info:")
        return
    left, right = st.columns([2, 3])
    clicked = confusion_chart(left, metrics, "Confusion matrix (test split)", "classify_confusion")
    left.caption(":material/touch_app: Click a cell off the diagonal to see its photos.")
    cells = {f"{t} taken for {p} ({n})": (t, p) for t, p, n in metrics.confused_cells()}
    if not cells:
        right.success("No test photo is misclassified.", icon=":material/check_circle:")
        return
    if clicked:
        _pick_cell(clicked, cells)
    true_name, predicted = cells[right.selectbox("Cell (true → predicted)", list(cells), key="classify_cell")]
    with right:
        cell_photos(run, true_name, predicted, ctl)


def confusion_chart(container, metrics: Metrics, title: str, key: str, normalise: bool = False):
    """A run's confusion matrix (rows true, columns predicted) whose cells can be clicked.

    Returns:
        The `(true, predicted)` cell just clicked, once per click (`None` on the next runs until
        another cell is clicked), so the widgets that show a cell can still change it afterwards.
    """
    event = container.plotly_chart(
        charts.confusion_matrix(metrics.confusion, metrics.class_names, title, normalise=normalise),
        key=key,
        on_select="rerun",
        selection_mode="points",
    )
    points = (event or {}).get("selection", {}).get("points", [])
    clicked = (points[0]["y"], points[0]["x"]) if points else None
    if clicked == st.session_state.get(f"{key}_clicked"):
        return None
    st.session_state[f"{key}_clicked"] = clicked
    return clicked


def _pick_cell(clicked: tuple[str, str], cells: dict[str, tuple[str, str]]) -> None:
    """Show the clicked cell in the cell selectbox."""
    picked = [label for label, cell in cells.items() if cell == clicked]
    if picked:
        st.session_state["classify_cell"] = picked[0]
    else:
        st.toast(f"No mistake there: {clicked[0]} photos predicted as {clicked[1]}.", icon=":material/info:")


def cell_photos(run: Run, true_name: str, predicted: str, ctl: Controls) -> None:
    """The test photos of one confusion cell, the first `MISTAKES_SHOWN` of them, each under its
    heatmap: a cell's mistakes worst first (`Metrics.mistakes`), or on the diagonal the photos
    predicted right (`Metrics.right`)."""
    photos = _cell(run, true_name, predicted)
    if not photos:
        st.info(f"No {true_name} test photo was predicted as {predicted}.", icon=":material/info:")
        return
    if len(photos) > MISTAKES_SHOWN:
        which = "first" if true_name == predicted else "worst"
        st.caption(f"The {MISTAKES_SHOWN} {which} of {len(photos)} photos.")
    root = Path(run.config.data_root or "")
    columns = st.columns(3)
    for i, (rel, shown) in enumerate(photos[:MISTAKES_SHOWN]):
        path = root / rel
        if not path.is_file():
            columns[i % 3].caption(f"{rel}: no longer in {root}")
            continue
        plain = Controls(ctl.method, alpha=ctl.alpha, colormap=ctl.colormap)
        result = _explain(str(run.path), loaders.held_photo(path.read_bytes()), plain)
        overlay = Image.fromarray(result.overlay(ctl.alpha, ctl.colormap))
        columns[i % 3].image(
            ImageOps.pad(overlay, (320, 320), color="white"),
            width="stretch",
            caption=f"{short_name(rel)}: {shown}",
        )


def _cell(run: Run, true_name: str, predicted: str) -> list[tuple[str, str]]:
    """(photo, what was predicted) for each test photo of one confusion cell."""
    if true_name != predicted:
        wrong = run.metrics.mistakes(true_name, predicted)
        return [(m.path, f"{m.predicted_class} {percent(m.confidence)}") for m in wrong]
    split = run.path / SPLIT  # a run from before split files has none: no photos to show
    test = load_split(split).test if split.is_file() else []
    return [(rel, "right") for rel in run.metrics.right(true_name, test)]
