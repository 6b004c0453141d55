"""Dataset: build it (classes, photos from uploads, an archive or a webcam burst, a quick subset),
audit it for label errors, duplicates and outliers and fix them with nothing lost, and look at it
(class balance, samples, sizes, colour, unreadable files, duplicates and the split)."""

import streamlit as st

from flower_core.data.synthetic import is_synthetic
from ui import common, dataset_builder, eda_view, loaders, review_view

common.page(
    "dataset",
    "Build the dataset, find and fix its label errors, and look at the photos before training on them.",
)
if "dataset_notice" in st.session_state:
    st.success(st.session_state.pop("dataset_notice"), icon=":material/check_circle:")
root = common.data_root()
st.caption(f"`{root}`")
dataset, problem = loaders.dataset_or_none(root)
# Stateful tabs: the rerun after a fix keeps the person on the tab they were on (a notice drawn
# above stateless tabs reopens the first), and only the open tab's content runs.
build, audit, explore = st.tabs(
    [
        ":material/construction: Build",
        ":material/troubleshoot: Audit & review",
        ":material/query_stats: Explore",
    ],
    key="dataset_section",
    on_change="rerun",
)

if build.open:
    with build:
        dataset_builder.choose()
        dataset_builder.new_dataset_form()
        names = dataset_builder.class_names(root)
        dataset_builder.classes_editor(root, names)
        dataset_builder.photos_panel(root, names)
        if dataset is not None:
            dataset_builder.subset_form(root)

if audit.open:
    with audit:
        if dataset is None:
            common.empty_state(f"No dataset to audit yet. {problem}")
        else:
            review_view.run_audit(root)
            result = st.session_state.get(review_view.AUDIT)
            if result is not None and result.is_of(root):
                review_view.summary(result)
                review_view.review_queue(root, result, dataset.class_names)
                review_view.undo_button(root)
                review_view.embedding_map(root, result)
            review_view.retrain(root)

if explore.open:
    with explore:
        if dataset is None:
            common.empty_state(
                f"No dataset to explore yet. {problem}",
                "home",
                "Get a dataset on the Home page",
                ":material/home:",
            )
        else:
            with common.guard("Could not analyse the dataset"):
                eda = loaders.eda_tables(str(root), loaders.folder_stamp(root))
            eda_view.headline(eda, is_synthetic(root))
            sections = {
                ":material/bar_chart: Classes": eda_view.classes,
                ":material/grid_view: Samples": eda_view.samples,
                ":material/aspect_ratio: Sizes": eda_view.sizes,
                ":material/palette: Colour": eda_view.colour,
                ":material/rule: Quality": eda_view.quality,
                ":material/call_split: Split": eda_view.split,
            }
            common.section_tabs(sections, eda)
