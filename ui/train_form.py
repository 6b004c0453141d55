"""The Train page's form: a study preset, then every setting with a short help text."""

from __future__ import annotations

import streamlit as st

from flower_core.config import (
    BEST_RESULT,
    PRESET_DESCRIPTIONS,
    PRESETS,
    SETTINGS,
    STUDY_RESULTS,
    SUGGESTED_PRESET,
    make_config,
)
from flower_core.data.dataset import Dataset
from flower_core.errors import FlowerError
from flower_core.models.backbone_specs import BACKBONES
from flower_core.models.backbones import opening_backbone, ready_offline, trains_here
from flower_core.training.estimate import estimate_run, estimate_text, format_duration
from flower_core.training.jobs import launch_problem
from ui import augment_preview
from ui.common import launch_button, runs_root
from ui.home import online

AUGMENT_CACHE = {
    "views": "augmented views (K backbone passes)",
    "maps": "augmented feature maps (1 pass)",
}
WEIGHTS = {
    "imagenet": "ImageNet (transfer)",
    "none": "none (train from scratch)",
    "file": "a weights file…",
}
START_ACTION = "Cannot start training"
PRESET_HELP = (
    "The study's tuning steps, in order; each changes the one before. Every setting "
    "below starts from the preset and can be changed."
)


def _label(name: str) -> str:
    spec = SETTINGS[name]
    return f"{spec.label} ({spec.unit})" if spec.unit else spec.label


def _widget(container, name: str, base, k: str, format_func=None):
    """The widget for setting `name`, its label, help, choices and limits read from `SETTINGS`."""
    spec, value, key = SETTINGS[name], getattr(base, name), k + name
    if spec.choices:
        return container.selectbox(
            _label(name),
            spec.choices,
            spec.choices.index(value),
            key=key,
            help=spec.help,
            format_func=format_func or str,
        )
    if isinstance(value, bool):
        return container.toggle(_label(name), value, key=key, help=spec.help)
    if spec.options:
        return container.select_slider(
            _label(name), spec.options, value, key=key, help=spec.help, format_func=lambda v: f"{v:g}"
        )
    high = spec.maximum
    return int(
        container.number_input(
            _label(name), int(spec.minimum), high and int(high), value, key=key, help=spec.help
        )
    )


def weights_note() -> None:
    """Which backbones have ImageNet weights here, so a run does not fail on a missing file."""
    ready = [name for name in BACKBONES if trains_here(name, online())]
    missing = [name for name in BACKBONES if name not in ready]
    if missing and ready:
        st.caption(
            f":material/cloud_off: ImageNet weights are here for {', '.join(ready)} "
            "only; other backbones need weights *none* or a file (see the Home page)."
        )
    elif missing:
        st.caption(
            ":material/cloud_off: No ImageNet weights on this machine and no internet: "
            "train with weights *none*, or add the files (see the Home page)."
        )


def preset_picker() -> str:
    """The study preset the form starts from, with what it changes and the study's result."""
    names = list(PRESETS)
    preset = st.selectbox(
        "Preset", names, index=names.index(SUGGESTED_PRESET), key="train_preset", help=PRESET_HELP
    )
    if preset in STUDY_RESULTS:
        loss, accuracy = STUDY_RESULTS[preset]
        result = f"Study: test accuracy **{accuracy:.2%}**, loss {loss:.4f} (VGG16)."
    else:
        mean, sd = BEST_RESULT
        result = (
            f"Suggested: {mean:.1%} ± {sd * 100:.1f} test accuracy over 3 seeds with "
            f"{PRESETS[SUGGESTED_PRESET]['backbone']} on the "
            "real photos (docs/RESULTS.md)."
        )
    st.caption(f"{PRESET_DESCRIPTIONS[preset]}. {result}")
    return preset


# Keyed by the photo count of the dataset the page loaded (`ui.loaders`, cached by the folder's
# stamp), so no rerun lists the dataset's folders again; the cache and past runs, which say how
# fast this machine is and what is cached, are read again after `ttl` seconds.
# The first estimate of a backbone and size starts timing it here (`estimate.calibrate`, kept on disk).
@st.cache_data(ttl=30, show_spinner=False)
def _estimate(preset: str, backbone: str, data_root: str, photos: int, runs: str) -> dict:
    config = make_config(preset, backbone=backbone)
    return estimate_run(config, data_root, runs_root=runs, photos=photos, calibration="background")


def estimate_note(preset: str, dataset: Dataset) -> None:
    """Before the click: how long the preset's run should take on this machine, and whether its
    backbone features are already cached (`flower_core.training.estimate`).

    Args:
        preset: the preset the form starts from.
        dataset: the dataset in use, as the page loaded it (`ui.loaders.dataset_or_none`).
    """
    base = make_config(preset)
    try:
        estimate = _estimate(
            preset,
            opening_backbone(base.backbone, online()),
            str(dataset.root),
            len(dataset.files),
            str(runs_root()),
        )
    except FlowerError:
        return
    if estimate["calibrating"]:  # the next rerun estimates again, from the timing once it is done
        _estimate.clear()
    cache = (
        "features cached: training starts at once"
        if estimate["cached"]
        else f"features computed first, about {format_duration(estimate['extraction_s'])}"
    )
    st.caption(
        f":material/timer: With the preset's settings, {estimate_text(estimate)}; {cache}. "
        "The shorter end is when early stopping ends it early."
    )


def _backbone_label(name: str) -> str:
    return f"{name} (no download)" if name in ready_offline() else name


def _model_settings(base, k: str) -> dict:
    # The backbone has a row of its own: in half the column, "efficientnet_lite0 (no download)" was cut.
    backbone = st.selectbox(
        _label("backbone"),
        list(BACKBONES),
        list(BACKBONES).index(opening_backbone(base.backbone, online())),
        key=k + "backbone",
        format_func=_backbone_label,
        help=SETTINGS["backbone"].help,
    )
    left, right = st.columns(2)
    weights = left.selectbox(
        _label("weights"),
        list(WEIGHTS),
        format_func=WEIGHTS.get,
        key=k + "weights",
        help=SETTINGS["weights"].help + " A file's path goes under Advanced.",
    )
    return {
        "backbone": backbone,
        "weights": weights,
        "image_size": _widget(right, "image_size", base, k),
        "epochs": _widget(left, "epochs", base, k),
    }


def _optimiser_settings(base, k: str) -> dict:
    left, right = st.columns(2)
    names = ["batch_size", "learning_rate", "dropout", "fine_tune_blocks", "seed"]
    return {name: _widget((left, right)[i % 2], name, base, k) for i, name in enumerate(names)}


def _switches(base, k: str) -> dict:
    column = st.container()  # one per row: side by side, "Batch-norm in the head" was cut
    values = {name: _widget(column, name, base, k) for name in ["batchnorm", "augment", "reduce_lr"]}
    centre = column.toggle(
        "Mean-centering",
        base.preprocessing == "imagenet",
        key=k + "center",
        help=SETTINGS["preprocessing"].help,
    )
    return {**values, "preprocessing": "imagenet" if centre else "rescale"}


def _weights_file(k: str) -> str:
    return st.text_input(
        "Weights file",
        key=k + "weights_path",
        placeholder="path to a .h5 or .weights.h5 file",
        help="Used when Weights is 'a weights file…'.",
    ).strip()


def _advanced(base, k: str) -> dict:
    with st.expander("Advanced", icon=":material/tune:"):
        left, right = st.columns(2)
        values = {
            "pooling": _widget(left, "pooling", base, k),
            "patience": _widget(right, "patience", base, k),
            "fine_tune_epochs": _widget(left, "fine_tune_epochs", base, k),
            "class_weights": _widget(right, "class_weights", base, k),
        }
        # A row of its own: in half the column, "augmented feature maps (1 pass)" was cut.
        values["augment_cache"] = _widget(st, "augment_cache", base, k, format_func=AUGMENT_CACHE.get)
        values["augment_views"] = _widget(st.columns(2)[0], "augment_views", base, k)
        values["weights_file"] = _weights_file(k)
    return values


def settings_form(preset: str, data_root, dataset: Dataset | None) -> dict | None:
    """Every setting, starting from `preset`; returns the overrides when Train is pressed.

    The settings are plain widgets, not an `st.form`: each change reruns the page, so the
    augmentation preview draws with the settings as they are now, and Train is disabled, with
    the reason under it, while the run could not start (`jobs.launch_problem`: what the click
    would refuse with). A double-click on Train still queues one run (`ui.live.start`'s
    submission token).
    """
    base = make_config(preset)
    k = f"train_{preset}_"
    with st.container(border=True, key="train_form"):
        values = {
            **_model_settings(base, k),
            **_optimiser_settings(base, k),
            **_switches(base, k),
            **_advanced(base, k),
        }
        path = values.pop("weights_file")
        values["weights"] = path if values["weights"] == "file" else values["weights"]
        problem = launch_problem(lambda: [make_config(preset, **values)], data_root, online(), dataset)
        pressed = launch_button(
            "Train",
            START_ACTION,
            problem,
            key="train_submit",
            type="primary",
            icon=":material/play_arrow:",
            disabled=dataset is None,
            width="stretch",
        )
    augment_preview.panel(values)
    return values if pressed else None
