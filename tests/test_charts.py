"""The plotly figure builders, on small hand-made inputs (no Streamlit, no TensorFlow)."""

import pandas as pd
import plotly.graph_objects as go
import pytest

from flower_core import charts
from flower_core.store.run_files import Calibration, CalibrationBin, HistoryRow

COUNTS = {"daisy": 10, "rose": 4, "tulip": 6}
HISTORY = [
    HistoryRow(epoch=1, loss=1.2, accuracy=0.4, val_loss=1.1, val_accuracy=0.5),
    HistoryRow(epoch=2, loss=0.8, accuracy=0.7),
]
TABLE = pd.DataFrame(
    {
        "path": ["daisy/a.jpg", "rose/b.jpg", "tulip/c.jpg"],
        "class": ["daisy", "rose", "tulip"],
        "width": [320, 240, 500],
        "height": [240, 240, 375],
        "aspect": [1.33, 1.0, 1.33],
        "brightness": [120.0, 90.5, 140.2],
    }
)
RUNS = [
    {
        "label": "a",
        "test_accuracy": 0.8,
        "test_loss": 0.5,
        "image_size": 224,
        "batch_size": 32,
        "dropout": 0.2,
        "learning_rate": 1e-3,
        "fine_tune_blocks": 0,
    },
    {
        "label": "b",
        "test_accuracy": None,
        "test_loss": None,
        "image_size": 128,
        "batch_size": 64,
        "dropout": None,
        "learning_rate": 1e-4,
        "fine_tune_blocks": 2,
    },
]


def test_class_charts_keep_order_and_colours():
    bar, pie = charts.class_counts_bar(COUNTS), charts.class_counts_pie(COUNTS)
    assert list(bar.data[0].x) == list(COUNTS) and list(bar.data[0].y) == [10, 4, 6]
    assert bar.data[0].marker.color[1] == charts.CLASS_COLOURS["rose"]
    assert list(pie.data[0].values) == [10, 4, 6]
    assert charts.class_colour("orchid", 3) == charts.PALETTE[3]


def test_eda_figures_have_a_trace_per_class():
    for fig in (
        charts.size_scatter(TABLE),
        charts.brightness_box(TABLE),
        charts.histogram(TABLE, "aspect", "Aspect ratios", "width / height"),
    ):
        assert {t.name for t in fig.data} == {"daisy", "rose", "tulip"}
        assert fig.layout.title.text
    summary = pd.DataFrame(
        {"mean_r": [1, 2], "mean_g": [3, 4], "mean_b": [5, 6]},
        index=pd.Index(["daisy", "rose"], name="class"),
    )
    assert [t.name for t in charts.colour_bars(summary).data] == ["red", "green", "blue"]
    split = pd.DataFrame({"train": [7, 3], "val": [2, 1], "test": [1, 0]}, index=["daisy", "rose"])
    assert charts.split_bars(split).layout.barmode == "stack"


def test_training_curves_skip_missing_values():
    fig = charts.training_curves(HISTORY)
    by_name = {(t.name, t.xaxis): t for t in fig.data}
    assert list(by_name[("train", "x")].y) == [1.2, 0.8]
    assert list(by_name[("validation", "x")].x) == [1]
    assert len(charts.training_curves([]).data) == 4


def test_compare_curves_one_colour_per_run():
    fig = charts.compare_curves({"a": HISTORY, "b": HISTORY}, "loss")
    assert len(fig.data) == 4
    assert fig.data[0].line.color == fig.data[1].line.color != fig.data[2].line.color


def test_results_and_parallel_coordinates_accept_missing_results():
    bars = charts.results_bar(RUNS)
    assert list(bars.data[0].x) == ["a", "b"] and bars.data[0].text[0] == "80.0%"
    parallel = charts.settings_parallel(RUNS)
    labels = [d.label for d in parallel.data[0].dimensions]
    assert labels[-1] == "test accuracy" and "dropout" in labels


@pytest.mark.parametrize("normalise", [False, True])
def test_confusion_matrix(normalise):
    fig = charts.confusion_matrix([[3, 1], [0, 0]], ["daisy", "rose"], normalise=normalise)
    heat = fig.data[0]
    assert isinstance(heat, go.Heatmap) and heat.text[0][0].startswith("3")
    assert heat.z[0][1] == (0.25 if normalise else 1)
    assert heat.z[1][0] == 0
    cells = fig.data[1]  # what a click selects: one point per cell, (predicted, true)
    assert list(zip(cells.x, cells.y)) == [(p, t) for t in ("daisy", "rose") for p in ("daisy", "rose")]
    assert cells.text[1] == heat.text[0][1] and fig.layout.hoverdistance == -1


def test_top_k_and_study_charts():
    fig = charts.top_k_bar([{"class": "rose", "probability": 0.7}, {"class": "tulip", "probability": 0.2}])
    assert list(fig.data[0].y) == ["tulip", "rose"] and fig.data[0].text[-1] == "70.0%"
    study = charts.study_vs_ours({"base": (0.48, 0.82), "center": (0.49, 0.84)}, {"base": 0.9})
    assert list(study.data[1].y) == [0.9, None]


def test_reliability_curve_has_the_diagonal_and_one_line_per_run():
    calibration = Calibration(
        ece=0.05,
        bins=(
            CalibrationBin(confidence=0.55, accuracy=0.5, count=10),
            CalibrationBin(confidence=0.95, accuracy=0.97, count=90),
        ),
    )
    fig = charts.reliability_curve({"run a": calibration, "run b": calibration})
    assert [trace.name for trace in fig.data] == [
        "perfectly calibrated",
        "run a (ECE 0.050)",
        "run b (ECE 0.050)",
    ]
    assert list(fig.data[1].x) == [0.55, 0.95] and list(fig.data[1].y) == [0.5, 0.97]


def test_epoch_ticks_stay_whole_level_and_few():
    from flower_core.charts import MAX_EPOCH_TICKS, epoch_step

    assert [epoch_step(n) for n in (1, 6, 12, 30, 200)] == [1, 1, 2, 5, 50]
    assert all(-(-n // epoch_step(n)) <= MAX_EPOCH_TICKS for n in range(1, 500))
    history = [HistoryRow(epoch=e, loss=1.0, accuracy=0.5) for e in range(1, 13)]
    axis = charts.training_curves(history).layout.xaxis
    assert (axis.dtick, axis.tickformat, axis.tickangle, axis.tickmode) == (2, "d", 0, "linear")


def test_the_embedding_map_names_each_point_and_carries_its_path():
    points = [[0, 0], [1, 1], [2, 0]]
    files = ["daisy/a.jpg", "daisy/b.jpg", "rose/c.jpg"]
    fig = charts.embedding_map(
        points, files, ["daisy", "daisy", "rose"], ["daisy", "rose", "rose"], {"daisy/b.jpg"}
    )
    traces = {trace.name: trace for trace in fig.data}
    assert set(traces) == {"daisy", "daisy (suspect)", "rose"}
    suspect = traces["daisy (suspect)"]
    assert list(suspect.customdata) == ["daisy/b.jpg"] and suspect.marker.symbol == "x"
    assert list(suspect.text) == ["given daisy · likeliest rose"]
    assert suspect.hovertemplate == "%{customdata}<br>%{text}<extra></extra>"
