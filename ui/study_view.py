"""The study from one button (Train page) and each study as it fills (Compare page)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from flower_core.config import DEFAULTS, MAX_SEEDS, SETTINGS, SUGGESTED_PRESET, make_config
from flower_core.data.dataset import Dataset
from flower_core.groups import group as groups
from flower_core.groups.charts import study_bars
from flower_core.groups.study import list_studies, plan_study, start_study, study_table, table_cells
from flower_core.models.backbone_specs import BACKBONES
from flower_core.models.backbones import opening_backbone
from flower_core.training.estimate import estimate_group
from flower_core.training.jobs import launch_problem
from ui.common import group_estimate, guard, launch_button, plural, runs_root
from ui.home import online
from ui.train_form import WEIGHTS


@st.cache_data(ttl=30, show_spinner=False)
def _estimate(data_root: str, photos: int, runs: str, options: dict) -> dict:
    planned = plan_study(**options)
    configs = [p.config for p in planned]
    return estimate_group(configs, data_root, runs_root=runs, photos=photos, calibration="background")


def launcher(data_root, dataset: Dataset | None) -> None:
    """Backbone, seeds and image size, the time it should take here, and the button (disabled
    without a `dataset`, as the page loaded it; its photo count feeds the estimate)."""
    with st.expander("Run the whole study", icon=":material/science:"):
        st.caption(
            "The study's seven tuning steps (base … batchnorm), each with N seeds, all on one "
            "split, queued as one group. The Compare page shows them as they finish."
        )
        cells = [*st.columns(2), *st.columns(2)]  # four in a row cut "ImageNet (transfer)"
        opening = opening_backbone(make_config(SUGGESTED_PRESET).backbone, online())
        backbone = cells[0].selectbox(
            SETTINGS["backbone"].label,
            list(BACKBONES),
            index=list(BACKBONES).index(opening),
            key="study_backbone",
        )
        weights = cells[1].selectbox(
            "Weights", ["imagenet", "none"], format_func=WEIGHTS.get, key="study_weights"
        )
        seeds = cells[2].number_input("Seeds", 1, MAX_SEEDS, 1, key="study_seeds")
        sizes = SETTINGS["image_size"].options
        size = cells[3].selectbox(
            SETTINGS["image_size"].label, sizes, index=sizes.index(DEFAULTS.image_size), key="study_size"
        )
        baseline = st.checkbox("Add the no-transfer baseline (random weights, slow)", key="study_baseline")
        options = {
            "seeds": int(seeds),
            "backbone": backbone,
            "weights": weights,
            "image_size": int(size),
            "baseline": baseline,
        }
        action = "Cannot start the study"
        problem = launch_problem(
            lambda: [p.config for p in plan_study(**options)], data_root, online(), dataset
        )
        if problem is None and dataset is not None:
            group_estimate("study", _estimate, str(data_root), len(dataset.files), str(runs_root()), options)
        pressed = launch_button(
            "Run the study",
            action,
            problem,
            key="study_start",
            icon=":material/play_arrow:",
            type="primary",
            disabled=dataset is None,
        )
        if pressed:
            with guard(action, stop=False):
                record = start_study(data_root, runs_root(), **options)
                st.toast(
                    f"Queued {record['id']}: {plural(len(record['runs']), 'run')}", icon=":material/science:"
                )


def studies(frame: pd.DataFrame) -> None:
    """Each study as it fills (mean ± sd beside the study's figures, step gains), else the table
    over all runs by preset."""
    records = list_studies(runs_root())
    choices = {r["id"]: f"{r['id']} ({plural(len(r['runs']), 'run')})" for r in records}
    choices["all"] = "all runs, by preset"
    chosen = st.selectbox("Study", list(choices), format_func=choices.get, key="compare_study_pick")
    if chosen == "all":
        rows = frame.to_dict("records")
    else:
        with guard("Cannot read the study"):
            rows = groups.group_rows(runs_root(), chosen)
    table = study_table(rows)
    left, right = st.columns([3, 2])
    left.dataframe(pd.DataFrame(table_cells(table)), hide_index=True, key="compare_study")
    right.plotly_chart(study_bars(table), key="compare_study_chart")
    st.caption(
        "The study used VGG16 with its test set as validation; ours keep the test photos unseen, "
        "so small differences are expected. Gain: each step against the one before it."
    )
    if chosen != "all":
        actions(chosen, "study")


def actions(group_id: str, key: str) -> None:
    """Cancel a group's queued and running runs (finished ones are kept), or delete all its runs."""
    row = st.container(horizontal=True)
    if row.button("Cancel its queued runs", icon=":material/cancel:", key=f"compare_{key}_cancel"):
        with guard("Cannot cancel"):
            count = groups.cancel_group(runs_root(), group_id)
        st.toast(f"Cancelled {plural(count, 'run')}", icon=":material/cancel:")
    confirm = row.checkbox("Yes, delete all its runs", key=f"compare_{key}_confirm")
    if row.button("Delete", icon=":material/delete:", disabled=not confirm, key=f"compare_{key}_delete"):
        with guard("Cannot delete"):
            groups.delete_group(runs_root(), group_id)
        st.rerun()
