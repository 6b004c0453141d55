"""Why a run stopped: decided from its state, history and config, for the page, status and CLI."""

import json

from flower_core.store.runs import write_json
from flower_core.training.stopping import run_stop_reason, stop_reason


def _history(val_losses, phase="head", start=1):
    return [{"epoch": e, "phase": phase, "val_loss": v} for e, v in enumerate(val_losses, start)]


def test_early_stopping_names_the_epoch_the_wait_and_the_model_kept():
    losses = [5, 4, 3, 2, 1.5, 1.0, 0.9, 1.1, 1.2, 1.0, 0.95, 1.3]
    reason = stop_reason("done", "finished", _history(losses), {"epochs": 30, "patience": 5})
    assert reason == (
        "early stopping at epoch 12 of 30: validation loss had not improved for "
        "5 epochs; the model of epoch 7 is kept"
    )


def test_a_run_that_used_every_epoch_says_so():
    reason = stop_reason("done", "finished", _history([3, 2, 2.5]), {"epochs": 3})
    assert reason == "ran all 3 epochs; the model of epoch 2 is kept"


def test_head_then_fine_tune_names_each_phase():
    history = _history([3, 2, 2.5, 2.6]) + _history([1.9, 1.8], "fine-tune", start=5)
    reason = stop_reason(
        "done", "finished", history, {"epochs": 10, "fine_tune_blocks": 2, "fine_tune_epochs": 2}
    )
    assert reason == (
        "head: early stopping at epoch 4 of 10: validation loss had not improved for "
        "2 epochs; fine-tune: ran all 2 epochs; the model of epoch 6 is kept"
    )


def test_cancelled_and_failed_and_killed():
    history = _history([3, 2, 2.5])
    assert stop_reason("cancelled", "", history, {"epochs": 30}) == (
        "cancelled by request after epoch 3 of 30; the model of epoch 2 is kept"
    )
    assert stop_reason("cancelled", "", [], {"epochs": 30}) == (
        "cancelled by request before any epoch finished; no model was saved"
    )
    assert stop_reason("failed", "ResourceExhaustedError: OOM", history, {}) == (
        "failed: ResourceExhaustedError: OOM"
    )
    assert stop_reason("interrupted", "", history, {"epochs": 5}).startswith(
        "the training process stopped (killed or crashed) after epoch 3 of 5"
    )


def test_missing_validation_loss_still_gives_a_reason():
    history = [{"epoch": 1, "phase": "head", "val_loss": None}]
    assert stop_reason("done", "", history, {"epochs": 1}) == (
        "ran all 1 epoch; the model of the last epoch is kept"
    )


def test_run_stop_reason_prefers_the_written_field_and_never_raises(tmp_path):
    write_json(tmp_path / "status.json", {"state": "done", "stop_reason": "written by the trainer"})
    assert run_stop_reason(tmp_path) == "written by the trainer"
    write_json(tmp_path / "status.json", {"state": "done", "message": "finished"})
    write_json(tmp_path / "config.json", {"epochs": 2})
    (tmp_path / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _history([2, 1])))
    assert run_stop_reason(tmp_path) == "ran all 2 epochs; the model of epoch 2 is kept"
    (tmp_path / "config.json").write_text("{not json")
    assert run_stop_reason(tmp_path) == "finished"


def test_fewer_epochs_without_a_wait_is_not_called_early_stopping():
    reason = stop_reason("done", "finished", _history([3, 2]), {"epochs": 30, "patience": 5})
    assert reason == "stopped at epoch 2 of 30; the model of epoch 2 is kept"
