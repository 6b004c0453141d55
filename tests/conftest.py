"""Shared fixtures. Every test runs with its own runs, cache and Keras folders, so no test
touches a user's data; the real photos and ImageNet weights (when present beside the project)
are captured here, before the isolation, for the real-data tests."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

_SHARED = Path(__file__).resolve().parents[2] / "shared"
REAL_DATA = Path(os.environ.get("FLOWER_DATA") or _SHARED / "data" / "flowers")
WEIGHTS_DIR = Path(os.environ.get("FLOWER_WEIGHTS_DIR") or _SHARED / "weights")
MOBILENET_NO_TOP = WEIGHTS_DIR / "mobilenet_1_0_224_tf_no_top.h5"

needs_real_data = pytest.mark.skipif(
    not (REAL_DATA / "daisy").is_dir(), reason=f"real photos not found at {REAL_DATA} (set FLOWER_DATA)"
)
needs_mobilenet_weights = pytest.mark.skipif(
    not MOBILENET_NO_TOP.is_file(),
    reason=f"ImageNet MobileNet weights not found at {MOBILENET_NO_TOP} (set FLOWER_WEIGHTS_DIR)",
)


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """Runs, feature cache and Keras cache in tmp folders; no dataset or weights dir by default."""
    monkeypatch.setenv("FLOWER_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("FLOWER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.delenv("FLOWER_DATA", raising=False)
    monkeypatch.delenv("FLOWER_WEIGHTS_DIR", raising=False)
    monkeypatch.delenv("FLOWER_ALLOWED_ROOTS", raising=False)


@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory) -> Path:
    """A small synthetic five-class dataset with masks (session-wide; treat as read-only)."""
    from flower_core.synthetic import generate

    out = tmp_path_factory.mktemp("synthetic") / "flowers"
    generate(out, per_class=24, size=96, seed=0, masks=True)
    return out


def _save_tiny_run(run_dir: Path, class_names, backbone="mobilenet", image_size=64, preset="base",
                   data_root=None, split=None) -> Path:
    """Write a run folder holding an untrained tiny classifier (random init, Dense 8 head)."""
    import json

    from flower_core.config import make_config
    from flower_core.model import build_classifier

    config = make_config(preset, backbone=backbone, weights="none", image_size=image_size,
                         dense_units=[8])
    run_dir.mkdir(parents=True, exist_ok=True)
    build_classifier(config, len(class_names)).model.save(run_dir / "model.keras")
    record = {**config.to_json(), "class_names": list(class_names),
              "data_root": str(data_root) if data_root else None}
    (run_dir / "config.json").write_text(json.dumps(record))
    if split is not None:
        (run_dir / "split.json").write_text(json.dumps(split))
    return run_dir


@pytest.fixture(scope="session")
def tiny_classifier_run(tmp_path_factory) -> Path:
    """A run folder with an untrained 64 px MobileNet for daisy / rose / tulip (read-only)."""
    return _save_tiny_run(tmp_path_factory.mktemp("tiny_run") / "run", ["daisy", "rose", "tulip"])


@pytest.fixture
def tiny_run_factory(tmp_path):
    """Make run folders like `tiny_classifier_run` with other classes, backbone, data or split."""
    def make(name="run", class_names=("daisy", "rose", "tulip"), **options) -> Path:
        return _save_tiny_run(tmp_path / name, class_names, **options)

    return make
