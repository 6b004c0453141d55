"""The webcam burst: a Streamlit component with no build step (`assets/webcam_burst/index.html`,
plain JavaScript speaking Streamlit's component messages) that captures N frames a few per
second with a live count, and adds them to a class as every upload is added."""

from __future__ import annotations

from pathlib import Path

import streamlit as st
import streamlit.components.v1 as components

from flower_core.intake.uploads import add_photos
from flower_core.intake.webcam import DEFAULT_BURST, FRAMES_PER_SECOND, MAX_BURST, burst_id, burst_photos
from flower_core.store.settings import data_home
from ui.common import ASSETS, guard

_component = components.declare_component("webcam_burst", path=str(ASSETS / "webcam_burst"))
# The bursts already added this session: the component returns its last burst on every rerun.
ADDED = "dataset_bursts"


def capture(key: str, frames: int, label: str) -> object:
    """The burst component; its last value (`None` before the first burst)."""
    return _component(frames=frames, per_second=FRAMES_PER_SECOND, label=label, key=key, default=None)


def burst_panel(root: Path, target: str, limit_mb: float, added) -> None:
    """How many frames, the camera with its button and live count; a new burst is added to
    `target` (`uploads.add_photos`: the uploads' checks, quota and journal), then `added(written,
    skipped, target)` says so."""
    frames = st.slider(
        "Frames per burst",
        1,
        MAX_BURST,
        DEFAULT_BURST,
        key="dataset_burst_frames",
        help=f"{FRAMES_PER_SECOND} per second: click for the whole burst, or hold it and let go to stop.",
    )
    value = capture("dataset_burst", int(frames), f"Hold or click: {frames} photo(s) of a {target}")
    burst, done = burst_id(value), st.session_state.setdefault(ADDED, set())
    if burst is None or burst in done:
        return
    done.add(burst)
    skipped: list[str] = []
    with guard("The webcam burst was refused"):
        written = add_photos(root, target, burst_photos(value, target), data_home(), limit_mb, skipped.append)
    added(written, skipped, target)
