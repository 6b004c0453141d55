"""Dataset: what is in the photos before any training (class balance, samples, sizes, colour,
unreadable files, duplicates and the split)."""

import streamlit as st

from flower_core.data.synthetic import is_synthetic
from ui import common, eda_view, loaders

common.page(
    "dataset",
    "Look at the photos before training on them: class balance, samples, "
    "sizes, colour, unreadable files, duplicates and the split.",
)
root = common.data_root()
dataset, problem = loaders.dataset_or_none(root)
if dataset is None:
    common.empty_state(
        f"No dataset to explore yet. {problem}",
        "home",
        "Get a dataset on the Home page",
        ":material/home:",
    )
    st.stop()

with common.guard("Could not analyse the dataset"):
    eda = loaders.eda_tables(str(root), loaders.folder_stamp(root))
st.caption(f"`{root}`")
eda_view.headline(eda, is_synthetic(root))

sections = {
    ":material/bar_chart: Classes": eda_view.classes,
    ":material/grid_view: Samples": eda_view.samples,
    ":material/aspect_ratio: Sizes": eda_view.sizes,
    ":material/palette: Colour": eda_view.colour,
    ":material/rule: Quality": eda_view.quality,
    ":material/call_split: Split": eda_view.split,
}
for tab, section in zip(st.tabs(list(sections)), sections.values()):
    with tab:
        section(eda)
