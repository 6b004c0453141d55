"""Draw a labelled demo dataset of the five flower classes, with an object mask per photo.

It lets the app, the CLI and the tests run offline and fast: the classes differ in petal
shape, count, colour and centre, on varied backgrounds, positions, scales and rotations, so
a small CNN learns them, but colours overlap between classes so one colour statistic does not.
Masks live in `<out>/.masks/<class>/<name>.png`, a hidden folder the dataset scanner ignores.
"""

from __future__ import annotations

import colorsys
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from flower_core.errors import FlowerError

CLASSES = ("daisy", "dandelion", "rose", "sunflower", "tulip")
MARKER = "SYNTHETIC.txt"
MASKS_DIR = ".masks"
_SUPERSAMPLE = 2  # drawn at twice the size, then downsampled: smooth edges
# A petal outline from base to tip along one side and back along the other, in unit length.
_OUTLINE_U = np.concatenate([np.linspace(0, 1, 14), np.linspace(1, 0, 14)])
_OUTLINE_SIN = np.sin(np.pi * _OUTLINE_U)
_OUTLINE_SIDE = np.repeat([1.0, -1.0], 14)


def _hsv(rng, hue, sat, val) -> tuple[int, int, int]:
    """An RGB colour drawn uniformly from (low, high) ranges of hue, saturation and value."""
    rgb = colorsys.hsv_to_rgb(rng.uniform(*hue) % 1.0, rng.uniform(*sat), rng.uniform(*val))
    return tuple(round(255 * c) for c in rgb)


def _shade(colour, factor: float) -> tuple[int, int, int]:
    return tuple(min(255, int(c * factor)) for c in colour)


def _disc(radius: float, centre=(0.0, 0.0), points: int = 32) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, points, endpoint=False)
    return np.stack([centre[0] + radius * np.cos(t), centre[1] + radius * np.sin(t)], axis=1)


def _petal(angle: float, inner: float, length: float, width: float, tip: float = 1.0):
    """A petal from radius `inner` outwards along `angle`; `tip` > 1 is pointed, < 1 rounded."""
    along = _OUTLINE_U * length + inner
    across = width / 2 * _OUTLINE_SIN**tip * _OUTLINE_SIDE
    cos, sin = np.cos(angle), np.sin(angle)
    return np.stack([along * cos - across * sin, along * sin + across * cos], axis=1)


def _ring(rng, count, inner, length, width, tip, colour, outline: float | None = None) -> list:
    """Petals evenly spread around the centre, jittered in angle, length and shade.

    `outline`, when set, draws each petal's edge in its colour darkened by that factor.
    """
    start = rng.uniform(0, 2 * np.pi)
    shapes = []
    for k in range(count):
        angle = start + 2 * np.pi * k / count + rng.normal(0, 0.04)
        petal_length = length * rng.uniform(0.85, 1.1)
        petal_colour = _shade(colour, rng.uniform(0.9, 1.05))
        edge = _shade(petal_colour, outline) if outline else None
        shapes.append((_petal(angle, inner, petal_length, width, tip), petal_colour, edge))
    return shapes


def _seeds(rng, radius: float, count: int, colour) -> list:
    """Small dots scattered over a centre disc: the texture of a flower head."""
    r = radius * np.sqrt(rng.uniform(0, 1, count))
    t = rng.uniform(0, 2 * np.pi, count)
    dot = radius * 0.09
    return [
        (_disc(dot, (a * np.cos(b), a * np.sin(b)), 6), _shade(colour, rng.uniform(0.6, 1.4)), None)
        for a, b in zip(r, t)
    ]


def _daisy(rng) -> list:
    petals = _hsv(rng, (0, 1), (0.0, 0.18), (0.88, 1.0))
    centre_radius = rng.uniform(0.18, 0.28)
    centre = _hsv(rng, (0.11, 0.16), (0.75, 1.0), (0.8, 1.0))
    shapes = _ring(
        rng,
        rng.integers(16, 29),
        centre_radius * 0.6,
        1.0 - centre_radius * 0.6,
        rng.uniform(0.1, 0.16),
        0.6,
        petals,
    )
    return shapes + [(_disc(centre_radius), centre, None)] + _seeds(rng, centre_radius, 12, centre)


def _dandelion(rng) -> list:
    rays = _hsv(rng, (0.11, 0.16), (0.75, 1.0), (0.85, 1.0))
    shapes = []
    for length in (1.0, 0.8, 0.6, 0.4):
        shapes += _ring(rng, rng.integers(40, 60), 0.0, length, 0.035, 1.0, _shade(rays, 1.1 - 0.15 * length))
    centre = _hsv(rng, (0.09, 0.12), (0.8, 1.0), (0.8, 0.95))
    return shapes + [(_disc(0.15), centre, None)] + _seeds(rng, 0.6, 40, rays)


def _rose(rng) -> list:
    hue = rng.choice([(0.97, 1.02), (0.9, 0.96), (0.0, 0.04), (0.82, 0.88)])
    colour = _hsv(rng, hue, (0.5, 0.95), (0.6, 0.95))
    shapes = []
    for layer, radius in enumerate((1.0, 0.78, 0.56, 0.36)):
        shapes += _ring(
            rng,
            rng.integers(5, 8),
            0.0,
            radius,
            radius * 0.9,
            0.5,
            _shade(colour, 1.0 - 0.12 * layer),
            outline=0.55,
        )
    return shapes + [(_disc(0.16), _shade(colour, 0.45), _shade(colour, 0.3))]


def _sunflower(rng) -> list:
    petals = _hsv(rng, (0.1, 0.15), (0.8, 1.0), (0.85, 1.0))
    centre_radius = rng.uniform(0.38, 0.5)
    centre = _hsv(rng, (0.05, 0.09), (0.6, 0.9), (0.18, 0.38))
    shapes = _ring(
        rng,
        rng.integers(14, 25),
        centre_radius * 0.8,
        1.0 - centre_radius * 0.7,
        rng.uniform(0.22, 0.32),
        1.6,
        petals,
    )
    return shapes + [(_disc(centre_radius), centre, None)] + _seeds(rng, centre_radius, 60, centre)


def _tulip(rng) -> list:
    hue = rng.choice([(0.98, 1.02), (0.05, 0.09), (0.76, 0.85), (0.9, 0.95)])
    colour = _hsv(rng, hue, (0.6, 1.0), (0.6, 1.0))
    green = _hsv(rng, (0.25, 0.38), (0.5, 0.85), (0.35, 0.65))
    shapes = [(np.array([[-0.05, 0.2], [0.05, 0.2], [0.05, 2.2], [-0.05, 2.2]]), green, None)]
    for side in (-1, 1):
        shapes.append((_petal(-np.pi / 2 + side * 0.6, 0.0, 0.9, 0.28) + [0, 1.7], green, None))
    count = int(rng.integers(3, 6))
    for angle in sorted(np.linspace(-0.35, 0.35, count), key=lambda a: -abs(a)):
        fill = _shade(colour, 1.0 - abs(angle) * 0.4)
        shapes.append((_petal(-np.pi / 2 + angle, -0.3, 1.2, 0.62, 0.7), fill, _shade(fill, 0.6)))
    return shapes


_DRAWERS = {"daisy": _daisy, "dandelion": _dandelion, "rose": _rose, "sunflower": _sunflower, "tulip": _tulip}


def _background(rng, canvas: int) -> Image.Image:
    """A gradient in a random direction, often with blurred foliage (and some bokeh) blobs."""
    start = np.array(_hsv(rng, (0, 1), (0.05, 0.7), (0.25, 0.95)), dtype=np.float32)
    end = np.array(_hsv(rng, (0.18, 0.42), (0.2, 0.8), (0.15, 0.75)), dtype=np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    axis = np.linspace(-0.5, 0.5, canvas, dtype=np.float32)
    ramp = np.clip(axis[None, :] * np.cos(angle) + axis[:, None] * np.sin(angle) + 0.5, 0, 1)
    image = Image.fromarray((start + ramp[..., None] * (end - start)).astype(np.uint8))
    if rng.random() < 0.75:
        draw = ImageDraw.Draw(image)
        for _ in range(rng.integers(4, 18)):
            cx, cy = rng.uniform(0, canvas, 2)
            rx, ry = rng.uniform(0.03, 0.2, 2) * canvas
            hue = (0.18, 0.42) if rng.random() < 0.8 else (0, 1)
            draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=_hsv(rng, hue, (0.3, 0.9), (0.15, 0.8)))
        image = image.filter(ImageFilter.GaussianBlur(canvas * rng.uniform(0.004, 0.03)))
    return image


def _placement(rng, class_name: str, canvas: int, scale: float) -> Callable:
    """Where the flower goes: a random centre, size, rotation and tilt (upright tulips)."""
    radius = rng.uniform(0.17, 0.34) * canvas * scale
    if class_name == "tulip":
        angle, squash = rng.normal(0, 0.15), 1.0
        centre = rng.uniform([0.25, 0.2], [0.75, 0.5]) * canvas
    else:
        angle, squash = rng.uniform(0, 2 * np.pi), rng.uniform(0.6, 1.0)
        centre = rng.uniform(0.25, 0.75, 2) * canvas
    cos, sin = np.cos(angle), np.sin(angle)
    matrix = radius * np.array([[cos, -sin], [sin, cos]]) @ np.diag([1.0, squash])
    return lambda points: points @ matrix.T + centre


def _jitter(rng, image: Image.Image) -> Image.Image:
    """Camera-like variation: exposure, contrast, colour cast and sensor noise."""
    pixels = np.asarray(image, dtype=np.float32)
    pixels = (pixels - 128) * rng.uniform(0.75, 1.2) + 128 + rng.uniform(-25, 25)
    pixels = pixels * rng.uniform(0.88, 1.12, 3) + rng.normal(0, rng.uniform(2, 9), pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def draw_flower(class_name: str, *, size: int = 128, seed=0) -> tuple[Image.Image, np.ndarray]:
    """Draw one synthetic photo of `class_name` and the boolean mask of its flower pixels.

    Args:
        class_name: one of `CLASSES`.
        size: side of the square image in pixels. Defaults to `128`.
        seed: anything `np.random.default_rng` accepts; the same seed draws the same photo.
            Defaults to `0`.

    Returns:
        `(image, mask)`: an RGB `PIL.Image.Image` and a `(size, size)` bool array covering the
        drawn flowers (bloom, and for tulips the stem and leaves).
    """
    if class_name not in _DRAWERS:
        raise FlowerError(f"unknown class, expected one of {CLASSES}. Received: {class_name!r}")
    rng = np.random.default_rng(seed)
    canvas = size * _SUPERSAMPLE
    image, mask = _background(rng, canvas), Image.new("L", (canvas, canvas), 0)
    draw, mask_draw = ImageDraw.Draw(image), ImageDraw.Draw(mask)
    line = max(1, canvas // 100)
    for scale in (1.0, 0.65)[: 1 + int(rng.random() < 0.25)]:
        transform = _placement(rng, class_name, canvas, scale)
        for points, fill, outline in _DRAWERS[class_name](rng):
            xy = transform(points).ravel().tolist()
            draw.polygon(xy, fill=fill, outline=outline, width=line if outline else 0)
            mask_draw.polygon(xy, fill=255, outline=255, width=line if outline else 0)
    image = image.resize((size, size), Image.Resampling.BOX)
    mask = mask.resize((size, size), Image.Resampling.BOX)
    return _jitter(rng, image), np.asarray(mask) >= 128


def mask_path(out: str | os.PathLike, relpath: str | os.PathLike) -> Path:
    """Where the mask of photo `relpath` (e.g. `daisy/daisy_0001.jpg`) of dataset `out` lives."""
    return Path(out) / MASKS_DIR / Path(relpath).with_suffix(".png")


def load_mask(out: str | os.PathLike, relpath: str | os.PathLike, size: int | None = None):
    """The flower mask of a synthetic photo as a bool array, resized to `(size, size)` if given.

    Raises:
        FlowerError: the dataset was generated without masks (or `relpath` is not in it).
    """
    path = mask_path(out, relpath)
    if not path.is_file():
        raise FlowerError(
            f"no mask for {relpath}: generate the dataset with masks=True (--masks). Received: out={out}"
        )
    mask = Image.open(path).convert("L")
    if size is not None:
        mask = mask.resize((size, size), Image.Resampling.NEAREST)
    return np.asarray(mask) >= 128


def is_synthetic(root: str | os.PathLike) -> bool:
    """True for a dataset folder written by `generate` (it holds the `SYNTHETIC.txt` marker)."""
    return (Path(root) / MARKER).is_file()


def _validate(per_class, size, seed) -> None:
    integer = (int, np.integer)
    if not isinstance(per_class, integer) or per_class < 1:
        raise FlowerError(f"per_class must be an integer >= 1. Received: per_class={per_class}")
    if not isinstance(size, integer) or not 32 <= size <= 1024:
        raise FlowerError(f"size must be an integer in [32, 1024]. Received: size={size}")
    if not isinstance(seed, integer) or seed < 0:
        raise FlowerError(f"seed must be an integer >= 0. Received: seed={seed}")


def _prepare(out: Path) -> None:
    """Empty a previous synthetic dataset at `out`; refuse to write into any other folder."""
    if out.exists() and not out.is_dir():
        raise FlowerError(f"output path is a file, expected a folder. Received: out={out}")
    if out.is_dir() and any(out.iterdir()):
        if not is_synthetic(out):
            raise FlowerError(
                "output folder is not empty and not a synthetic dataset; choose a "
                f"new or empty folder. Received: out={out}"
            )
        for name in (*CLASSES, MASKS_DIR):
            shutil.rmtree(out / name, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)


def generate(
    out: str | os.PathLike,
    *,
    per_class: int = 60,
    size: int = 128,
    seed: int = 0,
    masks: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Write the synthetic dataset `<out>/<class>/<class>_<i>.jpg` for the five classes.

    Each photo is drawn from its own seed `(seed, class, i)`, so a seed always gives the same
    photos, and a larger `per_class` only adds photos. Re-running into a synthetic folder
    replaces it; any other non-empty folder is refused.

    Args:
        out: dataset folder to write.
        per_class: photos per class. Defaults to `60`.
        size: side of the square photos in pixels, 32 to 1024. Defaults to `128`.
        seed: non-negative integer. Defaults to `0`.
        masks: also write each photo's flower mask to `<out>/.masks/<class>/<name>.png`
            (see `mask_path`, `load_mask`). Defaults to `False`.
        progress: called as `progress(done, total)` after each photo. Defaults to `None`.

    Returns:
        A JSON-able summary, also written to `<out>/SYNTHETIC.txt`.

    Example:
        >>> summary = generate("data/synthetic", per_class=20, masks=True)
        >>> summary["images"]
        100
    """
    _validate(per_class, size, seed)
    out = Path(out)
    _prepare(out)
    total = per_class * len(CLASSES)
    for label, name in enumerate(CLASSES):
        (out / name).mkdir()
        if masks:
            (out / MASKS_DIR / name).mkdir(parents=True)
        for index in range(per_class):
            relpath = f"{name}/{name}_{index:04d}.jpg"
            image, mask = draw_flower(name, size=size, seed=[seed, label, index])
            image.save(out / relpath, quality=92)
            if masks:
                Image.fromarray(mask).save(mask_path(out, relpath))
            if progress:
                progress(label * per_class + index + 1, total)
    summary = {
        "out": str(out),
        "classes": list(CLASSES),
        "images": total,
        "per_class": int(per_class),
        "size": int(size),
        "seed": int(seed),
        "masks": masks,
        "masks_dir": str(out / MASKS_DIR) if masks else None,
        "synthetic": True,
    }
    (out / MARKER).write_text(json.dumps(summary, indent=2) + "\n")
    return summary
