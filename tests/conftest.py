"""Shared fixtures. Every test runs with its own runs, cache and Keras folders, so no test
touches a user's data; the real photos and ImageNet weights (when present beside the project)
are captured here, before the isolation, for the real-data tests."""

import os
import time
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

_SHARED = Path(__file__).resolve().parents[2] / "shared"
REAL_DATA = Path(os.environ.get("FLOWER_DATA") or _SHARED / "data" / "flowers")
WEIGHTS_DIR = Path(os.environ.get("FLOWER_WEIGHTS_DIR") or _SHARED / "weights")
MOBILENET_NO_TOP = WEIGHTS_DIR / "mobilenet_1_0_224_tf_no_top.h5"


def wait_until(predicate, timeout: float = 300, interval: float = 0.1, what: str = "condition") -> None:
    """Poll `predicate` until it is true; fail the test, naming `what` was awaited, when
    `timeout` seconds pass first."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"{what} not reached in {timeout:g} s")


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
    from flower_core.training.jobs import IDLE_ENV

    # Workers exit once their queue is empty (the warm worker's own tests turn waiting on);
    # FLOWER_TEST_WORKER_IDLE_S=5 runs the queue's tests against workers that wait.
    monkeypatch.setenv(IDLE_ENV, os.environ.get("FLOWER_TEST_WORKER_IDLE_S", "0"))


@pytest.fixture(autouse=True)
def calibrations(request, monkeypatch) -> list:
    """The background calibrations pages ask for, recorded instead of started unless the test is
    marked `calibrates`: each is a process that loads TensorFlow and a backbone, and the pages'
    tests, each with its own empty cache, would start one after another beside them."""
    if request.node.get_closest_marker("calibrates"):
        return []
    asked: list = []
    monkeypatch.setattr(
        "flower_core.training.estimate._calibrate_in_background", lambda *args: asked.append(args)
    )
    return asked


@pytest.fixture
def no_worker(monkeypatch) -> list:
    """Queue runs without starting the worker that would train them, and keep none waiting (the
    page or the queue is what is tested); returns the runs folders a worker was asked for."""
    from flower_core.training import jobs

    monkeypatch.setenv(jobs.IDLE_ENV, "0")
    started = []
    monkeypatch.setattr(jobs, "start_worker", lambda root=None, warm_data=None: started.append(root))
    return started


@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory) -> Path:
    """A small synthetic five-class dataset with masks (session-wide; treat as read-only)."""
    from flower_core.data.synthetic import generate

    out = tmp_path_factory.mktemp("synthetic") / "flowers"
    generate(out, per_class=24, size=96, seed=0, masks=True)
    return out


def _save_tiny_run(
    run_dir: Path,
    class_names,
    backbone="mobilenet",
    image_size=64,
    preset="base",
    data_root=None,
    split=None,
    layout="facts",
) -> Path:
    """Write a run folder holding an untrained tiny classifier (random init, Dense 8 head); its
    class names in `facts.json`, or with `layout="old"` in `config.json` (runs written before
    `facts.json` existed)."""
    import json

    from flower_core.config import make_config
    from flower_core.models.classifier import build_classifier
    from flower_core.store.runs import FACTS

    config = make_config(preset, backbone=backbone, weights="none", image_size=image_size, dense_units=[8])
    run_dir.mkdir(parents=True, exist_ok=True)
    build_classifier(config, len(class_names)).model.save(run_dir / "model.keras")
    facts = {"class_names": list(class_names)}
    record = {
        **config.to_json(),
        "data_root": str(data_root) if data_root else None,
        **(facts if layout == "old" else {}),
    }
    (run_dir / "config.json").write_text(json.dumps(record))
    if layout != "old":
        (run_dir / FACTS).write_text(json.dumps(facts))
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


def _finish_app_run(run_dir: Path, data_root: Path, accuracies: list[float]) -> None:
    """Give a tiny run the files of a finished training: status, history, split and metrics."""
    import json

    from flower_core.data.dataset import scan_dataset, split_dataset
    from flower_core.evaluation.evaluate import evaluate_model
    from flower_core.store.runs import Run, load_run_model

    config = json.loads((run_dir / "config.json").read_text())
    split = split_dataset(scan_dataset(data_root))
    (run_dir / "split.json").write_text(json.dumps(split.to_json()))
    history = [
        {
            "epoch": i,
            "phase": "head",
            "loss": 1.6 - 0.2 * i,
            "accuracy": acc,
            "val_loss": 1.7 - 0.2 * i,
            "val_accuracy": acc - 0.05,
            "lr": 1e-3,
            "seconds": 2.0,
        }
        for i, acc in enumerate(accuracies, 1)
    ]
    (run_dir / "history.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history))
    metrics = evaluate_model(
        load_run_model(run_dir),
        list(Run(run_dir).facts.class_names),
        data_root,
        split.test,
        image_size=config["image_size"],
    )
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    (run_dir / "status.json").write_text(
        json.dumps(
            {
                "state": "done",
                "epoch": len(history),
                "epochs": len(history),
                "message": "finished",
                "kept_epoch": len(history),
                "started": "2026-01-01T00:00:00+00:00",
                "finished": "2026-01-01T00:01:00+00:00",
            }
        )
    )


@pytest.fixture(scope="session")
def app_runs_template(tmp_path_factory, synthetic_dataset) -> Path:
    """A runs folder for the app's tests (read-only): two finished tiny MobileNet runs on the
    synthetic set (presets base and dropout20) and one failed VGG16 run without a model."""
    import json

    from flower_core.data.synthetic import CLASSES

    root = tmp_path_factory.mktemp("app_runs") / "runs"
    for run_id, preset, accuracies in (
        ("20260101-000000-base-mobilenet-aaaa", "base", [0.3, 0.5]),
        ("20260101-000100-dropout20-mobilenet-bbbb", "dropout20", [0.4, 0.6, 0.7]),
    ):
        run_dir = _save_tiny_run(
            root / run_id, CLASSES, image_size=32, preset=preset, data_root=synthetic_dataset
        )
        _finish_app_run(run_dir, synthetic_dataset, accuracies)
    failed = root / "20260101-000200-batchnorm-vgg16-cccc"
    failed.mkdir()
    (failed / "config.json").write_text(
        json.dumps({"preset": "batchnorm", "backbone": "vgg16", "epochs": 30, "image_size": 224})
    )
    (failed / "status.json").write_text(
        json.dumps(
            {"state": "failed", "message": "ImageNet weights for backbone 'vgg16' could not be loaded"}
        )
    )
    return root


@pytest.fixture
def app_runs(app_runs_template, tmp_path, monkeypatch) -> Path:
    """This test's own copy of `app_runs_template`, set as FLOWER_RUNS."""
    import shutil

    root = tmp_path / "app_runs"
    shutil.copytree(app_runs_template, root)
    monkeypatch.setenv("FLOWER_RUNS", str(root))
    return root


CAM_IMAGE_SIZE = 48


def _small_cnn(size: int):
    """Four 3x3 convolutions (batch-norm, ReLU), two poolings, a global average and a softmax,
    named as `explain` expects (`head_pool`, `predictions`); fully convolutional, so the same
    weights also read a canvas of any size."""
    import keras

    from flower_core.data.synthetic import CLASSES
    from flower_core.models.classifier import HEAD_POOL, PREDICTIONS

    keras.utils.set_random_seed(0)
    inputs = keras.Input((size, size, 3), name="pixels")
    x = keras.layers.Rescaling(1 / 127.5, -1)(inputs)
    for i, filters in enumerate((16, 32, 32, 32), 1):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{i}")(x)
        x = keras.layers.BatchNormalization(momentum=0.9, name=f"conv{i}_bn")(x)
        x = keras.layers.ReLU(name=f"conv{i}_relu")(x)
        if i < 3:
            x = keras.layers.MaxPooling2D(name=f"pool{i}")(x)
    x = keras.layers.GlobalAveragePooling2D(name=HEAD_POOL)(x)
    outputs = keras.layers.Dense(len(CLASSES), activation="softmax", name=PREDICTIONS)(x)
    return keras.Model(inputs, outputs, name="small_cnn")


@pytest.fixture(scope="session")
def trained_cam_models():
    """A small CNN trained from scratch on 60 synthetic photos per class at `CAM_IMAGE_SIZE` px
    (the photos `generate(seed=1)` draws; `synthetic_dataset` uses seed 0, so it is held out),
    and the same weights at twice the size, for 2 x 2 canvases of four photos (read-only)."""
    import keras
    import numpy as np

    from flower_core.data.synthetic import CLASSES, draw_flower

    photos, labels = [], []
    for label, name in enumerate(CLASSES):
        for index in range(60):
            image, _ = draw_flower(name, size=CAM_IMAGE_SIZE, seed=[1, label, index])
            photos.append(np.asarray(image, np.float32))
            labels.append(label)
    model = _small_cnn(CAM_IMAGE_SIZE)
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    model.fit(np.stack(photos), np.array(labels), epochs=20, batch_size=32, verbose=0)
    canvas_model = _small_cnn(2 * CAM_IMAGE_SIZE)
    canvas_model.set_weights(model.get_weights())
    return model, canvas_model
