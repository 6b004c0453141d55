"""Classify & explain: predict uploaded photos and show where the model looked."""

import streamlit as st

from ui import classify_view as view
from ui import common, loaders

common.page(
    "classify",
    "Upload photos, take one with the webcam or pick one from the dataset, see the "
    "model's top classes, and a heatmap of the evidence it used.",
)
rows = loaders.finished_runs()
if not rows:
    common.empty_state(
        "No trained model yet: train one first.",
        "train",
        "Start a run on the Train page",
        ":material/model_training:",
    )
    st.stop()

left, right = st.columns([1, 1], gap="large")
with left:
    run_dir = view.choose_run(rows)
with common.guard("Cannot load the model"):
    _, class_names = loaders.run_model(run_dir)
with right:
    photos = view.choose_photos()

ctl = view.controls(run_dir, class_names)
explain_tab, compare_tab, mistakes_tab = st.tabs(
    [
        ":material/center_focus_strong: Prediction & heatmap",
        ":material/compare: Side by side",
        ":material/report: Mistakes",
    ],
    key="classify_tab",
    on_change="rerun",
)
if mistakes_tab.open:
    with mistakes_tab:
        view.mistakes(run_dir, ctl)
else:
    with explain_tab if explain_tab.open else compare_tab:
        view.photo_tab(run_dir, rows, photos, ctl, side_by_side=compare_tab.open)
