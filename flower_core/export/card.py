"""The model card of an export: what the model is, what it takes, how well it did, how to use it.

`model_card.json` is for programs, `model_card.md` for people; both come from one dict, so they
never disagree. The low-confidence rule and the preprocessing are read from the modules that
apply them, not retyped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flower_core.evaluation.predict import metrics_threshold
from flower_core.export.formats import BYTES_SIGNATURE, FORMATS, INPUT_NAME, OUTPUT_NAME, SERVING_SIGNATURE
from flower_core.export.snippets import LABELS_FILE
from flower_core.models.backbone_specs import PREPROCESSING_MODES
from flower_core.models.backbones import get_backbone

if TYPE_CHECKING:
    from flower_core.config import TrainConfig
    from flower_core.store.run_files import Facts, Metrics, RunConfig

CARD_JSON, CARD_MD = "model_card.json", "model_card.md"

_SETTINGS = (
    "preset",
    "epochs",
    "batch_size",
    "learning_rate",
    "pooling",
    "dense_units",
    "dropout",
    "batchnorm",
    "augment",
    "label_smoothing",
    "fine_tune_blocks",
    "seed",
)


def _weights(settings: TrainConfig) -> dict:
    weights = settings.weights
    if weights == "none":
        return {"weights": "none", "origin": "random initialisation, trained here", "licence": "n/a"}
    if weights != "imagenet":
        return {"weights": str(weights), "origin": "a weights file given at training", "licence": "unknown"}
    spec = get_backbone(settings.backbone)
    return {
        "weights": "imagenet",
        "origin": spec.weights_origin,
        "source": spec.weights_source,
        "licence": spec.licence,
    }


def card(
    config: RunConfig,
    facts: Facts,
    metrics: Metrics,
    run_id: str,
    preprocessing: str,
    formats: dict,
    split_sizes: dict,
) -> dict:
    """The model card as one JSON-ready dict.

    Args:
        config: the run's `config.json`.
        facts: what the run learned when it started (`runs.Run.facts`).
        metrics: the run's `metrics.json` (empty before it was evaluated).
        run_id: the run's folder name.
        preprocessing: the `Preprocess` mode inside the model.
        formats: the verification report of each exported format.
        split_sizes: photos in the run's train / val / test parts.
    """
    settings = config.settings
    size = settings.image_size
    return {
        "run_id": run_id,
        "classes": list(facts.class_names),
        "labels_file": LABELS_FILE,
        "input": {
            "name": INPUT_NAME,
            "dtype": "float32",
            "shape": [None, size, size, 3],
            "layout": "NHWC",
            "channels": "RGB",
            "range": [0, 255],
            "resize": "to the square input with bilinear filtering (no crop)",
        },
        "output": {
            "name": OUTPUT_NAME,
            "dtype": "float32",
            "meaning": f"class probabilities in the order of {LABELS_FILE}",
        },
        "image_size": size,
        "preprocessing": {
            "mode": preprocessing,
            "inside_model": True,
            "what": PREPROCESSING_MODES[preprocessing],
        },
        "backbone": settings.backbone,
        **_weights(settings),
        "training": {key: getattr(settings, key) for key in _SETTINGS},
        "dataset": {"fingerprint": facts.dataset_fingerprint, **split_sizes},
        "test_accuracy": metrics.test_accuracy,
        "test_loss": metrics.test_loss,
        "per_class": {name: report.to_json() for name, report in metrics.per_class.items()} or None,
        "calibration_ece": metrics.calibration.ece if metrics.calibration else None,
        "low_confidence_rule": {"min_top_probability": metrics_threshold(metrics)},
        "signatures": {SERVING_SIGNATURE: INPUT_NAME, BYTES_SIGNATURE: "encoded JPEG/PNG/GIF/BMP bytes"},
        "formats": formats,
    }


def _percent(value) -> str:
    return "n/a" if value is None else f"{value:.2%}"


def _format_rows(formats: dict) -> list[str]:
    rows = [
        "| format | file | size | top-1 agreement | largest prob. difference | test accuracy |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in formats.items():
        rows.append(
            f"| {name} | `{FORMATS[name].path}` | {row['size_bytes'] / 1e6:.2f} MB | "
            f"{_percent(row['agreement'])} | {row['max_abs_diff']:.2e} | "
            f"{_percent(row['test_accuracy'])} |"
        )
    return rows


def markdown(data: dict, snippets: dict[str, str]) -> str:
    """`model_card.md`: the card for people, with each "use it" snippet as written beside it."""
    size = data["image_size"]
    rule = data["low_confidence_rule"]
    lines = [
        f"# Model card: {data['run_id']}",
        "",
        f"Classes, in output order (`{LABELS_FILE}`): {', '.join(data['classes'])}.",
        "",
        "## Input and output",
        "",
        f"- Input `{INPUT_NAME}`: float32, shape (batch, {size}, {size}, 3), NHWC, RGB pixels in "
        f"[0, 255]; resize each photo to {size} x {size} with bilinear filtering (no crop).",
        f"- Preprocessing is inside the model: {data['preprocessing']['what']}. Do not apply it again.",
        f"- Output `{OUTPUT_NAME}`: class probabilities in the order of `{LABELS_FILE}`.",
        f"- SavedModel signature `{BYTES_SIGNATURE}` takes encoded photo bytes instead and "
        "decodes and resizes them in the graph (EXIF orientation is not applied: send upright photos).",
        "",
        "## Model and training",
        "",
        f"- Backbone: {data['backbone']}; weights: {data['weights']} ({data['origin']}; "
        f"licence {data['licence']})" + (f", from {data['source']}." if data.get("source") else "."),
        "- Settings: " + ", ".join(f"{k} {v}" for k, v in data["training"].items()) + ".",
        f"- Dataset fingerprint {data['dataset']['fingerprint']}: {data['dataset']['train']} train, "
        f"{data['dataset']['val']} validation, {data['dataset']['test']} test photos.",
        f"- Test accuracy {_percent(data['test_accuracy'])}; expected calibration error "
        f"{'n/a' if data['calibration_ece'] is None else format(data['calibration_ece'], '.3f')}.",
        f"- The model is unsure when its top probability is below {rule['min_top_probability']:.3f} "
        "(this run's threshold, chosen on its validation photos).",
        "",
    ]
    if data["per_class"]:
        lines += ["| class | precision | recall | f1 | support |", "|---|---|---|---|---|"]
        lines += [
            f"| {name} | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} | {r['support']} |"
            for name, r in data["per_class"].items()
        ]
        lines.append("")
    lines += ["## Files, checked against the Keras model on the test photos", ""]
    lines += _format_rows(data["formats"]) + [""]
    for name, row in data["formats"].items():
        if row.get("float_layers"):
            lines += [
                f"`{FORMATS[name].path}` is not fully integer: the layers "
                f"{', '.join(f'`{layer}`' for layer in row['float_layers'])} stay float32 "
                "(selective quantisation), so it needs float kernels; every other layer is int8.",
                "",
            ]
    lines += ["## Use it", ""]
    for name, text in snippets.items():
        language = "bash" if name.endswith(".sh") else "python"
        lines += [f"`{name}`:", "", f"```{language}", text.rstrip("\n"), "```", ""]
    return "\n".join(lines)
