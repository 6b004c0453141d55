"""How faithful is a heatmap? Remove what it points at and see whether the model notices.

Definition (in the spirit of pytorch-grad-cam's confidence-drop and ROAD metrics):

1. `p` = the model's probability of the explained class on the photo as the model sees it.
2. `p_cam` = the same probability after the `fraction` (default 20 %) of pixels the heatmap
   ranks highest are *removed*, i.e. filled with the photo's mean colour.
3. `p_random` = the same probability after an equal number of pixels is removed at random, as
   blobs of the same smoothness as a heatmap (uniform noise on the heatmap's own grid, upsampled
   the same way), averaged over `draws` seeded draws. Blobs, not scattered pixels, so that both
   removals leave edges of the same kind and only *where* they are differs.
4. `score = p_random - p_cam` = `cam_drop - random_drop`, where `*_drop = p - p_*`.

The score is in [-1, 1]: higher is more faithful. Above 0, the highlighted area matters more to
the model than a random area of the same size; about 0, the map is no better than chance;
below 0, it points away from the evidence. All removals run in one batch (1 + 1 + `draws`
images), and the same photo and map always give the same score.
"""

from __future__ import annotations

import cv2
import keras
import numpy as np

from flower_core.models.inference import predict_probabilities

REMOVE_FRACTION = 0.2
RANDOM_DRAWS = 4
SEED = 0


def top_mask(ranking: np.ndarray, fraction: float) -> np.ndarray:
    """Boolean mask of exactly `round(fraction * pixels)` highest pixels of `ranking`."""
    count = max(1, int(round(fraction * ranking.size)))
    order = np.argsort(-ranking.ravel(), kind="stable")[:count]
    mask = np.zeros(ranking.size, dtype=bool)
    mask[order] = True
    return mask.reshape(ranking.shape)


def random_masks(
    shape: tuple[int, int], grid: tuple[int, int], fraction: float, draws: int, seed: int = SEED
) -> list[np.ndarray]:
    """`draws` blob-shaped masks of the same area as `top_mask`, from upsampled grid noise."""
    rng = np.random.default_rng(seed)
    masks = []
    for _ in range(draws):
        noise = rng.random(grid).astype(np.float32)
        smooth = cv2.resize(noise, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
        smooth += rng.random(shape).astype(np.float32) * 1e-4
        masks.append(top_mask(smooth, fraction))
    return masks


def faithfulness(
    model: keras.Model,
    pixels: np.ndarray,
    heatmap: np.ndarray,
    target: int,
    grid: tuple[int, int] | None = None,
    fraction: float = REMOVE_FRACTION,
    draws: int = RANDOM_DRAWS,
) -> dict:
    """Score a heatmap by the confidence drop when its top pixels are removed, against random.

    Args:
        model: the classifier (0-255 pixels in, probabilities out).
        pixels: the photo as the model sees it, (size, size, 3).
        heatmap: the map at the model's input size, (size, size), in [0, 1].
        target: the explained class index.
        grid: the heatmap's native resolution, for the random blobs. Defaults to `None`
            (7 x 7, a typical last convolution).
        fraction: the share of pixels removed, in (0, 1). Defaults to `REMOVE_FRACTION`.
        draws: the number of random removals averaged. Defaults to `RANDOM_DRAWS`.

    Returns:
        `score`, `cam_drop`, `random_drop`, `random_band` (the lowest and highest score a
        random draw gets against their mean), `confidence` (`p`), `fraction` and `draws`.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1). Received: fraction={fraction}")
    pixels = np.asarray(pixels, np.float32)
    if heatmap.shape != pixels.shape[:2]:
        raise ValueError(
            f"heatmap must match the pixels' size {pixels.shape[:2]}. Received: shape={heatmap.shape}"
        )
    masks = [top_mask(heatmap, fraction)]
    masks += random_masks(heatmap.shape, grid or (7, 7), fraction, draws)
    fill = pixels.mean(axis=(0, 1))
    batch = np.stack([pixels] + [np.where(m[..., None], fill, pixels) for m in masks])
    scores = predict_probabilities(model, batch)[:, target]
    confidence, cam_score, random_score = scores[0], scores[1], scores[2:].mean()
    return {
        "score": float(random_score - cam_score),
        "cam_drop": float(confidence - cam_score),
        "random_drop": float(confidence - random_score),
        # The scores the random draws themselves would get: a map scoring inside them does no
        # better than one of them (`verdict`).
        "random_band": [float(random_score - scores[2:].max()), float(random_score - scores[2:].min())],
        "confidence": float(confidence),
        "fraction": fraction,
        "draws": draws,
    }


# How a faithfulness score reads, in one place (the Classify page and its tests quote these).
CHANCE_BAND = 0.05
VERDICTS = {
    "faithful": "Faithful: removing the highlighted area lowers the model's confidence more than "
    "removing random areas, so the map shows what the model relies on.",
    "chance": "About chance: removing the highlighted area changes the model's confidence about "
    "as much as removing random areas; the map tells little.",
    "unfaithful": "Unfaithful: removing the highlighted area lowers the model's confidence less "
    "than removing random areas, so the model relies on other parts of the photo "
    "than the map shows.",
}


def verdict(score: float, band: tuple[float, float] | list[float] = (0.0, 0.0)) -> str:
    """The one-line, plain-words reading of a faithfulness `score` (`VERDICTS`): about chance
    within the random draws' own scores (`band`, `faithfulness`'s `random_band`) widened to at
    least `CHANCE_BAND` either side, faithful above it, unfaithful below it."""
    if score > max(band[1], CHANCE_BAND):
        return VERDICTS["faithful"]
    return VERDICTS["chance"] if score >= min(band[0], -CHANCE_BAND) else VERDICTS["unfaithful"]
