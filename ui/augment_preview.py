"""The Train form's augmentation preview: one training photo and 8 augmented versions drawn with
the form's current settings, and what the cached-maps mode does instead
(`flower_core.data.augment_preview`)."""

from __future__ import annotations

import streamlit as st

from flower_core.config import SETTINGS
from flower_core.data.augment_preview import PREVIEW_VERSIONS, augmented_versions, maps_note
from ui import loaders
from ui.common import data_root

COLUMNS = 3


@st.cache_data(max_entries=8, show_spinner="Drawing augmented versions…")
def _versions(photo: str, image_size: int, seed: int):
    return augmented_versions(photo, image_size, seed)


def panel(values: dict) -> None:
    """The preview, drawn with the form's settings as they are now; also while augmentation is
    off (saying so), since that is when it helps decide whether to turn it on.

    Args:
        values: the Train form's current settings (`augment`, `image_size`, `seed`,
            `augment_cache`), read on every rerun, before Train is pressed.
    """
    dataset, _ = loaders.dataset_or_none(data_root())
    if dataset is None or not dataset.files:
        return
    size, seed = int(values["image_size"]), int(values["seed"])
    photo = dataset.root / dataset.files[seed % len(dataset.files)]
    title = "Augmentation preview" if values["augment"] else "Augmentation preview (augmentation is off)"
    with st.expander(title, icon=":material/auto_awesome_motion:"):
        if not values["augment"]:
            st.caption(
                f"Augmentation is off: training sees each photo as it is. Turn on "
                f"*{SETTINGS['augment'].label}* to train on versions like these."
            )
        original, versions = _versions(str(photo), size, seed)
        images = [original, *versions]
        captions = ["the photo", *(f"version {i}" for i in range(1, PREVIEW_VERSIONS + 1))]
        for row in range(0, len(images), COLUMNS):
            for cell, image, caption in zip(
                st.columns(COLUMNS), images[row : row + COLUMNS], captions[row : row + COLUMNS], strict=False
            ):
                cell.image(image, caption=caption, width="stretch")
        st.caption(
            f"`{dataset.files[seed % len(dataset.files)]}` at {size} px, seed {seed}: "
            "random flip, rotation, zoom and shear, through the layers training uses."
        )
        if values["augment"] and values["augment_cache"] == "maps":
            st.info(maps_note(size, values["backbone"]), icon=":material/grid_on:")
