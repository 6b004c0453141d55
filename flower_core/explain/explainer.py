"""Explain one photo end to end: load it as training did, compute a CAM, score and draw it."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from flower_core.data.images import ImageSource, load_image, model_input
from flower_core.errors import FlowerError
from flower_core.explain.base import METHODS, BaseCAM, normalise
from flower_core.explain.faithfulness import faithfulness as faithfulness_score
from flower_core.explain.overlay import DEFAULT_ALPHA, overlay_heatmap, resize_heatmap, save_png

# Photos are shown (and heatmaps upsampled) at most this many pixels on the long side.
DISPLAY_SIZE = 1024


@dataclass
class Explanation:
    """A heatmap of one photo, with what is needed to show and trust it.

    `heatmap` is float32 in [0, 1] at the size of `photo` (the upright photo, downscaled to at
    most `DISPLAY_SIZE`); `model_heatmap` is the same map at the model's input size, over
    `model_view`, the exact pixels the model got.
    """

    method: str
    layer: str
    heatmap: np.ndarray
    model_heatmap: np.ndarray
    photo: np.ndarray
    model_view: np.ndarray
    probabilities: np.ndarray
    predicted_index: int
    target_index: int
    class_names: list[str] = field(default_factory=list)
    faithfulness: dict | None = None
    seconds: float = 0.0

    def _name(self, index: int) -> str:
        return self.class_names[index] if self.class_names else str(index)

    @property
    def predicted_class(self) -> str:
        return self._name(self.predicted_index)

    @property
    def target_class(self) -> str:
        return self._name(self.target_index)

    def overlay(self, alpha: float = DEFAULT_ALPHA, colormap: str = "jet") -> np.ndarray:
        """The heatmap blended over the photo (uint8 RGB)."""
        return overlay_heatmap(self.photo, self.heatmap, alpha, colormap)

    def summary(self) -> dict:
        """The JSON-friendly facts: classes, probabilities, layer, faithfulness, time."""
        return {
            "method": self.method,
            "layer": self.layer,
            "predicted_class": self.predicted_class,
            "probability": float(self.probabilities[self.predicted_index]),
            "target_class": self.target_class,
            "target_probability": float(self.probabilities[self.target_index]),
            "faithfulness": None if self.faithfulness is None else self.faithfulness["score"],
            "faithfulness_detail": self.faithfulness,
            "seconds": round(self.seconds, 4),
        }


def get_method(method: str) -> type[BaseCAM]:
    """The CAM class for a method name, with the choices in the error."""
    if method not in METHODS:
        raise FlowerError(f"unknown method. Choose one of: {', '.join(METHODS)}. Received: method={method!r}")
    return METHODS[method]


def resolve_target(target_class, class_names: list[str], num_classes: int) -> int | None:
    """A class index from a name or an index; `None` (the predicted class) stays `None`."""
    if target_class is None:
        return None
    if isinstance(target_class, str):
        if target_class not in class_names:
            choices = ", ".join(class_names) or "(no class names given)"
            raise FlowerError(
                f"unknown class. Choose one of: {choices}. Received: target_class={target_class!r}"
            )
        return class_names.index(target_class)
    if not 0 <= int(target_class) < num_classes:
        raise FlowerError(f"class index must be in [0, {num_classes}). Received: target_class={target_class}")
    return int(target_class)


def explain_image(
    model: keras.Model,
    image: ImageSource,
    method: str = "gradcam",
    *,
    layer: str | None = None,
    target_class: str | int | None = None,
    class_names: list[str] | None = None,
    with_faithfulness: bool = True,
    progress: Callable[[int, int], None] | None = None,
    **options,
) -> Explanation:
    """Explain the model's decision on one photo with a method of the Grad-CAM family.

    Args:
        model: the classifier as trained (raw 0-255 pixels in, softmax out).
        image: a path, the file's bytes or an open binary file.
        method: a key of `METHODS`. Defaults to `"gradcam"`.
        layer: the target layer. Defaults to `None` (the backbone's last convolution).
        target_class: a class name or index to explain. Defaults to `None` (the predicted one).
        class_names: the model's class names, needed for names. Defaults to `None`.
        with_faithfulness: also compute the faithfulness score. Defaults to `True`.
        progress: called as `progress(done, total)` while the map is computed (each batch of
            Score-CAM's masked photos; once for the gradient methods). Defaults to `None`.
        **options: passed to the method's class (e.g. `max_channels` for Score-CAM).

    Returns:
        An `Explanation`.

    Raises:
        FlowerError: unknown method, layer or class, or an unreadable photo (`ImageError`).
    """
    cam = get_method(method)(model, layer, **options)
    class_names = list(class_names or [])
    target = resolve_target(target_class, class_names, model.output_shape[-1])
    if hasattr(image, "read"):
        image = image.read()
    size = int(model.input_shape[1])
    started = time.perf_counter()
    pixels = model_input(image, size)
    grid_map, probabilities = cam(pixels, target, progress)
    target = int(np.argmax(probabilities)) if target is None else target
    model_heatmap = normalise(resize_heatmap(grid_map, size, size))
    score = None
    if with_faithfulness:
        score = faithfulness_score(model, pixels, model_heatmap, target, grid=grid_map.shape)
    seconds = time.perf_counter() - started
    photo, heatmap = _for_display(image, grid_map)
    predicted = int(np.argmax(probabilities))
    return Explanation(method, cam.layer, heatmap, model_heatmap, photo, pixels, probabilities,
                       predicted, target, class_names, score, seconds)  # fmt: skip


def _for_display(image: ImageSource, grid_map: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The upright photo at most `DISPLAY_SIZE` px, and the map upsampled onto it."""
    photo = load_image(image, draft_size=DISPLAY_SIZE)
    photo.thumbnail((DISPLAY_SIZE, DISPLAY_SIZE))
    return np.asarray(photo), normalise(resize_heatmap(grid_map, photo.width, photo.height))


def explain_path(
    run: str | os.PathLike,
    image: str | os.PathLike,
    method: str = "gradcam",
    out: str | os.PathLike | None = None,
    layer: str | None = None,
    target_class: str | None = None,
    alpha: float = DEFAULT_ALPHA,
) -> dict:
    """Explain a photo with a run's model and write the overlay (and the model's view) as PNGs.

    Args:
        run: the run folder.
        image: the photo's path.
        method: a key of `METHODS`. Defaults to `"gradcam"`.
        out: the overlay PNG's path. Defaults to `None`:
            `<run>/explanations/<photo name>_<method>.png`.
        layer: the target layer. Defaults to `None` (the backbone's last convolution).
        target_class: a class name. Defaults to `None` (the predicted class).
        alpha: the heatmap's opacity. Defaults to `DEFAULT_ALPHA`.

    Returns:
        `heatmap_path`, `model_view_path`, `image` and the fields of `Explanation.summary`.
    """
    from flower_core.evaluation.predict import load_run

    get_method(method)
    model, class_names = load_run(run)
    explanation = explain_image(
        model, Path(image), method, layer=layer, target_class=target_class, class_names=class_names
    )
    tag = method.replace("+", "p")
    out = Path(out) if out else Path(run) / "explanations" / f"{Path(image).stem}_{tag}.png"
    heatmap_path = save_png(explanation.overlay(alpha), out)
    view_path = save_png(explanation.model_view, out.with_name(f"{out.stem}_model_input.png"))
    return {
        "heatmap_path": heatmap_path,
        "model_view_path": view_path,
        "image": str(image),
        **explanation.summary(),
    }
