"""Plotly figures of a study and of a sweep (testable without Streamlit), in `charts`' style."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from flower_core.charts import axis_range, style_figure


def study_bars(table: list[dict]) -> go.Figure:
    """The study's test accuracy per step beside our mean over seeds, with ± 1 sd error bars."""
    presets = [row["preset"] for row in table]
    fig = go.Figure(
        [
            go.Bar(
                name="study (VGG16)",
                x=presets,
                y=[row["study_accuracy"] for row in table],
                marker_color="#B0B7C3",
            ),
            go.Bar(
                name="our runs (mean ± sd)",
                x=presets,
                y=[row["mean"] for row in table],
                error_y=dict(type="data", array=[row["sd"] or 0 for row in table], visible=True),
                customdata=[row["runs"] for row in table],
                marker_color="#4C78A8",
                hovertemplate="%{x}: %{y:.2%} over %{customdata} run(s)<extra></extra>",
            ),
        ]
    )
    fig.update_layout(barmode="group", yaxis=dict(range=[0, 1], tickformat=".0%", title="test accuracy"))
    return style_figure(fig, "The study against our runs", 380)


def sweep_parallel(results: list[dict], settings: list[str]) -> go.Figure:
    """Parallel coordinates of a sweep: one line per combination, coloured by its mean
    validation accuracy (what the best is chosen by); text settings become labelled axes."""
    frame = pd.DataFrame(results)
    dimensions = []
    for key in settings:
        values = frame[key] if key in frame else pd.Series(dtype=float)
        numeric = pd.to_numeric(values, errors="coerce")
        label = key.replace("_", " ")
        if numeric.notna().all() and not values.map(lambda v: isinstance(v, bool)).any():
            if key.endswith("learning_rate"):
                numeric, label = np.log10(numeric.clip(lower=1e-8)), f"log10 {label}"
            dimensions.append(dict(label=label, values=numeric, range=axis_range(numeric)))
        else:
            names = sorted(values.astype(str).unique())
            dimensions.append(
                dict(
                    label=label,
                    values=values.astype(str).map(names.index),
                    tickvals=list(range(len(names))),
                    ticktext=names,
                )
            )
    val = pd.to_numeric(frame.get("val_accuracy"), errors="coerce")
    dimensions.append(dict(label="val accuracy", values=val.fillna(0), range=[0, 1]))
    fig = go.Figure(
        go.Parcoords(
            dimensions=dimensions,
            line=dict(color=val.fillna(0), colorscale="Viridis", cmin=0, cmax=1, showscale=True),
        )
    )
    style_figure(fig, "Settings against validation accuracy", 440)
    fig.update_layout(margin=dict(l=60, r=40, t=110, b=30))
    return fig
