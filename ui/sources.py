"""Ways to get a dataset: a local folder, an archive upload, the synthetic demo set, or a download."""

from __future__ import annotations

import re
from pathlib import Path

import streamlit as st

from flower_core.data.dataset import find_datasets
from flower_core.data.synthetic import generate, is_synthetic
from flower_core.errors import FlowerError
from flower_core.intake.archive import ARCHIVE_TYPES, archive_kinds, archive_stem
from flower_core.intake.download import FLOWER_PHOTOS_BYTES, download_flower_photos, offline_message
from flower_core.intake.uploads import check_upload, unpack_upload
from flower_core.store.settings import data_home
from ui import loaders
from ui.common import (
    data_root,
    guard,
    progress_reporter,
    set_data_root,
    upload_limit_mb,
)
from ui.home import online


def _use(root: str | Path, what: str) -> None:
    """Check a folder is a dataset, make it the one in use, and reload the page."""
    with guard(f"Cannot use {root}"):
        dataset = loaders.current_dataset(root)
        set_data_root(root)
    st.session_state["home_notice"] = (
        f"Now using {what}: {len(dataset.files):,} photos in {len(dataset.class_names)} classes."
    )
    st.rerun()


def _new_folder(parent: Path, name: str) -> Path:
    """A folder name under `parent` from user text, made safe and not yet taken."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "dataset"
    candidate, n = parent / stem, 2
    while candidate.exists():
        candidate, n = parent / f"{stem}-{n}", n + 1
    return candidate


def local_folder() -> None:
    """Point the app at a folder that holds one sub-folder per class."""
    st.caption("A folder with one sub-folder per class, e.g. `data/flowers/daisy/*.jpg`.")
    path = st.text_input("Dataset folder", value=str(data_root()), key="home_path")
    if st.button("Use this folder", icon=":material/folder_open:", key="home_use_path"):
        _use(path.strip(), "the folder")
    home = data_home()
    found = [p for p in find_datasets([home, home / "uploads"]) if p.resolve() != data_root().resolve()]
    if found:
        choice = st.selectbox("Or a dataset already here", found, format_func=str, key="home_found")
        if st.button("Use it", key="home_use_found"):
            _use(Path(choice), "the dataset")


def zip_upload() -> None:
    """Upload an archive of class folders; it is unpacked, with safety checks, into a new folder."""
    st.caption(
        f"An archive ({archive_kinds()}) with one folder per class (optionally inside one top folder). "
        "It is unpacked into a new folder under the data folder; links, absolute paths and "
        "'..' are refused, and only photo files are kept."
    )
    upload = st.file_uploader(
        "Archive of class folders",
        type=list(ARCHIVE_TYPES),
        key="home_zip",
        help=f"Up to {upload_limit_mb()} MB.",
    )
    if upload is None:
        return
    try:
        check_upload(upload.name, upload.size, upload_limit_mb())
    except FlowerError as error:  # the other tabs and the page links stay usable
        st.error(f"The archive was refused: {error}", icon=":material/error:")
        return
    name = st.text_input("Name of the new dataset", value=archive_stem(upload.name), key="home_zname")
    if st.button("Unpack and use", icon=":material/unarchive:", key="home_unzip"):
        left_out: list[str] = []
        with guard("The archive was refused", progress="Unpacking…") as bar:
            root = unpack_upload(
                upload, name, data_home(), progress_reporter(bar, "Unpacking"), on_skip=left_out.append
            )
        note = f" ({len(left_out):,} non-photo file(s) left out)" if left_out else ""
        _use(root, f"the upload '{upload.name}'{note}")


def synthetic_set() -> None:
    """Generate the labelled synthetic demo set (drawn flowers) for trying the app offline."""
    st.caption(
        ":orange[**Synthetic**]: drawn flowers of the five classes, not photos. Good for "
        "trying every page offline in a minute; accuracy on it says nothing about photos."
    )
    left, right = st.columns(2)
    per_class = left.number_input("Images per class", 10, 1000, 60, step=10, key="home_per_class")
    size = right.select_slider("Image size (px)", [64, 96, 128, 160, 224], 128, key="home_size")
    if st.button("Generate the synthetic demo set", icon=":material/draw:", key="home_synth"):
        out = data_home() / "synthetic"
        if out.exists() and not is_synthetic(out):
            out = _new_folder(data_home(), "synthetic")
        with guard("Could not generate the synthetic set", progress="Drawing flowers…") as bar:
            generate(
                out,
                per_class=int(per_class),
                size=int(size),
                seed=0,
                progress=progress_reporter(bar, "Drawing"),
            )
        _use(out, "the synthetic demo set")


def download() -> None:
    """Download TensorFlow's public `flower_photos` (3670 photos), or say why it cannot."""
    st.caption(
        f"TensorFlow's public *flower_photos* archive: 3,670 photos of the same five "
        f"classes, {FLOWER_PHOTOS_BYTES / 1e6:,.0f} MB."
    )
    target = data_home() / "flower_photos"
    if (target / "flower_photos").is_dir():
        if st.button("Use the downloaded photos", key="home_use_download"):
            _use(target / "flower_photos", "flower_photos")
        return
    if not online():
        st.warning(f"Unavailable: {offline_message()}.", icon=":material/cloud_off:")
        return
    if st.button("Download flower_photos", icon=":material/download:", key="home_download"):
        with guard("Download failed", progress="Downloading…") as bar:
            megabytes = progress_reporter(bar, "Downloaded (MB)")
            root = download_flower_photos(
                target,
                progress=lambda d, t: megabytes(d // 10**6, (t or FLOWER_PHOTOS_BYTES) // 10**6),
            )
        _use(root, "flower_photos")


def chooser() -> None:
    """The four ways to get a dataset, as tabs."""
    tabs = st.tabs(
        [
            ":material/folder: Local folder",
            ":material/upload_file: Upload an archive",
            ":material/draw: Synthetic demo set",
            ":material/cloud_download: Download",
        ]
    )
    for tab, section in zip(tabs, (local_folder, zip_upload, synthetic_set, download)):
        with tab:
            section()
