"""The Grad-CAM family on the transfer model, with a faithfulness score.

One `BaseCAM` (base.py) does the forward pass, the weighted sum and the scaling; each method is
a short subclass in a file of its own with its own `get_cam_weights` (gradcam.py,
gradcam_plus_plus.py, score_cam.py), registered in `METHODS` by being a subclass.
`faithfulness.py` scores a map by how much removing what it highlights costs the model, against
removing a random area of the same size; `overlay.py` draws the result.
"""

import importlib
import pkgutil

from flower_core.explain.base import METHODS, BaseCAM, resolve_layer, spatial_layers
from flower_core.explain.explainer import DISPLAY_SIZE, Explanation, explain_image, explain_path, get_method
from flower_core.explain.faithfulness import faithfulness
from flower_core.explain.overlay import COLORMAPS, DEFAULT_ALPHA, colorize, overlay_heatmap, preprocessed_view

# Each method's module registers its class in `METHODS` as it is imported.
for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "BaseCAM",
    "COLORMAPS",
    "DEFAULT_ALPHA",
    "DISPLAY_SIZE",
    "Explanation",
    "METHODS",
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
