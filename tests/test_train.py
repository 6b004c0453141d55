"""Training end to end: complete run folders, every preset, fine-tuning, cancel and kill."""

import gc
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from flower_core.cli import commands as cli
from flower_core.config import PRESETS, make_config
from flower_core.evaluation.evaluate import evaluate_run
from flower_core.models.features import FeatureCache
from flower_core.store.runs import Run, RunStore, load_run_model, read_history, read_json, read_status
from flower_core.training.jobs import train_new_run
from flower_core.training.train import _compile, _view_dataset
from tests.test_tensorboard import event_steps

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "flower_core", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        timeout=600,
    )


@pytest.fixture(scope="module")
def random_mobilenet_weights(tmp_path_factory) -> str:
    """A weights file for a frozen backbone, so the cached-features path runs without ImageNet."""
    path = tmp_path_factory.mktemp("weights") / "mobilenet_random.weights.h5"
    keras.applications.MobileNet(include_top=False, weights=None, input_shape=(64, 64, 3)).save_weights(path)
    return str(path)


def _assert_complete_run(run_dir: Path, epochs: int, classes: list[str]):
    config, facts = read_json(run_dir / "config.json"), Run(run_dir).facts
    assert list(facts.class_names) == classes and len(facts.dataset_fingerprint) == 16
    split = read_json(run_dir / "split.json")
    assert split["seed"] == config["seed"] and split["train"] and split["val"] and split["test"]
    assert not set(split["train"]) & set(split["test"])
    status = read_status(run_dir)
    assert status.state == "done" and status.finished
    history = read_history(run_dir)
    assert [h.epoch for h in history] == list(range(1, epochs + 1))
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds"} <= set(history[0].to_json())
    assert event_steps(run_dir / "tensorboard" / "validation") == [h.epoch for h in history]
    metrics = read_json(run_dir / "metrics.json")
    assert 0 <= metrics["test_accuracy"] <= 1 and metrics["class_names"] == classes
    assert sum(map(sum, metrics["confusion"])) == len(split["test"])
    assert set(metrics["per_class"]) == set(classes)
    assert 0 <= metrics["confidence"]["threshold"] <= 1
    assert metrics["confidence"]["val_photos"] == len(split["val"])
    model = load_run_model(run_dir)
    assert model.output_shape == (None, len(classes))


@pytest.mark.slow
def test_cli_synth_then_train_gives_a_complete_run_folder(tmp_path):
    data = tmp_path / "synthetic"
    synth = _cli("synth", "--out", str(data), "--per-class", "12", "--size", "64", "--json")
    assert synth.returncode == 0, synth.stderr
    train = _cli(
        "train",
        "--data",
        str(data),
        "--runs",
        str(tmp_path / "runs"),
        "--backbone",
        "mobilenet",
        "--weights",
        "none",
        "--image-size",
        "64",
        "--epochs",
        "2",
        "--json",
    )
    assert train.returncode == 0, train.stderr
    result = json.loads(train.stdout.strip().splitlines()[-1])
    assert result["state"] == "done" and Path(result["run_dir"]).parent == tmp_path / "runs"
    assert result["stop_reason"].startswith("ran all 2 epochs; the model of epoch")
    assert read_status(Path(result["run_dir"])).stop_reason == result["stop_reason"]
    _assert_complete_run(Path(result["run_dir"]), 2, ["daisy", "dandelion", "rose", "sunflower", "tulip"])
    listing = _cli("runs", "--runs", str(tmp_path / "runs"), "--json")
    assert json.loads(listing.stdout.splitlines()[-1])["runs"][0]["run_id"] == result["run_id"]


@pytest.mark.slow
@pytest.mark.parametrize("preset", list(PRESETS))
def test_every_preset_trains_on_cached_features(
    preset, synthetic_dataset, random_mobilenet_weights, tmp_path
):
    config = make_config(
        preset,
        backbone="mobilenet",
        weights=random_mobilenet_weights,
        image_size=64,
        epochs=2,
        augment_views=2,
    )
    run_dir = train_new_run(config, synthetic_dataset, tmp_path / "runs")
    _assert_complete_run(run_dir, 2, ["daisy", "dandelion", "rose", "sunflower", "tulip"])
    stored = read_json(run_dir / "config.json")
    assert (stored["preset"], stored["dropout"], stored["batch_size"]) == (
        preset,
        config.dropout,
        config.batch_size,
    )


@pytest.mark.slow
def test_extraction_counts_once_over_train_validation_and_test_with_the_run_s_eta(
    synthetic_dataset, random_mobilenet_weights, tmp_path
):
    config = make_config(
        "dropout20", backbone="mobilenet", weights=random_mobilenet_weights, image_size=64, epochs=2
    )
    seen = []

    def reporter(event):
        if "photos_done" in event:
            [training] = RunStore(tmp_path / "runs").run_dirs()
            eta = read_status(training).eta
            seen.append((event["what"], event["photos_done"], event["photos_total"], eta))

    run_dir = train_new_run(config, synthetic_dataset, tmp_path / "runs", reporter=reporter)
    split = read_json(run_dir / "split.json")
    total = len(split["train"]) * config.augment_views + len(split["val"]) + len(split["test"])
    assert {t for _, _, t, _ in seen} == {total}  # one count for the whole run
    done = [d for _, d, _, _ in seen]
    assert done == sorted(done) and done[-1] == total  # never restarts
    assert [w for w, *_ in seen][-1] == "test features"
    assert all(eta is not None for *_, eta in seen)  # the ETA holds during extraction


@pytest.mark.slow
@pytest.mark.parametrize(
    "way, size, kinds, ran",
    [
        (
            "maps",
            128,
            ("feature maps", "feature maps", "feature maps"),
            "maps",
        ),  # one backbone pass per photo
        ("views", 64, ("2 augmented views", "clean", "clean"), "views"),
        (
            "maps",
            64,
            ("2 augmented views", "clean", "clean"),
            "views",
        ),  # 2 x 2 maps: too small, views instead
    ],
)
def test_both_ways_of_caching_augmentation_train_and_score_like_the_saved_model(
    way, size, kinds, ran, synthetic_dataset, random_mobilenet_weights, tmp_path
):
    config = make_config(
        "dropout20",
        backbone="mobilenet",
        weights=random_mobilenet_weights,
        image_size=size,
        epochs=2,
        augment_cache=way,
        augment_views=2,
    )
    run_dir = train_new_run(config, synthetic_dataset, tmp_path / "runs")
    _assert_complete_run(run_dir, 2, ["daisy", "dandelion", "rose", "sunflower", "tulip"])
    facts = Run(run_dir).facts
    assert facts.augment_cache == ran and read_json(run_dir / "config.json")["augment_cache"] == way
    sizes = facts.split_sizes
    entries = sorted((e["kind"], e["photos"]) for e in FeatureCache().entries())
    assert entries == sorted(zip(kinds, (sizes["train"], sizes["val"], sizes["test"])))
    # The saved model (the best epoch, written when training ended) scores what the cache scored.
    metrics = read_json(run_dir / "metrics.json")
    assert evaluate_run(run_dir)["test_loss"] == pytest.approx(metrics["test_loss"], rel=1e-4)


@pytest.mark.slow
def test_fine_tuning_and_end_to_end_training(synthetic_dataset, random_mobilenet_weights, tmp_path):
    config = make_config(
        "dropout20",
        backbone="mobilenet",
        weights=random_mobilenet_weights,
        image_size=64,
        epochs=1,
        fine_tune_blocks=1,
        fine_tune_epochs=1,
        cache_features=False,
    )
    run_dir = train_new_run(config, synthetic_dataset, tmp_path / "runs")
    _assert_complete_run(run_dir, 2, ["daisy", "dandelion", "rose", "sunflower", "tulip"])
    assert [h.phase for h in read_history(run_dir)] == ["head", "fine-tune"]
    assert read_history(run_dir)[1].lr == pytest.approx(1e-5)


@pytest.mark.slow
def test_reusing_a_split_file_keeps_the_same_split(synthetic_dataset, tmp_path):
    config = make_config("base", backbone="mobilenet", weights="none", image_size=64, epochs=1, seed=5)
    first = train_new_run(config, synthetic_dataset, tmp_path / "runs")
    second = train_new_run(
        make_config("base", backbone="mobilenet", weights="none", image_size=64, epochs=1, seed=9),
        synthetic_dataset,
        tmp_path / "runs",
        split_file=first / "split.json",
    )
    assert read_json(second / "split.json")["test"] == read_json(first / "split.json")["test"]


def test_offline_vgg16_imagenet_is_one_clear_line(synthetic_dataset, tmp_path):
    result = _cli(
        "train",
        "--data",
        str(synthetic_dataset),
        "--runs",
        str(tmp_path / "runs"),
        "--backbone",
        "vgg16",
        "--weights",
        "imagenet",
        "--image-size",
        "64",
        "--epochs",
        "1",
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ImageNet weights for backbone 'vgg16'")
    assert (
        "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5" in lines[0] and "Traceback" not in result.stderr
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--preset", "nope"], "unknown preset 'nope'"),
        (["--epochs", "0"], "epochs must be between 1 and 100000"),
        (["--backbone", "alexnet"], "backbone must be one of"),
        (["--epochs", "two"], "invalid int value"),
        (["--fine-tune-learning-rate", "0"], "fine-tune learning rate must be positive"),
    ],
)
def test_bad_train_arguments_exit_with_one_line(synthetic_dataset, args, message):
    result = _cli("train", "--data", str(synthetic_dataset), *args)
    assert result.returncode == 2 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_the_commands_import_tensorflow_then_freeze_what_it_made_and_collect_again():
    """Collecting TensorFlow's objects while importing cost 0.6-0.8 s of every command; the
    collector must be back on afterwards, or a long training would never free a cycle."""
    gc.unfreeze()
    try:
        cli._import_tensorflow_quietly()
        assert gc.isenabled() and gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_the_commands_import_keras_without_pandas_and_pandas_still_imports_afterwards():
    """Keras imports pandas (0.4 s) only to accept DataFrames; a training command must not pay
    for it, and whatever needs pandas later in the process must still get it."""
    script = (
        "import sys\n"
        "from flower_core.cli import commands\n"
        "commands._import_tensorflow_quietly()\n"
        "assert 'keras' in sys.modules and 'pandas' not in sys.modules, 'pandas came with Keras'\n"
        "from flower_core.evaluation import evaluate  # what a training imports, its test evaluation too\n"
        "from flower_core.training import train\n"
        "assert 'pandas' not in sys.modules, 'a training module imports pandas'\n"
        "from flower_core.evaluation.predict import predictions_table\n"
        "print(type(predictions_table([{'path': 'a.jpg', 'predicted_class': 'daisy'}])).__name__)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-500:]
    assert result.stdout.strip() == "DataFrame"


def test_missing_dataset_is_one_clear_line(tmp_path):
    result = _cli("train", "--data", str(tmp_path / "none"), "--backbone", "mobilenet", "--weights", "none")
    assert result.returncode == 2 and "dataset folder not found" in result.stderr


def _start_long_run(data: Path, runs: Path) -> subprocess.Popen:
    script = (
        "from flower_core.config import make_config\n"
        "from flower_core.training.jobs import train_new_run\n"
        f"train_new_run(make_config('base', backbone='mobilenet', weights='none', image_size=64,"
        f" epochs=200, patience=500, batch_size=8), {str(data)!r}, {str(runs)!r})\n"
    )
    return subprocess.Popen(
        [sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def _wait_for_epochs(runs: Path, count: int, timeout: float = 240) -> Path:
    deadline = time.time() + timeout
    while time.time() < deadline:
        for run_dir in RunStore(runs).run_dirs():
            if len(read_history(run_dir)) >= count and (run_dir / "model.keras").exists():
                return run_dir
        time.sleep(0.3)
    raise AssertionError("training did not reach the expected epoch in time")


@pytest.mark.slow
@pytest.mark.parametrize("how", ["flag", "sigterm"])
def test_cancelled_run_stops_and_keeps_the_best_model(synthetic_dataset, tmp_path, how):
    process = _start_long_run(synthetic_dataset, tmp_path / "runs")
    run_dir = _wait_for_epochs(tmp_path / "runs", 1)
    if how == "flag":
        (run_dir / "cancel.request").touch()
    else:
        process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) == 0
    status = read_status(run_dir)
    assert status.state == "cancelled" and status.finished
    assert status.stop_reason.startswith("cancelled by request after epoch ")
    assert 1 <= len(read_history(run_dir)) < 200
    assert load_run_model(run_dir).output_shape == (None, 5)


@pytest.mark.slow
def test_killed_run_is_readable_and_reported_interrupted(synthetic_dataset, tmp_path):
    process = _start_long_run(synthetic_dataset, tmp_path / "runs")
    run_dir = _wait_for_epochs(tmp_path / "runs", 2)
    process.kill()
    process.wait()
    status = read_status(run_dir)
    assert status.state == "interrupted" and "killed" in status.message
    assert len(read_history(run_dir)) >= 2
    assert load_run_model(run_dir).output_shape == (None, 5)


def test_one_cached_view_trains_on_the_batches_that_duplicated_views_give():
    """With one view (no augmentation) the head's rows skip the per-photo draw: the same seeded
    shuffle must still give exactly the batches that drawing among identical views gives."""
    config = make_config("base", seed=3, batch_size=4)
    rows = np.arange(10 * 2, dtype="float32").reshape(10, 2)
    labels = np.eye(10, dtype="float32")
    one, duplicated = (
        _view_dataset(rows[None], labels, config),
        _view_dataset(np.stack([rows, rows]), labels, config),
    )
    for _epoch in range(2):
        batches = list(zip(one, duplicated, strict=True))
        assert len(batches) == 3
        for (x1, y1), (x2, y2) in batches:
            np.testing.assert_array_equal(x1, x2)
            np.testing.assert_array_equal(y1, y2)
    first_epoch = np.concatenate([x for x, _ in one])
    assert sorted(first_epoch[:, 0]) == sorted(rows[:, 0]) and not np.array_equal(first_epoch, rows)


@pytest.mark.parametrize("steps_per_execution", [1, 16])
def test_compiling_makes_the_training_state_so_the_train_step_is_traced_once(steps_per_execution):
    """Variables made while the train step is first traced make `tf.function` trace it again."""
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.Dense(4)(inputs)))
    _compile(model, make_config("base"), 1e-3, steps_per_execution)
    traced = []
    train_step = model.train_step
    model.train_step = lambda data: traced.append(1) or train_step(data)
    before = [w.copy() for w in model.get_weights()]
    x = np.random.default_rng(0).random((8, 3), dtype="float32")
    model.fit(x, np.eye(2, dtype="float32")[[0, 1] * 4], batch_size=4, epochs=2, verbose=0)
    assert len(traced) == 1
    assert int(model.optimizer.iterations.numpy()) == 4
    assert not any(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
