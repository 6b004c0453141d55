"""Every backbone all the way through, and what makes one spec enough.

Each backbone in `models/backbone_specs.py` trains a tiny model (ImageNet weights where this
machine has them, else random ones), exports every default format, predicts and explains. The
app's default (the `best` preset's backbone) runs in the quick tier; the others are slow.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from flower_core.config import DEFAULT_PRESET, PRESETS, SUGGESTED_PRESET, make_config
from flower_core.evaluation.predict import predict_paths
from flower_core.explain import explain_path
from flower_core.export.card import CARD_JSON
from flower_core.export.exporter import export_run
from flower_core.export.formats import FORMATS
from flower_core.models.backbone_specs import BACKBONES, PREPROCESSING_MODES, BackboneSpec
from flower_core.models.backbones import ready_offline
from flower_core.training.jobs import train_new_run

APP_DEFAULT = make_config(SUGGESTED_PRESET).backbone
FLOAT32_FORMATS = ("saved_model", "onnx")


def _case(backbone: str, preprocessing: str = "imagenet"):
    marks = () if (backbone, preprocessing) == (APP_DEFAULT, "imagenet") else (pytest.mark.slow,)
    return pytest.param(backbone, preprocessing, marks=marks, id=f"{backbone}-{preprocessing}")


@pytest.mark.parametrize(
    "backbone, preprocessing", [*(_case(name) for name in BACKBONES), _case("mobilenet", "rescale")]
)
def test_every_backbone_trains_exports_predicts_and_explains(
    backbone, preprocessing, synthetic_dataset, tmp_path
):
    spec = BACKBONES[backbone]
    weights = "imagenet" if backbone in ready_offline() else "none"
    config = make_config(
        SUGGESTED_PRESET,
        backbone=backbone,
        weights=weights,
        preprocessing=preprocessing,
        image_size=32,
        epochs=1,
        dense_units=[8],
    )
    run_dir = train_new_run(config, synthetic_dataset, tmp_path / "runs")
    assert json.loads((run_dir / "status.json").read_text())["state"] == "done"

    report = export_run(run_dir, tmp_path / "export")
    written = set(report["formats"])
    assert set(FLOAT32_FORMATS) <= written, report["skipped"]
    assert written | set(report["skipped"]) == set(FORMATS)
    for name in written:
        assert (tmp_path / "export" / FORMATS[name].path).exists()
    card = json.loads((tmp_path / "export" / CARD_JSON).read_text())
    mode = "rescale" if preprocessing == "rescale" else spec.preprocessing
    assert card["preprocessing"]["what"] == PREPROCESSING_MODES[mode]
    if weights == "imagenet":  # always for the app's default, EfficientNet-Lite (Apache-2.0)
        assert (card["origin"], card["licence"]) == (spec.weights_origin, spec.licence)

    photo = synthetic_dataset / "daisy" / sorted(p.name for p in (synthetic_dataset / "daisy").iterdir())[0]
    (prediction,) = predict_paths(run_dir, [photo], top_k=2)
    assert len(prediction["top_k"]) == 2
    explained = explain_path(run_dir, photo, out=tmp_path / "heatmap.png")
    assert explained["layer"] == spec.target_layer
    assert Path(explained["heatmap_path"]).stat().st_size > 0


def test_a_spec_lacking_a_fact_fails_when_it_is_written():
    facts = {f.name: getattr(BACKBONES["mobilenet"], f.name) for f in dataclasses.fields(BackboneSpec)}
    required = [f.name for f in dataclasses.fields(BackboneSpec) if f.default is dataclasses.MISSING]
    for name in required:
        with pytest.raises(TypeError, match=name):
            BackboneSpec(**{k: v for k, v in facts.items() if k != name})
    for name in ("builder", "weights_file", "weights_source", "weights_origin", "licence", "target_layer"):
        with pytest.raises(ValueError, match=f"lacks its {name}"):
            BackboneSpec(**{**facts, name: ""})
    with pytest.raises(ValueError, match="preprocessing must be one of"):
        BackboneSpec(**{**facts, "preprocessing": "sepia"})
    with pytest.raises(ValueError, match="builder must be 'module:callable'"):
        BackboneSpec(**{**facts, "builder": "keras.applications.MobileNet"})


def test_every_spec_names_every_fact_and_a_builder_that_exists():
    import importlib

    for spec in BACKBONES.values():
        module, attribute = spec.builder.split(":")
        assert callable(getattr(importlib.import_module(module), attribute)), spec.name
        assert spec.preprocessing in PREPROCESSING_MODES and spec.fallback_photos_per_s > 0
        assert spec.licence and spec.weights_origin and spec.weights_source


def test_every_preset_trains_on_a_backbone_that_has_a_spec():
    for preset in PRESETS:
        assert make_config(preset).backbone in BACKBONES
    assert make_config(DEFAULT_PRESET).backbone in BACKBONES


def test_forms_open_on_a_backbone_that_trains_here(tmp_path, monkeypatch):
    from flower_core.models.backbones import opening_backbone, trains_here

    assert not trains_here("vgg16") and trains_here("vgg16", online=True)
    assert opening_backbone("vgg16") == "mobilenet"  # the first with packaged weights
    assert opening_backbone("vgg16", online=True) == "vgg16"
    assert opening_backbone("efficientnet_lite2") == "efficientnet_lite2"
    (tmp_path / BACKBONES["vgg16"].weights_file).write_bytes(b"")
    monkeypatch.setenv("FLOWER_WEIGHTS_DIR", str(tmp_path))
    assert opening_backbone("vgg16") == "vgg16"
