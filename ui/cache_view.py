"""The feature cache on the Train page: what is cached, its size on disk, and a way to clear it."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from flower_core.models.features import FeatureCache
from ui.common import guard


def cache_panel() -> None:
    """An expander listing the cached backbone features; building progress shows in the job log."""
    cache = FeatureCache()
    entries = cache.entries()
    size_mb = sum(e["bytes"] for e in entries) / 1e6
    with st.expander(
        f"Feature cache: {len(entries)} entries, {size_mb:,.1f} MB on disk", icon=":material/memory:"
    ):
        st.caption(
            f"`{cache.root}`. A frozen backbone's features are computed once per dataset, backbone, "
            "weights, image size, preprocessing and pooling, then reused by every run: the first "
            "run builds them (shown in the job log), later runs start training at once."
        )
        if not entries:
            st.info("Nothing cached yet.", icon=":material/info:")
            return
        columns = ["backbone", "image_size", "preprocessing", "kind", "photos", "bytes"]
        st.dataframe(pd.DataFrame(entries)[columns], key="train_cache_table", hide_index=True)
        if st.button("Clear the cache", key="train_cache_clear", icon=":material/delete:"):
            with guard("Cannot clear the cache"):
                freed = cache.clear()
            st.toast(f"Freed {freed / 1e6:,.1f} MB", icon=":material/delete:")
            st.rerun()
