"""The Dataset page's sections, each drawing one part of the EDA tables (`loaders.eda_tables`)."""

from __future__ import annotations

import random

import pandas as pd
import streamlit as st

from flower_core import charts
from flower_core.data.dataset import DEFAULT_SPLIT
from flower_core.data.thumbnails import THUMBNAIL_PX, thumbnail_uri
from ui import loaders
from ui.common import plural, short_name

SAMPLES_PER_CLASS = 6


def headline(eda: dict, synthetic: bool) -> None:
    """The numbers that matter first: photos, classes, balance, problems."""
    dataset = eda["dataset"]
    cells = st.columns(5)
    cells[0].metric("Photos", f"{len(dataset.files):,}")
    cells[1].metric("Classes", len(dataset.class_names))
    cells[2].metric(
        "Imbalance",
        f"{eda['imbalance']:.2f}×",
        help="Photos in the largest class divided by photos in the smallest.",
    )
    cells[3].metric("Unreadable", len(dataset.skipped))
    cells[4].metric(
        "Duplicate groups",
        len(eda["exact"]) + len(eda["near"]),
        help="Byte-identical files and near duplicates (perceptual hash).",
    )
    if synthetic:
        st.badge("Synthetic demo set: drawn flowers, not photos", icon=":material/draw:", color="orange")


def classes(eda: dict) -> None:
    """Class distribution as bars and a pie, with the imbalance ratio explained."""
    counts = eda["dataset"].counts()
    left, right = st.columns(2)
    left.plotly_chart(charts.class_counts_bar(counts), key="eda_counts_bar")
    right.plotly_chart(charts.class_counts_pie(counts), key="eda_counts_pie")
    largest, smallest = max(counts, key=counts.get), min(counts, key=counts.get)
    if eda["imbalance"] < 1.05:
        st.write(f"The classes are balanced: {counts[smallest]:,} to {counts[largest]:,} photos each.")
        return
    st.write(
        f"The largest class (**{largest}**, {counts[largest]:,}) has "
        f"**{eda['imbalance']:.2f}×** the photos of the smallest (**{smallest}**, "
        f"{counts[smallest]:,}). Above about 1.5×, accuracy alone can flatter a model; "
        "check the per-class recall on the Compare page."
    )


def samples(eda: dict) -> None:
    """A grid of random photos per class, with a button to draw others."""
    if st.button("Reshuffle", icon=":material/shuffle:", key="dataset_reshuffle"):
        st.session_state["dataset_seed"] = random.randrange(1 << 30)
    rng = random.Random(st.session_state.get("dataset_seed", 0))
    dataset = eda["dataset"]
    by_class: dict[str, list[str]] = {name: [] for name in dataset.class_names}
    for rel in dataset.files:
        by_class[rel.split("/", 1)[0]].append(rel)
    for name, files in by_class.items():
        st.markdown(f"**{name}** · {len(files):,} photos")
        chosen = rng.sample(files, min(SAMPLES_PER_CLASS, len(files)))
        columns = st.columns(SAMPLES_PER_CLASS)
        for column, rel in zip(columns, chosen):
            caption = short_name(rel)
            column.image(loaders.thumbnail(str(dataset.root / rel)), caption=caption, width="stretch")


def sizes(eda: dict) -> None:
    """Image sizes and aspect ratios: a scatter and histograms."""
    table = eda["table"]
    st.plotly_chart(charts.size_scatter(table), key="eda_size_scatter")
    left, right = st.columns(2)
    left.plotly_chart(charts.histogram(table, "aspect", "Aspect ratios", "width / height"), key="eda_aspect")
    pixels = table.assign(megapixels=table["width"] * table["height"] / 1e6)
    right.plotly_chart(charts.histogram(pixels, "megapixels", "Image areas", "megapixels"), key="eda_area")
    st.caption(
        "Every photo is resized to the model's square input: wide or tall photos are "
        "squeezed, so aspect ratios far from 1 change what the model sees."
    )


def colour(eda: dict) -> None:
    """Brightness and mean colour per class."""
    left, right = st.columns(2)
    left.plotly_chart(charts.brightness_box(eda["table"]), key="eda_brightness")
    right.plotly_chart(charts.colour_bars(eda["summary"]), key="eda_colour")
    columns = ["brightness", "mean_r", "mean_g", "mean_b", "median_width", "median_height"]
    st.dataframe(eda["summary"][columns], key="eda_summary")


def _groups_table(groups: list[list[str]], root) -> pd.DataFrame:
    rows = [
        {"group": i, "photo": thumbnail_uri(root / path), "class": path.split("/")[0], "path": path}
        for i, group in enumerate(groups, 1)
        for path in group
    ]
    return pd.DataFrame(rows)


def _duplicates(eda: dict) -> None:
    for title, key, empty in (
        ("Exact duplicates", "exact", "No byte-identical files."),
        ("Near duplicates (perceptual hash)", "near", "No near duplicates."),
    ):
        groups = eda[key]
        st.markdown(f"##### {title} · {plural(len(groups), 'group')}")
        if not groups:
            st.success(empty, icon=":material/check_circle:")
            continue
        mixed = [g for g in groups if len({path.split("/")[0] for path in g}) > 1]
        if mixed:
            st.warning(
                f"Mixed classes in {plural(len(mixed), 'group')}: the same photo under two "
                "labels, so at least one label is wrong.",
                icon=":material/warning:",
            )
        st.dataframe(
            _groups_table(groups, eda["dataset"].root),
            hide_index=True,
            key=f"eda_{key}",
            row_height=THUMBNAIL_PX + 8,
            column_config={
                "group": st.column_config.NumberColumn(width="small"),
                "photo": st.column_config.ImageColumn(width="small"),
            },
        )


def quality(eda: dict) -> None:
    """Unreadable files, exact and near duplicates, and duplicates across the split."""
    skipped = eda["dataset"].skipped
    st.markdown(f"##### Unreadable files · {len(skipped)}")
    if skipped:
        st.dataframe(pd.DataFrame(skipped, columns=["path", "reason"]), hide_index=True)
    else:
        st.success("Every file opens as an image.", icon=":material/check_circle:")
    _duplicates(eda)
    st.markdown("##### Duplicates that straddle the train / validation / test split")
    if not eda["leaks"]:
        st.success("No duplicate crosses the split.", icon=":material/check_circle:")
        return
    st.warning(
        f"Split across parts: {plural(len(eda['leaks']), 'duplicate group')}. The test "
        "accuracy partly measures memory.",
        icon=":material/warning:",
    )
    leaks = [{"files": ", ".join(leak["files"]), "parts": ", ".join(leak["parts"])} for leak in eda["leaks"]]
    st.dataframe(pd.DataFrame(leaks), hide_index=True, key="eda_leaks")


def split(eda: dict) -> None:
    """The default training split's sizes per class."""
    left, right = st.columns([3, 2])
    left.plotly_chart(charts.split_bars(eda["split"]), key="eda_split")
    right.dataframe(eda["split"], key="eda_split_table")
    made = DEFAULT_SPLIT  # the split `loaders.eda_tables` makes, as every run does by default
    right.caption(
        f"Stratified and seeded (validation {made['val_fraction']:.0%}, test {made['test_fraction']:.0%}, "
        f"seed {made['seed']}): every run saves its own split, and the test photos stay unseen until the end."
    )
