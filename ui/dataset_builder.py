"""The Dataset page's builder: choose or upload a dataset, make a new one, edit its classes, add
photos (loose uploads, an archive, the webcam) and draw a quick subset. Every change goes through
`flower_core` (`intake.uploads`, `data.fixes`), which checks it and journals it."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from flower_core.data import fixes
from flower_core.data.dataset import list_candidates
from flower_core.errors import FlowerError
from flower_core.intake.archive import ARCHIVE_TYPES, archive_kinds
from flower_core.intake.uploads import add_archive, add_photos, new_dataset, quick_subset
from flower_core.store.settings import data_home
from ui import sources
from ui.common import guard, set_data_root, upload_limit_mb
from ui.webcam import burst_panel


def _switch(root: Path, notice: str) -> None:
    with guard(f"Cannot use {root}"):
        set_data_root(root)
    st.session_state["dataset_notice"] = notice
    st.rerun()


def choose() -> None:
    """The ways to get a dataset (Home's): a folder, a .zip, the synthetic set, a download."""
    with st.expander("Choose or upload a dataset", icon=":material/folder_open:"):
        sources.chooser()


def new_dataset_form() -> None:
    """A new, empty dataset with a name, made the one in use."""
    left, right = st.columns([3, 1], vertical_alignment="bottom")
    name = left.text_input("Name of a new dataset", key="dataset_new_name", placeholder="my-flowers")
    if right.button("Create", icon=":material/create_new_folder:", key="dataset_create", disabled=not name):
        with guard("Cannot create the dataset"):
            root = new_dataset(data_home(), name)
        _switch(root, f"Created {root.name}: add classes, then photos.")


def subset_form(root: Path) -> None:
    """A quick subset of the dataset in use: N photos per class, seeded, linked not copied."""
    left, middle, right = st.columns([2, 1, 1], vertical_alignment="bottom")
    per_class = left.number_input("Photos per class", 1, 10_000, 50, key="dataset_subset_n")
    seed = middle.number_input("Seed", 0, 2**31 - 1, 0, key="dataset_subset_seed")
    if right.button("Make a quick subset", icon=":material/content_cut:", key="dataset_subset"):
        with guard("Cannot make the subset"):
            subset = quick_subset(root, int(per_class), int(seed), data_home(), f"{root.name}-{per_class}")
        _switch(subset, f"Now using the quick subset {subset.name} (links to the photos of {root.name}).")


def class_names(root: Path) -> list[str]:
    """The dataset's class folders, even empty ones (a dataset being built)."""
    try:
        return list_candidates(root, min_classes=1)[0]
    except FlowerError:  # no folder, or a new dataset with no class yet
        return []


def classes_editor(root: Path, names: list[str]) -> None:
    """Add, rename and remove classes (a removed class moves into the hidden folder)."""
    left, right = st.columns([3, 1], vertical_alignment="bottom")
    new = left.text_input("New class", key="dataset_class_new", placeholder="e.g. daisy")
    if right.button("Add class", icon=":material/add:", key="dataset_class_add", disabled=not new):
        with guard("Cannot add the class"):
            fixes.add_class(root, new)
        st.rerun()
    if not names:
        return
    left, middle, right = st.columns([2, 2, 1], vertical_alignment="bottom")
    chosen = left.selectbox("Class", names, key="dataset_class_pick")
    renamed = middle.text_input("Rename to", key="dataset_class_rename_to")
    if right.button("Rename", key="dataset_class_rename", disabled=not renamed):
        with guard("Cannot rename the class"):
            fixes.rename_class(root, chosen, renamed)
        st.rerun()
    if st.button(f"Remove class {chosen}", icon=":material/delete:", key="dataset_class_remove"):
        with guard("Cannot remove the class"):
            fixes.remove_class(root, chosen)
        st.rerun()


def _added(written: list[str], skipped: list[str], where: str) -> None:
    """Say what was added, and empty the uploader (it would add the same photos again)."""
    note = f" ({len(skipped)} left out: not a photo or unreadable)" if skipped else ""
    st.session_state["dataset_notice"] = f"Added {len(written)} photo(s) to {where}{note}."
    st.session_state["dataset_uploads"] = st.session_state.get("dataset_uploads", 0) + 1
    st.rerun()


def _round() -> str:
    """A suffix of the uploaders' keys, new after each addition, so they start empty again."""
    count = st.session_state.get("dataset_uploads", 0)
    return f"_{count}" if count else ""


def photos_panel(root: Path, names: list[str]) -> None:
    """Add photos to one class: loose photos, an archive, or a webcam burst counted live."""
    if not names:
        st.caption("Add a class first.")
        return
    target = st.selectbox("Add photos to the class", names, key="dataset_add_class")
    limit = upload_limit_mb()
    # Stateful: only the open tab runs, so the camera starts only once its tab is opened.
    loose, archive, webcam = st.tabs(
        [":material/image: Photos", ":material/folder_zip: An archive", ":material/photo_camera: Webcam"],
        key="dataset_add_source",
        on_change="rerun",
    )
    skipped: list[str] = []
    if loose.open:
        with loose:
            uploads = st.file_uploader(
                "Photos",
                accept_multiple_files=True,
                key=f"dataset_add_files{_round()}",
                help=f"Up to {limit} MB in all.",
            )
            if uploads and st.button("Add these photos", key="dataset_add_files_go"):
                with guard("The photos were refused"):
                    written = add_photos(
                        root,
                        target,
                        [(u.name, u.getvalue()) for u in uploads],
                        data_home(),
                        limit,
                        skipped.append,
                    )
                _added(written, skipped, target)
    if archive.open:
        with archive:
            upload = st.file_uploader(
                f"An archive of photos ({archive_kinds()})",
                type=list(ARCHIVE_TYPES),
                key=f"dataset_add_archive{_round()}",
                help=f"Its photos, in any folders, all go to the class; up to {limit} MB unpacked.",
            )
            if upload is not None and st.button("Add the archive's photos", key="dataset_add_archive_go"):
                with guard("The archive was refused"):
                    written = add_archive(root, target, upload, data_home(), limit, skipped.append)
                _added(written, skipped, target)
    if webcam.open:
        with webcam:
            burst_panel(root, target, limit, _added)
