"""The Train page's form: a study preset, then every setting with a short help text."""

from __future__ import annotations

import streamlit as st

from flower_core.backbones import BACKBONES, DEFAULT_BACKBONE, ready_offline, weights_status
from flower_core.config import (
    BEST_RESULT,
    PRESET_DESCRIPTIONS,
    PRESETS,
    STUDY_RESULTS,
    SUGGESTED_PRESET,
    make_config,
)
from ui.home import online

IMAGE_SIZES = [32, 64, 96, 128, 160, 192, 224, 256, 299, 320, 384, 448, 512]
BATCH_SIZES = [8, 16, 32, 64, 128]
LEARNING_RATES = [1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2]
AUGMENT_CACHE = {
    "views": "augmented views (K backbone passes)",
    "maps": "augmented feature maps (1 pass)",
}
WEIGHTS = {
    "imagenet": "ImageNet (transfer)",
    "none": "none (train from scratch)",
    "file": "a weights file…",
}
HELP = {
    "preset": "The study's tuning steps, in order; each changes the one before. Every setting "
    "below starts from the preset and can be changed.",
    "backbone": "The pretrained network whose features the new head learns from.",
    "weights": "ImageNet: transfer learning with a frozen backbone. None: the whole network "
    "trains from random weights (the no-transfer baseline). A file: your own weights "
    "(its path under Advanced).",
    "image_size": "Photos are resized to this square size. Smaller trains much faster.",
    "epochs": "The most passes over the training photos; early stopping may end sooner.",
    "batch_size": "Photos per gradient step.",
    "learning_rate": "Adam's step size for the head (1e-3 in the study).",
    "dropout": "Share of the head's units dropped at random while training (0 = off).",
    "fine_tune_blocks": "Unfreeze the backbone's last N blocks after the head converges (0 = "
    "keep it frozen).",
    "seed": "Fixes the split, the initial weights and the augmentation.",
    "batchnorm": "Batch normalisation after each dense layer of the head.",
    "augment": "Random shear, zoom, 10° rotation and horizontal flips of the training photos.",
    "augment_cache": "With augmentation and a frozen backbone: cache K augmented views of each "
    "photo (K backbone passes), or cache its feature maps once and rotate, zoom and shear them "
    "anew each epoch (one pass, much faster to start; no flip, which pooling cancels). Maps "
    "smaller than 4 x 4 (below 128 px for most backbones) are too coarse to augment: such runs "
    "cache views instead.",
    "reduce_lr": "Divide the learning rate by 5 when the validation loss stops improving.",
    "center": "Use the backbone's ImageNet preprocessing (mean-centering for VGG16) instead of "
    "pixels / 255.",
}


def _available(name: str) -> bool:
    return bool(weights_status(name)["found"]) or online()


def weights_note() -> None:
    """Which backbones have ImageNet weights here, so a run does not fail on a missing file."""
    ready = [name for name in BACKBONES if _available(name)]
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
    preset = st.selectbox("Preset", names, index=names.index(SUGGESTED_PRESET),
                          key="train_preset", help=HELP["preset"])
    if preset in STUDY_RESULTS:
        loss, accuracy = STUDY_RESULTS[preset]
        result = f"Study: test accuracy **{accuracy:.2%}**, loss {loss:.4f} (VGG16)."
    else:
        mean, sd = BEST_RESULT
        result = (
            f"Suggested: {mean:.1%} ± {sd * 100:.1f} test accuracy over 3 seeds with MobileNet on the "
            "real photos (docs/RESULTS.md)."
        )
    st.caption(f"{PRESET_DESCRIPTIONS[preset]}. {result}")
    return preset


def _default_backbone() -> int:
    names = list(BACKBONES)
    if _available(DEFAULT_BACKBONE):
        return names.index(DEFAULT_BACKBONE)
    ready = [i for i, name in enumerate(names) if _available(name)]
    return ready[0] if ready else names.index(DEFAULT_BACKBONE)


def _backbone_label(name: str) -> str:
    return f"{name} (no download)" if name in ready_offline() else name


def _model_settings(base, k: str) -> dict:
    left, right = st.columns(2)
    backbone = left.selectbox(
        "Backbone",
        list(BACKBONES),
        index=_default_backbone(),
        format_func=_backbone_label,
        key=k + "backbone",
        help=HELP["backbone"],
    )
    weights = right.selectbox(
        "Weights", list(WEIGHTS), format_func=WEIGHTS.get, key=k + "weights", help=HELP["weights"]
    )
    image_size = left.select_slider(
        "Image size (px)",
        IMAGE_SIZES,
        base.image_size,
        key=k + "image_size",
        help=HELP["image_size"],
    )
    epochs = right.number_input(
        "Epochs", 1, 500, base.epochs, key=k + "epochs", help=HELP["epochs"]
    )
    return {
        "backbone": backbone,
        "weights": weights,
        "image_size": image_size,
        "epochs": int(epochs),
    }


def _optimiser_settings(base, k: str) -> dict:
    left, right = st.columns(2)
    batch_size = left.select_slider(
        "Batch size", BATCH_SIZES, base.batch_size, key=k + "batch_size", help=HELP["batch_size"]
    )
    learning_rate = right.select_slider(
        "Learning rate",
        LEARNING_RATES,
        base.learning_rate,
        format_func=lambda v: f"{v:g}",
        key=k + "lr",
        help=HELP["learning_rate"],
    )
    dropout = left.slider(
        "Dropout", 0.0, 0.8, float(base.dropout), 0.05, key=k + "dropout", help=HELP["dropout"]
    )
    fine_tune = right.number_input(
        "Fine-tune blocks",
        0,
        10,
        base.fine_tune_blocks,
        key=k + "fine_tune",
        help=HELP["fine_tune_blocks"],
    )
    seed = left.number_input("Seed", 0, 2**31 - 1, base.seed, key=k + "seed", help=HELP["seed"])
    return {
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "dropout": dropout,
        "fine_tune_blocks": int(fine_tune),
        "seed": int(seed),
    }


def _switches(base, k: str) -> dict:
    left, right = st.columns(2)
    return {
        "batchnorm": left.toggle(
            "Batch-norm in the head", base.batchnorm, key=k + "bn", help=HELP["batchnorm"]
        ),
        "augment": right.toggle(
            "Augmentation", base.augment, key=k + "augment", help=HELP["augment"]
        ),
        "reduce_lr": left.toggle(
            "ReduceLROnPlateau", base.reduce_lr, key=k + "plateau", help=HELP["reduce_lr"]
        ),
        "preprocessing": "imagenet"
        if right.toggle(
            "Mean-centering",
            base.preprocessing == "imagenet",
            key=k + "center",
            help=HELP["center"],
        )
        else "rescale",
    }


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
        pooling = left.selectbox(
            "Pooling",
            ["max", "avg"],
            ["max", "avg"].index(base.pooling),
            key=k + "pooling",
            help="Global pooling after the backbone.",
        )
        patience = right.number_input(
            "Early-stopping patience",
            1,
            50,
            base.patience,
            key=k + "patience",
            help="Epochs without a better val_loss.",
        )
        fine_tune_epochs = left.number_input(
            "Fine-tune epochs",
            1,
            200,
            base.fine_tune_epochs,
            key=k + "ft_epochs",
            help="Epochs of fine-tuning, when fine-tune blocks > 0.",
        )
        class_weights = right.toggle(
            "Class weights",
            base.class_weights,
            key=k + "cw",
            help="Weigh rare classes up in the loss.",
        )
        augment_cache = left.selectbox(
            "Cache augmented photos as",
            list(AUGMENT_CACHE),
            list(AUGMENT_CACHE).index(base.augment_cache),
            format_func=AUGMENT_CACHE.get,
            key=k + "augment_cache",
            help=HELP["augment_cache"],
        )
        views = right.number_input(
            "Augmented views (K)", 1, 20, base.augment_views, key=k + "views",
            help="With 'augmented views': how many views of each photo are computed and cached.",
        )
        weights_file = _weights_file(k)
    return {
        "augment_cache": augment_cache,
        "augment_views": int(views),
        "pooling": pooling,
        "patience": int(patience),
        "fine_tune_epochs": int(fine_tune_epochs),
        "class_weights": class_weights,
        "weights_file": weights_file,
    }


def settings_form(preset: str, disabled: bool = False) -> dict | None:
    """Every setting, starting from `preset`; returns the overrides when Train is pressed."""
    base = make_config(preset)
    k = f"train_{preset}_"
    with st.form("train_form", border=True):
        values = {
            **_model_settings(base, k),
            **_optimiser_settings(base, k),
            **_switches(base, k),
            **_advanced(base, k),
        }
        path = values.pop("weights_file")
        values["weights"] = path if values["weights"] == "file" else values["weights"]
        pressed = st.form_submit_button(
            "Train",
            type="primary",
            icon=":material/play_arrow:",
            key="train_submit",
            disabled=disabled,
            width="stretch",
        )
    return values if pressed else None
