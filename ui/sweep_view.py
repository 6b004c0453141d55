"""Sweeps: choose settings and values (Train page); results and the best by validation, with a
button to train it as a new run (Compare page)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from flower_core.config import DEFAULT_MAX_RUNS, MAX_SEEDS, PRESETS, SETTINGS, make_config
from flower_core.data.dataset import Dataset
from flower_core.evaluation.uncertainty import CI_LABEL, interval_text
from flower_core.groups import group as groups
from flower_core.groups.charts import sweep_parallel
from flower_core.groups.group import list_groups
from flower_core.groups.sweep import (
    KIND,
    best_by_validation,
    best_config,
    leaders,
    parse_grid,
    plan_sweep,
    start_sweep,
    sweep_results,
    sweepable,
)
from flower_core.models.backbones import opening_backbone
from flower_core.training import jobs
from flower_core.training.estimate import estimate_group
from flower_core.training.jobs import launch_problem
from ui.common import group_estimate, guard, launch_button, percent, plural, runs_root
from ui.home import online
from ui.train_form import WEIGHTS

_SIZE = SETTINGS["image_size"]


def _values(name: str, default) -> str:
    """One setting's values as text, `a,b`: picked from its choices or, for whole numbers, the
    form's options (`config.SETTINGS`); typed for any other setting (any float may be swept)."""
    spec, kind = SETTINGS[name], sweepable()[name]
    listed = spec.choices or (spec.options if kind == "int" else ())
    options = list(listed) or ([True, False] if kind == "bool" else None)
    if options:
        picked = st.multiselect(
            spec.label,
            options,
            default=[default] if default in options else None,
            key=f"sweep_values_{name}",
            help=spec.help,
        )
        return ",".join(map(str, picked))
    shown = "/".join(map(str, default)) if isinstance(default, list) else str(default)
    return st.text_input(
        spec.label,
        value=shown,
        key=f"sweep_values_{name}",
        help=f"{spec.help} Comma-separated values; a list as 512/128.",
    )


@st.cache_data(ttl=30, show_spinner=False)
def _estimate(data_root: str, photos: int, runs: str, preset: str, grid_text: str, options: dict) -> dict:
    planned = plan_sweep(preset, parse_grid(grid_text), **options)
    configs = [p.config for p in planned]
    return estimate_group(configs, data_root, runs_root=runs, photos=photos, calibration="background")


def launcher(data_root, dataset: Dataset | None) -> None:
    """Pick a preset, settings and values; the number of runs and the time before the click
    (disabled without a `dataset`, as the page loaded it; its photo count feeds the estimate)."""
    with st.expander("Sweep settings", icon=":material/tune:"):
        st.caption(
            "Every combination of the values (or a random sample of them), on one split, "
            "queued as one group; runs that differ only in the head share one backbone pass."
        )
        preset = st.selectbox("Start from preset", list(PRESETS), key="sweep_preset")
        base = make_config(preset).to_json()
        cells = [st.container(), *st.columns(2)]  # three in a row cut "ImageNet (transfer)"
        common = {
            "backbone": cells[0].selectbox(
                SETTINGS["backbone"].label,
                SETTINGS["backbone"].choices,
                index=SETTINGS["backbone"].choices.index(opening_backbone(base["backbone"], online())),
                key=f"sweep_{preset}_backbone",
            ),
            "weights": cells[1].selectbox(
                "Weights", ["imagenet", "none"], format_func=WEIGHTS.get, key="sweep_weights"
            ),
            "image_size": cells[2].selectbox(
                _SIZE.label, _SIZE.options, index=_SIZE.options.index(base["image_size"]), key="sweep_size"
            ),
        }
        names = st.multiselect(
            "Settings to vary", list(sweepable()), default=["dropout"], key="sweep_settings"
        )
        grid_text = ";".join(f"{name}={_values(name, base[name])}" for name in names)
        left, right = st.columns(2)
        seeds = int(left.number_input("Seeds per combination", 1, MAX_SEEDS, 1, key="sweep_seeds"))
        samples = (
            int(
                right.number_input(
                    "Random sample (0 = every combination)", 0, DEFAULT_MAX_RUNS, 0, key="sweep_samples"
                )
            )
            or None
        )
        options = {**common, "seeds": seeds, "samples": samples}
        action = "Cannot start the sweep"

        def planned_configs():
            return [p.config for p in plan_sweep(preset, parse_grid(grid_text), **options)]

        problem = launch_problem(planned_configs, data_root, online(), dataset)
        if problem is None and dataset is not None:
            photos, runs = len(dataset.files), str(runs_root())
            group_estimate("sweep", _estimate, str(data_root), photos, runs, preset, grid_text, options)
        pressed = launch_button(
            "Start the sweep",
            action,
            problem,
            key="sweep_start",
            icon=":material/play_arrow:",
            disabled=dataset is None,
        )
        if pressed:
            with guard(action, stop=False):
                record = start_sweep(
                    data_root, runs_root(), preset=preset, grid=parse_grid(grid_text), **options
                )
                st.toast(
                    f"Queued {record['id']}: {plural(len(record['runs']), 'run')}", icon=":material/tune:"
                )


def results() -> None:
    """A sweep's combinations (sortable), their parallel coordinates, and the best by validation."""
    from ui.study_view import actions

    records = list_groups(runs_root(), KIND)
    if not records:
        st.info("No sweep yet: start one from the Train page (Sweep settings).", icon=":material/info:")
        return
    by_id = {r["id"]: r for r in records}
    chosen = st.selectbox(
        "Sweep",
        list(by_id),
        key="compare_sweep_pick",
        format_func=lambda g: f"{g} ({plural(len(by_id[g]['runs']), 'run')})",
    )
    settings = list(by_id[chosen]["info"]["grid"])
    with guard("Cannot read the sweep"):
        rows = groups.group_rows(runs_root(), chosen)
    table = sweep_results(rows, settings)
    frame = (
        pd.DataFrame(table)
        .assign(
            states=lambda f: f["states"].map(lambda s: ", ".join(f"{n} {k}" for k, n in s.items()) or "done"),
            test_ci=[interval_text(r["test_accuracy"], r["test_photos"]) or "–" for r in table],
        )
        .drop(columns=["test_interval", "leader"])
    )
    st.dataframe(
        frame,
        hide_index=True,
        key="compare_sweep_table",
        column_config={
            "val_accuracy": st.column_config.NumberColumn("val acc (mean)", format="percent"),
            "test_accuracy": st.column_config.NumberColumn("test acc (mean)", format="percent"),
            "test_ci": st.column_config.TextColumn(f"test acc, {CI_LABEL}"),
        },
    )
    st.plotly_chart(sweep_parallel(table, settings), key="compare_sweep_chart")
    best, tied = best_by_validation(rows, settings), leaders(rows, settings)
    if not tied:
        st.info("No run of this sweep has finished yet.", icon=":material/hourglass_top:")
    elif best is None:
        names = ", ".join(f"**{r['combination']}**" for r in tied)
        st.info(
            f"A tie, no single best: {names} have equal validation accuracies, or ones within the "
            f"noise of the validation photos (inside each other's {CI_LABEL}). More seeds or photos "
            "could tell them apart.",
            icon=":material/balance:",
        )
    else:
        st.success(
            f"Best by validation accuracy: **{best['combination']}** ({percent(best['val_accuracy'])} "
            "validation; chosen without looking at the test photos).",
            icon=":material/emoji_events:",
        )
        if st.button("Train it as a new run", icon=":material/play_arrow:", key="compare_sweep_best"):
            with guard("Cannot start the run"):
                run_dir = jobs.submit(best_config(rows, settings), by_id[chosen]["data_root"], runs_root())
            st.toast(f"Queued {run_dir.name}", icon=":material/play_arrow:")
    actions(chosen, "sweep")
