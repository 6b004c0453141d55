"""The run store and the training callbacks, called directly with fake logs."""

import json
import os
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from flower_core.errors import FlowerError
from flower_core.store.run_files import HistoryRow, Status
from flower_core.store.runs import (
    HISTORY,
    RunStore,
    append_jsonl,
    kept_model_note,
    read_history,
    read_status,
    request_cancel,
    stored_status,
    write_json,
)
from flower_core.training.progress import BestModelKeeper, RunProgress, update_status


@pytest.fixture
def store(tmp_path):
    return RunStore(tmp_path / "runs")


def _tiny_model():
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name="predictions")(inputs))
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy")
    return model


def test_create_lists_and_summarises_runs(store):
    run_dir = store.create({"preset": "base", "backbone": "vgg16", "epochs": 3}, "base", "vgg16")
    assert read_status(run_dir).state == "queued"
    append_jsonl(run_dir / HISTORY, {"epoch": 1, "val_accuracy": 0.5, "seconds": 2.0})
    append_jsonl(run_dir / HISTORY, {"epoch": 2, "val_accuracy": 0.75, "seconds": 3.0})
    write_json(run_dir / "metrics.json", {"test_accuracy": 0.7, "test_loss": 0.8})
    (row,) = store.list_runs()
    assert (row["run_id"], row["preset"], row["epochs_done"]) == (run_dir.name, "base", 2)
    assert (row["best_val_accuracy"], row["test_accuracy"], row["seconds"]) == (0.75, 0.7, 5.0)
    assert row["augment_cache"] is None  # no augmentation
    for stored, shown in [
        ({"augment_cache": "maps"}, "maps"),
        ({}, "views"),  # {}: from before the option
        ({"augment_cache": "maps", "cache_features": False}, "on the fly"),
        ({"augment_cache": "maps", "weights": "none"}, "on the fly"),
    ]:
        augmented = store.create({"preset": "dropout20", "augment": True, **stored}, "dropout20")
        assert store.summary(augmented)["augment_cache"] == shown


def test_reading_a_run_but_its_settings_imports_no_keras(tmp_path):
    """Pages poll status and history every second; only `Run.config` needs `TrainConfig`."""
    code = (
        "import sys; from flower_core.store.runs import Run, RunStore, peek_status; "
        f"run = Run.open(RunStore({str(tmp_path)!r}).create({{'epochs': 1}})); "
        "run.status, run.facts, run.metrics, run.meta, run.history, peek_status(run.path); "
        "assert 'keras' not in sys.modules and 'tensorflow' not in sys.modules, 'keras imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_torn_history_line_is_ignored(store):
    run_dir = store.create({}, "x")
    append_jsonl(run_dir / HISTORY, {"epoch": 1})
    with open(run_dir / HISTORY, "a") as handle:
        handle.write('{"epoch": 2, "lo')
    assert read_history(run_dir) == (HistoryRow(epoch=1),)


def test_atomic_write_leaves_no_temp_files_and_old_content_on_failure(tmp_path):
    target = tmp_path / "status.json"
    write_json(target, {"state": "running"})
    with pytest.raises(TypeError):
        write_json(target, {"bad": object()})
    assert json.loads(target.read_text()) == {"state": "running"}
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]


def test_running_run_of_a_dead_process_reads_as_interrupted(store):
    run_dir = store.create({}, "x")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    write_json(
        run_dir / "status.json",
        {"state": "running", "pid": dead.pid, "host": os.uname().nodename, "heartbeat": time.time()},
    )
    assert read_status(run_dir).state == "interrupted"
    update_status(run_dir, state="running")
    assert read_status(run_dir).state == "running"


def test_an_interrupted_run_says_exactly_which_model_was_kept(store):
    run_dir = store.create({}, "x")
    write_json(run_dir / "status.json", {"state": "running", "pid": -1, "host": os.uname().nodename})
    assert read_status(run_dir).message.endswith("no model was kept (none had been saved yet)")
    (run_dir / "model.keras").write_bytes(b"zip")
    write_json(
        run_dir / "status.json", {"state": "running", "pid": -1, "host": os.uname().nodename, "kept_epoch": 2}
    )
    assert read_status(run_dir).message.endswith("the model of epoch 2 (the best until then) is kept")


def test_stale_heartbeat_reads_as_interrupted(store):
    run_dir = store.create({}, "x")
    write_json(
        run_dir / "status.json",
        {"state": "running", "pid": os.getpid(), "host": "elsewhere", "heartbeat": time.time() - 3600},
    )
    assert read_status(run_dir).state == "interrupted"


def test_rename_tag_and_delete(store):
    run_dir = store.create({}, "x")
    with pytest.raises(FlowerError, match="still queued"):
        store.delete(run_dir.name)
    write_json(run_dir / "status.json", {"state": "done"})
    store.set_meta(run_dir.name, name="my best", tags=["keep", " keep ", "vgg"])
    row = store.summary(run_dir)
    assert (row["name"], row["tags"]) == ("my best", ["keep", "vgg"])
    store.delete(run_dir.name)
    assert store.list_runs() == []


@pytest.mark.parametrize("bad", ["../etc", "a/b", "", ".hidden"])
def test_run_ids_cannot_escape_the_store(store, bad):
    with pytest.raises(FlowerError):
        store.path(bad)


def test_progress_callback_reports_logs_and_cancels(store):
    run_dir = store.create({}, "x")
    events, now = [], [1000.0]
    callback = RunProgress(run_dir, events.append, total_epochs=4, clock=lambda: now[0])
    callback.set_model(_tiny_model())
    callback.set_params({"epochs": 4, "steps": 10})
    callback.on_train_begin()
    callback.on_epoch_begin(0)
    now[0] += 0.2
    callback.on_train_batch_end(4, {"loss": 0.9, "accuracy": 0.5})
    assert events[-1]["kind"] == "batch" and events[-1]["batch"] == 5 and events[-1]["batches"] == 10
    # Half an epoch took 0.2 s, so 3.5 epochs remain at 0.4 s each.
    assert events[-1]["eta"] == pytest.approx(1.4) and events[-1]["epochs"] == 4
    assert read_status(run_dir).state == "running"
    callback.on_epoch_end(0, {"loss": 0.8, "accuracy": 0.6, "val_loss": 0.7, "val_accuracy": 0.65})
    (record,) = read_history(run_dir)
    assert (record.epoch, record.val_accuracy, record.lr) == (1, 0.65, pytest.approx(1e-3))
    request_cancel(run_dir)
    callback.on_epoch_begin(1)
    callback.on_train_batch_end(0, {"loss": 0.8, "accuracy": 0.6})
    assert callback.cancelled and callback.model.stop_training


def test_progress_never_counts_past_the_last_batch_with_several_steps_per_call(store):
    """The head runs 16 steps per call: 95 batches used to be shown as 96/95."""
    run_dir = store.create({}, "x")
    events = []
    model = _tiny_model()
    model.compile(optimizer="adam", loss="categorical_crossentropy", steps_per_execution=16)
    x, y = np.zeros((95, 3), "float32"), np.eye(2, dtype="float32")[np.zeros(95, int)]
    model.fit(x, y, batch_size=1, epochs=1, verbose=0, callbacks=[RunProgress(run_dir, events.append, 1)])
    batches = [event["batch"] for event in events if event["kind"] == "batch"]
    assert batches[-1] == 95 and max(batches) == 95 and events[-1]["batches"] == 95


def test_best_model_keeper_writes_the_first_epoch_at_once_then_waits_between_saves(tmp_path):
    model = _tiny_model()
    keeper = BestModelKeeper(model, tmp_path / "model.keras", min_interval=3600, epoch_offset=2)
    keeper.set_model(model)
    keeper.on_train_begin()
    assert kept_model_note(tmp_path, Status()).startswith("no model was kept")
    first = [w.copy() for w in model.get_weights()]
    keeper.on_epoch_end(0, {"val_loss": 0.9})
    assert stored_status(tmp_path).kept_epoch == 3
    assert kept_model_note(tmp_path) == "the model of epoch 3 (the best until then) is kept"
    model.set_weights([w + 1 for w in model.get_weights()])
    best = [w.copy() for w in model.get_weights()]
    keeper.on_epoch_end(1, {"val_loss": 0.5})
    on_disk = keras.saving.load_model(tmp_path / "model.keras")  # within the interval: still epoch 3's
    for written, expected in zip(on_disk.get_weights(), first):
        np.testing.assert_array_equal(written, expected)
    assert stored_status(tmp_path).kept_epoch == 3
    model.set_weights([w + 1 for w in best])
    keeper.on_epoch_end(2, {"val_loss": 0.7})
    keeper.on_train_end()
    saved = keras.saving.load_model(tmp_path / "model.keras")
    for written, expected in zip(saved.get_weights(), best):
        np.testing.assert_array_equal(written, expected)
    assert stored_status(tmp_path).kept_epoch == 4


def test_best_model_keeper_saves_only_improvements_and_restores_best(tmp_path):
    model = _tiny_model()
    keeper = BestModelKeeper(model, tmp_path / "model.keras", min_interval=0)
    keeper.set_model(model)
    keeper.on_train_begin()
    keeper.on_epoch_end(0, {"val_loss": 0.5})
    best = [w.copy() for w in model.get_weights()]
    saved_at = (tmp_path / "model.keras").stat().st_mtime_ns
    model.set_weights([w + 1 for w in best])
    keeper.on_epoch_end(1, {"val_loss": 0.9})
    assert (tmp_path / "model.keras").stat().st_mtime_ns == saved_at
    keeper.on_train_end()
    for restored, expected in zip(model.get_weights(), best):
        np.testing.assert_array_equal(restored, expected)
