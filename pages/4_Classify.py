"""Classify & explain: predict uploaded photos and show where the model looked."""

import streamlit as st

from ui import classify_view as view
from ui import common, loaders

common.page("Classify & explain", "Upload photos (or pick one from the dataset), see the "
            "model's top classes, and a heatmap of the evidence it used.",
            icon=":material/center_focus_strong:")
rows = loaders.finished_runs()
if not rows:
    common.empty_state("No trained model yet: train one first.", "train",
                       "Start a run on the Train page", ":material/model_training:")
    st.stop()

left, right = st.columns([1, 1], gap="large")
with left:
    run_dir = view.choose_run(rows)
with common.guard("Cannot load the model"):
    _, class_names = loaders.run_model(run_dir)
with right:
    photos = view.choose_photos()

ctl = view.controls(run_dir, class_names)
explain_tab, compare_tab, mistakes_tab = st.tabs([
    ":material/center_focus_strong: Prediction & heatmap",
    ":material/compare: Side by side",
    ":material/report: Mistakes",
], key="classify_tab", on_change="rerun")
name, data = None, None
if photos and not mistakes_tab.open:
    name = view.predictions_table(run_dir, photos) if len(photos) > 1 else photos[0][0]
    data = dict(photos)[name]

if mistakes_tab.open:
    with mistakes_tab:
        view.mistakes(run_dir, ctl)
elif data is None:
    with explain_tab if explain_tab.open else compare_tab:
        st.info("Upload a photo or pick one from the dataset to see a prediction.",
                icon=":material/upload:")
elif explain_tab.open:
    with explain_tab:
        top, heat = st.columns([1, 2], gap="large")
        with top:
            view.prediction(run_dir, name, data)
        with heat:
            view.explanation(run_dir, data, ctl)
else:
    with compare_tab:
        view.side_by_side(rows, data, ctl)
