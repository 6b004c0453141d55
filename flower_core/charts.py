"""Plotly figures for the app's pages, built from plain data so they are testable without Streamlit.

Every builder takes lists, dicts, DataFrames or run-file records from `flower_core` (an EDA
table, a run's `HistoryRow`s, run summaries, metrics) and returns a `plotly.graph_objects.Figure`
with a title, axis labels and the same colour for a class or a run wherever it appears.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from flower_core.store.run_files import Calibration, HistoryRow

CLASS_COLOURS = {
    "daisy": "#5B8DEF",
    "dandelion": "#F2B705",
    "rose": "#D7263D",
    "sunflower": "#F46036",
    "tulip": "#9B5DE5",
}
PALETTE = px.colors.qualitative.Plotly
TRAIN_DASH, VAL_DASH = "solid", "dash"
_MARGIN = dict(l=10, r=10, t=60, b=10)
# Epoch ticks on a chart half a page wide: more would crowd (12+ epochs) or rotate.
MAX_EPOCH_TICKS = 6


def class_colour(name: str, index: int = 0) -> str:
    """The colour of a class: its flower's colour, else a palette colour by its index."""
    return CLASS_COLOURS.get(name, PALETTE[index % len(PALETTE)])


def _colour_map(names) -> dict[str, str]:
    return {name: class_colour(name, i) for i, name in enumerate(names)}


def style_figure(fig: go.Figure, title: str, height: int | None = None) -> go.Figure:
    fig.update_layout(
        title=title, margin=_MARGIN, height=height, template="plotly_white", legend_title_text=""
    )
    return fig


def class_counts_bar(counts: dict[str, int]) -> go.Figure:
    """Photos per class as bars, labelled with their counts."""
    names = list(counts)
    fig = go.Figure(
        go.Bar(
            x=names,
            y=[counts[n] for n in names],
            text=list(counts.values()),
            marker_color=[class_colour(n, i) for i, n in enumerate(names)],
        )
    )
    fig.update_layout(xaxis_title="class", yaxis_title="photos", showlegend=False)
    return style_figure(fig, "Photos per class", 360)


def class_counts_pie(counts: dict[str, int]) -> go.Figure:
    """Each class's share of the dataset."""
    names = list(counts)
    fig = go.Figure(
        go.Pie(
            labels=names,
            values=[counts[n] for n in names],
            hole=0.45,
            marker_colors=[class_colour(n, i) for i, n in enumerate(names)],
            sort=False,
        )
    )
    return style_figure(fig, "Share of the dataset", 360)


def size_scatter(table: pd.DataFrame) -> go.Figure:
    """Width against height of every photo, coloured by class."""
    fig = px.scatter(
        table,
        x="width",
        y="height",
        color="class",
        opacity=0.6,
        hover_data=["path"],
        color_discrete_map=_colour_map(table["class"].unique()),
    )
    fig.update_layout(xaxis_title="width (px)", yaxis_title="height (px)")
    return style_figure(fig, "Image sizes", 400)


def histogram(table: pd.DataFrame, column: str, title: str, label: str) -> go.Figure:
    """A stacked histogram of one column of the image table, per class."""
    fig = px.histogram(
        table,
        x=column,
        color="class",
        nbins=40,
        barmode="stack",
        color_discrete_map=_colour_map(table["class"].unique()),
    )
    fig.update_layout(xaxis_title=label, yaxis_title="photos")
    return style_figure(fig, title, 340)


def brightness_box(table: pd.DataFrame) -> go.Figure:
    """Brightness (0-255) of the photos of each class as box plots."""
    fig = px.box(
        table,
        x="class",
        y="brightness",
        color="class",
        points=False,
        color_discrete_map=_colour_map(table["class"].unique()),
    )
    fig.update_layout(xaxis_title="class", yaxis_title="mean brightness (0-255)", showlegend=False)
    return style_figure(fig, "Brightness per class", 360)


def colour_bars(summary: pd.DataFrame) -> go.Figure:
    """Mean red, green and blue of each class (rows of `eda.class_summary`)."""
    names = [str(n) for n in summary.index]
    fig = go.Figure(
        [
            go.Bar(name=channel, x=names, y=summary[f"mean_{channel[0]}"], marker_color=colour)
            for channel, colour in (("red", "#E45756"), ("green", "#54A24B"), ("blue", "#4C78A8"))
        ]
    )
    fig.update_layout(barmode="group", xaxis_title="class", yaxis_title="mean value (0-255)")
    return style_figure(fig, "Mean colour per class", 360)


def split_bars(table: pd.DataFrame) -> go.Figure:
    """Photos per class in train, validation and test (`eda.split_table`), stacked."""
    names = [str(n) for n in table.index]
    colours = {"train": "#4C78A8", "val": "#F58518", "test": "#54A24B"}
    fig = go.Figure(
        [
            go.Bar(name=part, x=names, y=table[part], marker_color=colours[part])
            for part in ("train", "val", "test")
            if part in table
        ]
    )
    fig.update_layout(barmode="stack", xaxis_title="class", yaxis_title="photos")
    return style_figure(fig, "Split sizes per class", 360)


def _series(history: Sequence[HistoryRow], key: str) -> tuple[list, list]:
    points = [(h.epoch, getattr(h, key)) for h in history if getattr(h, key) is not None]
    return [p[0] for p in points], [p[1] for p in points]


def epoch_step(last_epoch: int, max_ticks: int = MAX_EPOCH_TICKS) -> int:
    """The step between epoch ticks: the smallest of 1, 2, 5, 10, 20, 50, ... that gives at most
    `max_ticks` ticks up to `last_epoch`, so that they stay level and apart on a half-width chart.

    Example:

    >>> [epoch_step(n) for n in (3, 6, 12, 30, 200)]
    [1, 1, 2, 5, 50]
    """
    scale = 1
    while True:
        for multiple in (1, 2, 5):
            if math.ceil(last_epoch / (multiple * scale)) <= max_ticks:
                return multiple * scale
        scale *= 10


def _epoch_ticks(history: Sequence[HistoryRow]) -> dict:
    """Whole-number epoch ticks at `epoch_step` (multiples of it), never rotated."""
    last = max([h.epoch for h in history] or [1])
    return {
        "tickmode": "linear",
        "tick0": 0,
        "dtick": epoch_step(last),
        "tickformat": "d",
        "tickangle": 0,
        "range": [0.5, last + 0.5],
    }


def training_curves(history: Sequence[HistoryRow], title: str = "Training curves") -> go.Figure:
    """Loss and accuracy per epoch, train (solid) and validation (dashed), side by side."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Loss", "Accuracy"))
    for col, metric in enumerate(("loss", "accuracy"), 1):
        for prefix, name, dash in (("", "train", TRAIN_DASH), ("val_", "validation", VAL_DASH)):
            x, y = _series(history, prefix + metric)
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=y,
                    name=name,
                    mode="lines+markers",
                    legendgroup=name,
                    showlegend=col == 1,
                    line=dict(dash=dash, color="#4C78A8" if prefix == "" else "#F58518"),
                ),
                row=1,
                col=col,
            )
    fig.update_xaxes(title_text="epoch", **_epoch_ticks(history))
    fig.update_yaxes(range=[0, 1.02], row=1, col=2)
    return style_figure(fig, title, 360)


def compare_curves(histories: dict[str, Sequence[HistoryRow]], metric: str = "accuracy") -> go.Figure:
    """One metric of several runs overlaid: train solid, validation dashed, a colour per run."""
    fig = go.Figure()
    for i, (label, history) in enumerate(histories.items()):
        colour = PALETTE[i % len(PALETTE)]
        for prefix, part, dash in (("", "train", TRAIN_DASH), ("val_", "val", VAL_DASH)):
            x, y = _series(history, prefix + metric)
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=y,
                    mode="lines+markers",
                    name=f"{label} ({part})",
                    line=dict(color=colour, dash=dash),
                )
            )
    longest = max(histories.values(), key=len, default=[])
    fig.update_layout(
        xaxis=dict(title="epoch", **_epoch_ticks(longest)),
        yaxis_title=metric,
        legend=dict(orientation="h", yanchor="top", y=-0.25, x=0),
    )
    if metric == "accuracy":
        fig.update_yaxes(range=[0, 1.02])
    return style_figure(fig, f"{metric.capitalize()} per epoch", 420)


def results_bar(rows: list[dict]) -> go.Figure:
    """Test accuracy and test loss of runs (summaries with `label`), side by side."""
    labels = [r["label"] for r in rows]
    colours = [PALETTE[i % len(PALETTE)] for i in range(len(rows))]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Test accuracy", "Test loss"))
    for col, key in enumerate(("test_accuracy", "test_loss"), 1):
        values = [r.get(key) for r in rows]
        text = [None if v is None else (f"{v:.1%}" if col == 1 else f"{v:.3f}") for v in values]
        fig.add_trace(
            go.Bar(x=labels, y=values, text=text, marker_color=colours, showlegend=False),
            row=1,
            col=col,
        )
    fig.update_yaxes(range=[0, 1], row=1, col=1)
    return style_figure(fig, "Test results", 380)


PARALLEL_SETTINGS = ("image_size", "batch_size", "dropout", "learning_rate", "fine_tune_blocks")


def axis_range(values: pd.Series) -> list[float]:
    """The data's range, widened when every run has the same value (no axis below zero)."""
    low, high = float(values.min()), float(values.max())
    if low == high:
        return [0.0, 1.0] if low == 0 else [low * 0.5, high * 1.5]
    return [low, high]


def settings_parallel(rows: list[dict], settings=PARALLEL_SETTINGS) -> go.Figure:
    """Parallel coordinates of runs' numeric settings against their test accuracy."""
    frame = pd.DataFrame(rows)
    dimensions = []
    for key in settings:
        if key in frame and frame[key].notna().any():
            values = pd.to_numeric(frame[key], errors="coerce").fillna(0)
            label = key.replace("_", " ")
            if key == "learning_rate":
                values, label = np.log10(values.clip(lower=1e-8)), "log10 learning rate"
            dimensions.append(dict(label=label, values=values, range=axis_range(values)))
    accuracy = pd.to_numeric(frame.get("test_accuracy"), errors="coerce").fillna(0)
    dimensions.append(dict(label="test accuracy", values=accuracy, range=[0, 1]))
    fig = go.Figure(
        go.Parcoords(
            dimensions=dimensions,
            line=dict(color=accuracy, colorscale="Viridis", cmin=0, cmax=1, showscale=True),
        )
    )
    style_figure(fig, "Settings against test accuracy", 440)
    fig.update_layout(margin=dict(l=60, r=40, t=110, b=30))
    return fig


def confusion_matrix(
    confusion, class_names: list[str], title: str = "Confusion matrix", normalise: bool = False
) -> go.Figure:
    """Rows are the true class, columns the predicted one; each cell shows its count.

    A click on a cell selects it (`st.plotly_chart(..., on_select=...)`: its point's `y` is the
    true class, `x` the predicted one): Plotly selects no heatmap cell, so an invisible marker
    at the centre of each cell, the nearest to any point of the plot, takes the click and the hover.
    """
    counts = np.asarray(confusion, dtype=float)
    totals = counts.sum(axis=1, keepdims=True)
    shown = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0) if normalise else counts
    text = [
        [f"{int(c)}" + (f"<br>{s:.0%}" if normalise else "") for c, s in zip(row, srow)]
        for row, srow in zip(counts, shown)
    ]
    fig = go.Figure(
        go.Heatmap(
            z=shown,
            x=class_names,
            y=class_names,
            text=text,
            texttemplate="%{text}",
            colorscale="Blues",
            showscale=False,
            hoverinfo="skip",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=[predicted for _ in class_names for predicted in class_names],
            y=[true for true in class_names for _ in class_names],
            text=[cell for row in text for cell in row],
            mode="markers",
            marker={"opacity": 0},
            showlegend=False,
            hovertemplate="true %{y}<br>predicted %{x}<br>%{text}<extra></extra>",
        )
    )
    fig.update_layout(
        xaxis_title="predicted",
        yaxis_title="true",
        yaxis_autorange="reversed",
        xaxis_side="bottom",
        hoverdistance=-1,
    )
    return style_figure(fig, title, 420)


def reliability_curve(calibrations: dict[str, Calibration]) -> go.Figure:
    """Accuracy against confidence per confidence bin, one line per run, and the diagonal that a
    perfectly calibrated model would follow; the legend carries each run's ECE."""
    fig = go.Figure(
        go.Scatter(
            x=[0, 1],
            y=[0, 1],
            mode="lines",
            name="perfectly calibrated",
            line={"dash": "dot", "color": "#94a3b8"},
            hoverinfo="skip",
        )
    )
    for label, calibration in calibrations.items():
        bins = calibration.bins
        ece = "–" if calibration.ece is None else f"{calibration.ece:.3f}"
        fig.add_trace(
            go.Scatter(
                x=[b.confidence for b in bins],
                y=[b.accuracy for b in bins],
                mode="lines+markers",
                name=f"{label} (ECE {ece})",
                customdata=[b.count for b in bins],
                hovertemplate="confidence %{x:.2f}<br>accuracy %{y:.2f}<br>%{customdata} photos"
                "<extra></extra>",
            )
        )
    fig.update_layout(
        xaxis={"title": "predicted confidence (top probability)", "range": [0, 1]},
        yaxis={"title": "accuracy", "range": [0, 1.02]},
        legend={"orientation": "h", "y": -0.25},
    )
    return style_figure(fig, "Reliability", 440)


def top_k_bar(top_k: list[dict]) -> go.Figure:
    """The top-k classes of a prediction as horizontal bars, the most likely on top."""
    names = [t["class"] for t in top_k][::-1]
    values = [t["probability"] for t in top_k][::-1]
    fig = go.Figure(
        go.Bar(
            x=values,
            y=names,
            orientation="h",
            text=[f"{v:.1%}" for v in values],
            marker_color=[class_colour(n, i) for i, n in enumerate(names)],
        )
    )
    fig.update_layout(xaxis=dict(range=[0, 1], tickformat=".0%", title="probability"))
    return style_figure(fig, "Top classes", 80 + 45 * len(names))


def study_vs_ours(study: dict[str, tuple[float, float]], ours: dict[str, float]) -> go.Figure:
    """The study's test accuracy per preset beside our best test accuracy for that preset."""
    presets = list(study)
    fig = go.Figure(
        [
            go.Bar(
                name="study (VGG16)",
                x=presets,
                y=[study[p][1] for p in presets],
                marker_color="#B0B7C3",
            ),
            go.Bar(
                name="our runs (best)",
                x=presets,
                y=[ours.get(p) for p in presets],
                marker_color="#4C78A8",
            ),
        ]
    )
    fig.update_layout(barmode="group", yaxis=dict(range=[0, 1], tickformat=".0%", title="test accuracy"))
    return style_figure(fig, "The study against our runs", 380)


def embedding_map(
    points, files: list[str], labels: list[str], likely: list[str], suspects: set[str]
) -> go.Figure:
    """Every photo as a point of its features' 2-D projection, coloured by its given class;
    suspects drawn as crosses. Hovering a point names its file, its given class and the class the
    audit's heads find likeliest (`likely`); each point's `customdata` is its path (the page
    opens it: Plotly's hover cannot show a photo in Streamlit, a click can)."""
    fig = go.Figure()
    colours = _colour_map(sorted(set(labels)))
    xs, ys = np.asarray(points)[:, 0], np.asarray(points)[:, 1]
    for name in sorted(set(labels)):
        for doubted in (False, True):
            rows = [
                i
                for i, (label, rel) in enumerate(zip(labels, files))
                if label == name and (rel in suspects) == doubted
            ]
            if not rows:
                continue
            fig.add_trace(
                go.Scatter(
                    x=xs[rows],
                    y=ys[rows],
                    mode="markers",
                    name=f"{name} (suspect)" if doubted else name,
                    customdata=[files[i] for i in rows],
                    text=[f"given {name} · likeliest {likely[i]}" for i in rows],
                    hovertemplate="%{customdata}<br>%{text}<extra></extra>",
                    marker={
                        "color": colours[name],
                        "size": 11 if doubted else 6,
                        "symbol": "x" if doubted else "circle",
                        "opacity": 1.0 if doubted else 0.6,
                        "line": {"width": 1, "color": "black"} if doubted else {"width": 0},
                    },
                )
            )
    fig.update_xaxes(showticklabels=False, title=None)
    fig.update_yaxes(showticklabels=False, title=None)
    return style_figure(
        fig,
        "Embedding map: the photos' features in 2-D (crosses: suspects; click a point to review it)",
        height=520,
    )
