"""The Export button of a finished run: export the default formats, verified (one that disagrees
with the Keras model is left out, and said), then download one zip."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from flower_core.export.exporter import export_problem, export_zip
from flower_core.export.formats import DEFAULT_FORMATS
from ui.common import guard


def export_panel(run_dir: Path, key: str) -> None:
    """An Export button, a progress bar while the default formats are written and checked, then the
    zip download and each format's size and agreement with the Keras model. `key` prefixes the
    widget keys (the page's name)."""
    run_dir = Path(run_dir)
    stored = f"{key}_export_{run_dir.name}"
    problem = export_problem(run_dir)
    if st.button(
        f"Export ({', '.join(DEFAULT_FORMATS)})",
        icon=":material/ios_share:",
        disabled=problem is not None,
        key=f"{key}_export_button",
        help=problem
        or "Models that load without this app: each file is checked "
        "against the Keras model on the run's test photos.",
    ):
        with guard("Cannot export the run", progress="Exporting") as bar:
            st.session_state[stored] = export_zip(
                run_dir, progress=lambda step, done: bar.progress(min(done, 1.0), text=step)
            )
    if stored not in st.session_state:
        return
    data, report = st.session_state[stored]
    st.download_button(
        "Download the export (.zip)",
        data,
        f"{run_dir.name}-export.zip",
        "application/zip",
        icon=":material/download:",
        key=f"{key}_export_download",
    )
    for name, why in report["skipped"].items():
        st.warning(f"{name} left out: {why}", icon=":material/block:")
    st.dataframe(
        pd.DataFrame(report["formats"]).T[["size_bytes", "agreement", "max_abs_diff", "test_accuracy"]],
        key=f"{key}_export_table",
        column_config={
            "size_bytes": st.column_config.NumberColumn("bytes"),
            "agreement": st.column_config.NumberColumn("top-1 agreement", format="percent"),
            "max_abs_diff": st.column_config.NumberColumn("largest difference", format="%.1e"),
            "test_accuracy": st.column_config.NumberColumn("test accuracy", format="percent"),
        },
    )
