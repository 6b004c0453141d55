"""The Compare page's pieces: the runs table, charts of the selected runs, and run actions."""

from __future__ import annotations

import io
import json

import pandas as pd
import streamlit as st

from flower_core import charts
from flower_core.evaluation.compare import (
    MORE_COLUMNS,
    TABLE_COLUMNS,
    best_evaluated,
    retrain_pairs,
    run_details,
    run_label,
    table_columns,
    table_rows,
)
from flower_core.evaluation.uncertainty import CI_LABEL, interval_text
from flower_core.groups.study import NOISE_WORDS
from flower_core.store.run_files import Metrics
from flower_core.store.runs import HISTORY, METRICS, MODEL, Run, RunStore
from ui import classify_view, export_view, study_view
from ui.common import guard, percent, runs_root

_SMALL = "small"
# The confusion cell last clicked on this page: (run id, true class, predicted class).
_CELL = "compare_cell"
# How each column of the runs table (`flower_core.evaluation.compare.TABLE_COLUMNS`) is shown: short labels
# and widths in pixels, so that the compact set (926 px with the selection column) fits a 1400 px
# window with no sideways scroll (about 940 px beside the sidebar); abbreviations are spelled out
# in their help.
COLUMN_CONFIG = {
    "label": st.column_config.TextColumn("run", pinned=True, width=230),
    "state": st.column_config.TextColumn("state", width=80),
    "test_accuracy": st.column_config.NumberColumn(
        "test acc", format="percent", width=70, help="Accuracy on the run's test photos"
    ),
    "test_ci": st.column_config.TextColumn(
        CI_LABEL,
        width=75,
        help=f"Where the test accuracy would likely fall on other photos like these: its {CI_LABEL} "
        "(Wilson interval) on the run's test photos, wide on a small test set",
    ),
    "best_val_accuracy": st.column_config.NumberColumn(
        "val acc", format="percent", width=70, help="The best validation accuracy over the run's epochs"
    ),
    "preset": st.column_config.TextColumn("preset", width=80),
    "backbone": st.column_config.TextColumn("backbone", width=125),
    "image_size": st.column_config.NumberColumn(
        "size", format="%d px", width=60, help="Input image size: photos are resized to size x size"
    ),
    "started": st.column_config.DatetimeColumn(
        "started", format="D MMM, HH:mm", width=100, help="When training started (UTC)"
    ),
    "test_loss": st.column_config.NumberColumn(
        "test loss", format="%.4f", width=_SMALL, help="Cross-entropy loss on the run's test photos"
    ),
    "weights": st.column_config.TextColumn("weights", width=_SMALL),
    "batch_size": st.column_config.NumberColumn("batch", width=_SMALL, help="Batch size"),
    "dropout": st.column_config.NumberColumn("dropout", width=_SMALL),
    "augment": st.column_config.Column("augment", width=_SMALL),
    "augment_cache": st.column_config.TextColumn(
        "augmented as", help="cached feature maps or K views", width=_SMALL
    ),
    "seconds": st.column_config.NumberColumn(
        "duration (s)", format="%.0f", width=_SMALL, help="Training time, summed over the epochs"
    ),
    "tags": st.column_config.ListColumn("tags", width=_SMALL),
    "run_id": st.column_config.TextColumn("run id", width="medium"),
}


def runs_frame(rows: list[dict]) -> pd.DataFrame:
    """The runs table, one row per run, newest first."""
    frame = pd.DataFrame([{**row, "label": run_label(row)} for row in table_rows(rows) if "preset" in row])
    frame = frame.reindex(columns=list(TABLE_COLUMNS))
    return frame.assign(started=pd.to_datetime(frame["started"], utc=True, errors="coerce"))


def corrupt_runs(rows: list[dict]) -> None:
    """Runs whose files cannot be read (half-copied, edited by hand): why, and a way to delete
    them. They are left out of the table and the charts."""
    broken = [row for row in rows if row.get("state") == "corrupt"]
    if not broken:
        return
    with st.expander(
        f"{len(broken)} run{'s' if len(broken) > 1 else ''} cannot be read",
        icon=":material/warning:",
    ):
        store = RunStore(runs_root())
        for row in broken:
            left, right = st.columns([4, 1])
            left.warning(f"`{row['run_id']}`: {row.get('message', '')}", icon=":material/warning:")
            if right.button("Delete", icon=":material/delete:", key=f"compare_drop_{row['run_id']}"):
                with guard("Cannot delete the run"):
                    store.delete(row["run_id"])
                st.rerun()


def filters(frame: pd.DataFrame) -> pd.DataFrame:
    """Filter by state, preset, backbone and a text (name, tag or id)."""
    cells = st.columns([1, 1, 1, 2])
    chosen = {}
    for cell, column in zip(cells, ("state", "preset", "backbone")):
        options = sorted(frame[column].dropna().unique())
        chosen[column] = cell.multiselect(
            column.capitalize(), options, key=f"compare_{column}", placeholder="all"
        )
    text = cells[3].text_input("Search", placeholder="name, tag or run id", key="compare_text")
    keep = pd.Series(True, index=frame.index)
    for column, values in chosen.items():
        if values:
            keep &= frame[column].isin(values)
    if text:
        haystack = frame["label"] + " " + frame["run_id"] + " " + frame["tags"].map(" ".join)
        keep &= haystack.str.contains(text, case=False, regex=False)
    return frame[keep].reset_index(drop=True)


def _column_label(column: str) -> str:
    return COLUMN_CONFIG[column]["label"]


def table(frame: pd.DataFrame) -> list[str]:
    """The sortable table, its compact columns and those a user adds (`flower_core.evaluation.compare`);
    returns the selected run ids (default: the three best)."""
    more = st.multiselect(
        "More columns",
        MORE_COLUMNS,
        key="compare_more_columns",
        format_func=_column_label,
        placeholder=", ".join(map(_column_label, MORE_COLUMNS[:4])) + "…",
        help="The table shows a run's results and main settings; add the others here.",
    )
    event = st.dataframe(
        frame,
        column_config=COLUMN_CONFIG,
        column_order=table_columns(more),
        hide_index=True,
        key="compare_table",
        placeholder="–",
        on_select="rerun",
        selection_mode="multi-row",
    )
    rows = event.selection.rows if event is not None else []
    if rows:
        return frame.iloc[rows]["run_id"].tolist()
    return [row["run_id"] for row in best_evaluated(frame.to_dict("records"), 3)]


def details(run_ids: list[str]) -> list[dict]:
    """Summary, settings, history and metrics of each selected run (`flower_core.evaluation.compare`)."""
    return [{**row, "label": run_label(row)} for row in run_details(runs_root(), run_ids)]


def curves(selected: list[dict]) -> None:
    """Accuracy and loss per epoch of the selected runs, overlaid."""
    histories = {row["label"]: row["history"] for row in selected}
    left, right = st.columns(2)
    left.plotly_chart(charts.compare_curves(histories, "accuracy"), key="compare_acc")
    right.plotly_chart(charts.compare_curves(histories, "loss"), key="compare_loss")


def results(selected: list[dict]) -> None:
    """Test accuracy and loss of the selected runs."""
    st.plotly_chart(charts.results_bar(selected), key="compare_results")


def settings(selected: list[dict]) -> None:
    """The selected runs' settings against their test accuracy."""
    st.plotly_chart(charts.settings_parallel(selected), key="compare_parallel")
    st.caption("Each line is a run; drag along an axis to highlight a range.")


def confusions(selected: list[dict]) -> None:
    """Normalised confusion matrices of up to three selected runs, side by side; a click on a
    cell shows that cell's test photos under their heatmaps (the Classify page's Mistakes tab)."""
    shown = [row for row in selected if row["metrics"].evaluated][:3]
    if not shown:
        st.info("None of the selected runs has test metrics yet.", icon=":material/info:")
        return
    for column, row in zip(st.columns(len(shown)), shown):
        key = f"compare_cm_{row['run_id']}"
        clicked = classify_view.confusion_chart(column, row["metrics"], row["label"], key, normalise=True)
        if clicked:
            st.session_state[_CELL] = (row["run_id"], *clicked)
    st.caption(":material/touch_app: Click a cell to see its test photos under their heatmaps.")
    run_id, true_name, predicted = st.session_state.get(_CELL, (None, None, None))
    row = next((row for row in shown if row["run_id"] == run_id), None)
    if row is not None:
        st.markdown(f"**{row['label']}**: {true_name} photos predicted as {predicted}")
        run = Run.open(runs_root() / run_id)
        classify_view.cell_photos(run, true_name, predicted, classify_view.Controls())


def before_after(rows: list[dict]) -> None:
    """A run trained again on a cleaned dataset beside the run it repeats (`compare.retrain_pairs`):
    each test accuracy with its 95% interval, the change, and whether it is within noise."""
    pairs = retrain_pairs(rows)
    if not pairs:
        return
    st.subheader("Before and after cleaning")
    names = [f"{run_label(pair['before'])} → {run_label(pair['after'])}" for pair in pairs]
    index = st.selectbox(
        "Trained again", range(len(pairs)), format_func=names.__getitem__, key="compare_pair"
    )
    pair = pairs[index]
    cells = st.columns(3)
    for cell, side in zip(cells, ("before", "after")):
        row = pair[side]
        accuracy = row.get("test_accuracy")
        cell.metric(
            side.capitalize(),
            percent(accuracy),
            delta=interval_text(accuracy, row.get("test_photos")) or f"not evaluated ({row['state']})",
            delta_color="off",
            delta_arrow="off",
        )
        cell.caption(run_label(row))
    change, noise = pair["change"], pair["within_noise"]
    cells[2].metric(
        "Change",
        "–" if change is None else f"{change * 100:+.1f} points",
        delta=None if noise is None else (NOISE_WORDS if noise else "beyond noise"),
        delta_color="off",
        delta_arrow="off",
    )
    st.caption(
        "Each accuracy is on its own run's test photos (training again splits the cleaned photos "
        f"anew). {NOISE_WORDS.capitalize()}: either accuracy lies inside the other's {CI_LABEL}, so "
        "these test sets cannot tell the two runs apart."
    )


def calibration(selected: list[dict]) -> None:
    """Reliability curves with each run's expected calibration error (ECE)."""
    curves = {row["label"]: row["metrics"].calibration for row in selected if row["metrics"].calibration}
    if not curves:
        st.info("None of the selected runs has calibration figures yet.", icon=":material/info:")
        return
    st.plotly_chart(charts.reliability_curve(curves), key="compare_reliability")
    st.caption(
        "Points below the diagonal: the model is more confident than it is right (over-confident); "
        "above it: under-confident. The Classify page flags a prediction as unsure below its run's own "
        "threshold, chosen on the validation photos."
    )


def per_class(selected: list[dict]) -> None:
    """Recall and F1 of each class for each selected run: where a model is weak."""
    rows = {}
    for row in selected:
        for name, report in row["metrics"].per_class.items():
            rows.setdefault(name, {})[f"{row['label']} · recall"] = report.recall
            rows[name][f"{row['label']} · F1"] = report.f1
    if not rows:
        st.info("None of the selected runs has test metrics yet.", icon=":material/info:")
        return
    frame = pd.DataFrame.from_dict(rows, orient="index").rename_axis("class")
    st.dataframe(
        frame,
        key="compare_per_class",
        placeholder="–",
        column_config={
            column: st.column_config.ProgressColumn(column, format="percent", min_value=0, max_value=1)
            for column in frame.columns
        },
    )
    st.caption("Recall: the share of a class's test photos found. F1 balances it with precision.")


def study(frame: pd.DataFrame) -> None:
    """Each study as it fills, beside the study's figures (`ui.study_view`, `flower_core.groups.study`)."""
    study_view.studies(frame)


def _history_csv(run: Run) -> bytes:
    return pd.DataFrame([row.to_json() for row in run.history]).to_csv(index=False).encode()


def _metrics_csv(metrics: Metrics) -> bytes:
    per_class = {name: report.to_json() for name, report in metrics.per_class.items()}
    frame = pd.DataFrame(per_class).T.rename_axis("class")
    buffer = io.StringIO()
    frame.to_csv(buffer)
    return buffer.getvalue().encode()


def downloads(run_dir, run_id: str) -> None:
    """Download buttons for the model, the metrics (JSON and CSV) and the history (CSV)."""
    run = Run.open(run_dir)
    metrics = run.metrics
    row = st.container(horizontal=True)
    row.download_button(
        "Model (.keras)",
        lambda: (run_dir / MODEL).read_bytes(),
        f"{run_id}.keras",
        disabled=not (run_dir / MODEL).is_file(),
        icon=":material/download:",
        key="compare_dl_model",
    )
    row.download_button(
        "Metrics (JSON)",
        json.dumps(metrics.to_json(), indent=2),
        f"{run_id}.json",
        "application/json",
        disabled=not (run_dir / METRICS).is_file(),
        key="compare_dl_json",
    )
    row.download_button(
        "Per-class (CSV)",
        _metrics_csv(metrics),
        f"{run_id}-classes.csv",
        "text/csv",
        disabled=not metrics.per_class,
        key="compare_dl_csv",
    )
    row.download_button(
        "History (CSV)",
        _history_csv(run),
        f"{run_id}-history.csv",
        "text/csv",
        disabled=not (run_dir / HISTORY).is_file(),
        key="compare_dl_hist",
    )


def manage(frame: pd.DataFrame) -> None:
    """Rename, tag, delete and download one run."""
    run_id = st.selectbox(
        "Run",
        frame["run_id"],
        key="compare_manage",
        format_func=lambda r: f"{frame.set_index('run_id').at[r, 'label']} ({r})",
    )
    store = RunStore(runs_root())
    with guard("Cannot open the run"):
        run_dir = store.path(run_id)
    row = frame.set_index("run_id").loc[run_id]
    left, right = st.columns(2)
    name = left.text_input("Name", value=row["label"], key=f"compare_name_{run_id}")
    tags = right.text_input(
        "Tags (comma-separated)", value=", ".join(row["tags"] or []), key=f"compare_tags_{run_id}"
    )
    if st.button("Save name and tags", icon=":material/sell:", key="compare_save"):
        with guard("Cannot save the name and tags"):
            store.set_meta(run_id, name=name, tags=tags.split(","))
        st.rerun()
    downloads(run_dir, run_id)
    export_view.export_panel(run_dir, "compare")
    confirm = st.checkbox("Yes, delete this run and its model", key=f"compare_confirm_{run_id}")
    if st.button("Delete run", icon=":material/delete:", disabled=not confirm, key="compare_delete"):
        with guard("Cannot delete the run"):
            store.delete(run_id)
        st.rerun()
