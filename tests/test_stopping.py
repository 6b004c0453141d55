"""Why a run stopped: decided from its state, history and config, and what its model file holds
(`runs.kept_model_note`), for the page, status and CLI."""

import json
import os

from flower_core.store.runs import peek_status, write_json
from flower_core.training.stopping import run_stop_reason, stop_reason

# What `runs.kept_model_note` says of the model file; the reason ends with it, whatever the history.
KEPT = "the model of epoch 7 (the best until then) is kept"


def _history(val_losses, phase="head", start=1):
    return [{"epoch": e, "phase": phase, "val_loss": v} for e, v in enumerate(val_losses, start)]


def test_early_stopping_names_the_epoch_the_wait_and_the_model_kept():
    losses = [5, 4, 3, 2, 1.5, 1.0, 0.9, 1.1, 1.2, 1.0, 0.95, 1.3]
    reason = stop_reason("done", "finished", _history(losses), {"epochs": 30, "patience": 5}, KEPT)
    assert reason == (
        f"early stopping at epoch 12 of 30: validation loss had not improved for 5 epochs; {KEPT}"
    )


def test_a_run_that_used_every_epoch_says_so():
    reason = stop_reason("done", "finished", _history([3, 2, 2.5]), {"epochs": 3}, KEPT)
    assert reason == f"ran all 3 epochs; {KEPT}"


def test_head_then_fine_tune_names_each_phase():
    history = _history([3, 2, 2.5, 2.6]) + _history([1.9, 1.8], "fine-tune", start=5)
    reason = stop_reason(
        "done", "finished", history, {"epochs": 10, "fine_tune_blocks": 2, "fine_tune_epochs": 2}, KEPT
    )
    assert reason == (
        "head: early stopping at epoch 4 of 10: validation loss had not improved for "
        f"2 epochs; fine-tune: ran all 2 epochs; {KEPT}"
    )


def test_cancelled_and_failed_and_killed():
    history = _history([3, 2, 2.5])
    assert stop_reason("cancelled", "", history, {"epochs": 30}, KEPT) == (
        f"cancelled by request after epoch 3 of 30; {KEPT}"
    )
    none = "no model was kept (none had been saved yet)"
    assert stop_reason("cancelled", "", [], {"epochs": 30}, none) == (
        f"cancelled by request before any epoch finished; {none}"
    )
    assert stop_reason("failed", "ResourceExhaustedError: OOM", history, {}, KEPT) == (
        "failed: ResourceExhaustedError: OOM"
    )
    assert stop_reason("interrupted", "", history, {"epochs": 5}, KEPT).startswith(
        "the training process stopped (killed or crashed) after epoch 3 of 5"
    )


def test_missing_validation_loss_still_gives_a_reason():
    history = [{"epoch": 1, "phase": "head", "val_loss": None}]
    assert stop_reason("done", "", history, {"epochs": 1}, KEPT) == f"ran all 1 epoch; {KEPT}"


def test_run_stop_reason_prefers_the_written_field_and_never_raises(tmp_path):
    write_json(tmp_path / "status.json", {"state": "done", "stop_reason": "written by the trainer"})
    assert run_stop_reason(tmp_path) == "written by the trainer"
    write_json(tmp_path / "status.json", {"state": "done", "message": "finished", "kept_epoch": 2})
    write_json(tmp_path / "config.json", {"epochs": 2})
    (tmp_path / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _history([2, 1])))
    (tmp_path / "model.keras").write_bytes(b"the model of epoch 2")
    assert run_stop_reason(tmp_path) == "ran all 2 epochs; the model of epoch 2 (the best until then) is kept"
    (tmp_path / "config.json").write_text("{not json")
    assert run_stop_reason(tmp_path) == "finished"


def test_fewer_epochs_without_a_wait_is_not_called_early_stopping():
    reason = stop_reason("done", "finished", _history([3, 2]), {"epochs": 30, "patience": 5}, KEPT)
    assert reason == f"stopped at epoch 2 of 30; {KEPT}"


def _killed_in_epoch_2(run_dir, history, **status):
    """The files a training SIGKILLed during epoch 2 leaves: its history, a `running` status
    of a process that is gone, and no more (a model only if one had been saved)."""
    run_dir.mkdir()
    write_json(run_dir / "config.json", {"epochs": 30, "patience": 5})
    write_json(
        run_dir / "status.json",
        {"state": "running", "epoch": 2, "epochs": 30, "pid": -1, "host": os.uname().nodename, **status},
    )
    (run_dir / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in history))
    return run_dir


def test_a_run_killed_before_its_model_was_saved_says_no_model_is_kept(tmp_path):
    run_dir = _killed_in_epoch_2(tmp_path / "run", _history([0.9]))
    for status in (peek_status(run_dir), None):
        assert run_stop_reason(run_dir, status) == (
            "the training process stopped (killed or crashed) after epoch 1 of 30; "
            "no model was kept (none had been saved yet)"
        )


def test_a_killed_run_names_the_epoch_its_model_file_holds_not_the_best_in_its_history(tmp_path):
    run_dir = _killed_in_epoch_2(tmp_path / "run", _history([0.9, 0.5, 0.7]), kept_epoch=1)
    (run_dir / "model.keras").write_bytes(b"the model of epoch 1")
    assert run_stop_reason(run_dir, peek_status(run_dir)).endswith(
        "after epoch 3 of 30; the model of epoch 1 (the best until then) is kept"
    )
