"""Compare: every run in one sortable table, the selected runs side by side, and the study."""

import streamlit as st

from ui import common, compare_view, live, loaders, sweep_view

common.page(
    "compare",
    "Every run in one table: sort by a column, filter, and select rows to "
    "compare their curves, test results, settings and confusion matrices.",
)
rows = loaders.runs()
if not rows:
    common.empty_state(
        "No runs yet: train a model first.",
        "train",
        "Start a run on the Train page",
        ":material/model_training:",
    )
    st.stop()

live.follow_runs()
compare_view.corrupt_runs(rows)
frame = compare_view.filters(compare_view.runs_frame(rows))
if frame.empty:
    st.info("No run matches these filters.", icon=":material/filter_alt_off:")
    st.stop()
selected_ids = compare_view.table(frame)
st.caption(
    f"{common.plural(len(frame), 'run')} shown. Select rows (checkbox at the left) to compare them; "
    "without a selection the three best test accuracies are compared."
)

with common.guard("Cannot read the selected runs"):
    selected = compare_view.details(selected_ids)
st.subheader("Selected runs")
if not selected:
    st.info("No finished run to compare yet: select rows in the table.", icon=":material/info:")
else:
    sections = {
        ":material/show_chart: Curves": compare_view.curves,
        ":material/bar_chart: Test results": compare_view.results,
        ":material/tune: Settings": compare_view.settings,
        ":material/grid_on: Confusion matrices": compare_view.confusions,
        ":material/category: Per class": compare_view.per_class,
        ":material/target: Calibration": compare_view.calibration,
    }
    common.section_tabs(sections, selected)

compare_view.before_after(rows)

st.subheader("The study against our runs")
compare_view.study(frame)

st.subheader("Sweeps")
sweep_view.results()

st.subheader("Manage a run")
compare_view.manage(frame)
