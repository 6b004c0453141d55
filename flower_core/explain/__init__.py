"""The Grad-CAM family on the transfer model, with a faithfulness score.

One `BaseCAM` (base.py) does the forward pass, the weighted sum and the scaling; each method is
a short subclass with its own `get_cam_weights` (gradcam.py, gradcam_plus_plus.py,
score_cam.py). `faithfulness.py` scores a map by how much removing what it highlights costs the
model, against removing a random area of the same size; `overlay.py` draws the result.
"""

from flower_core.explain.base import BaseCAM, resolve_layer, spatial_layers
from flower_core.explain.explainer import (
    DISPLAY_SIZE,
    METHODS,
    Explanation,
    explain_image,
    explain_path,
    get_method,
)
from flower_core.explain.faithfulness import faithfulness
from flower_core.explain.gradcam import GradCAM
from flower_core.explain.gradcam_plus_plus import GradCAMPlusPlus
from flower_core.explain.overlay import (
    COLORMAPS,
    DEFAULT_ALPHA,
    colorize,
    overlay_heatmap,
    preprocessed_view,
)
from flower_core.explain.score_cam import ScoreCAM

__all__ = [
    "BaseCAM",
    "COLORMAPS",
    "DEFAULT_ALPHA",
    "DISPLAY_SIZE",
    "Explanation",
    "GradCAM",
    "GradCAMPlusPlus",
    "METHODS",
    "ScoreCAM",
    "colorize",
    "explain_image",
    "explain_path",
    "faithfulness",
    "get_method",
    "overlay_heatmap",
    "preprocessed_view",
    "resolve_layer",
    "spatial_layers",
]
