"""Train: pick a preset or tune every setting, start a background job and follow it live."""

import streamlit as st

from flower_core.store.runs import ACTIVE_STATES, peek_status
from ui import cache_view, common, live, loaders, study_view, sweep_view, train_form

common.page(
    "train",
    "Start a training run in the background and follow it live. It keeps "
    "going if you leave the page; one job trains at a time, the others wait in a queue.",
)
root = common.data_root()
dataset, problem = loaders.dataset_or_none(root)
settings, panel = st.columns([1, 1], gap="large")

with settings:
    st.subheader("Settings")
    if dataset is None:
        common.empty_state(
            f"No dataset to train on yet. {problem}",
            "home",
            "Get a dataset on the Home page",
            ":material/home:",
        )
    else:
        st.caption(f"Dataset `{root}`: {len(dataset.files):,} photos, {len(dataset.class_names)} classes.")
    preset = train_form.preset_picker()
    train_form.weights_note()
    if dataset is not None:
        train_form.estimate_note(preset, dataset)
    values = train_form.settings_form(preset, root, dataset)
    if values is not None:
        with common.guard(train_form.START_ACTION, stop=False):
            run_dir = live.start(values, preset, root)
            st.toast(f"Queued {run_dir.name}", icon=":material/play_arrow:")
    else:
        live.new_submission()
    cache_view.cache_panel()
    study_view.launcher(root, dataset)
    sweep_view.launcher(root, dataset)

with panel:
    st.subheader("Job")
    run_dir = live.followed_run()
    if run_dir is None:
        st.info(
            "No training yet: choose a preset, adjust the settings and press **Train**. "
            "Progress, curves and the log appear here.",
            icon=":material/info:",
        )
    elif peek_status(run_dir).state in ACTIVE_STATES:
        live.live(run_dir)
    else:
        with common.guard(f"Cannot show run {run_dir.name}"):
            live.results(run_dir)
        live.queue(None)
