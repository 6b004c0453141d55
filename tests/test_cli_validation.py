"""`train` checks every argument before it creates anything: a bad value exits 2 with one line
and leaves no run folder; a run whose loss stops being a number ends `failed`, never `done`."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from flower_core.cli import main
from flower_core.errors import FlowerError
from flower_core.training.progress import StopOnNaN


def _bad_split(kind: str, tmp_path: Path) -> str:
    if kind == "list":
        (tmp_path / "list.json").write_text(json.dumps(["a.jpg", "b.jpg"]))
        return str(tmp_path / "list.json")
    if kind == "lists_of_numbers":
        (tmp_path / "nums.json").write_text(json.dumps({"train": [1], "val": [], "test": [], "seed": 0}))
        return str(tmp_path / "nums.json")
    if kind == "another_dataset":
        other = {"train": ["cat/cat_0000.jpg"], "val": ["dog/dog_0000.jpg"], "test": [], "seed": 0}
        (tmp_path / "other.json").write_text(json.dumps(other))
        return str(tmp_path / "other.json")
    return {"missing": str(tmp_path / "nothing.json"), "folder": str(tmp_path)}[kind]


CASES = {
    "split_missing": lambda t: ["--split", _bad_split("missing", t)],
    "split_folder": lambda t: ["--split", _bad_split("folder", t)],
    "split_list": lambda t: ["--split", _bad_split("list", t)],
    "split_wrong_lists": lambda t: ["--split", _bad_split("lists_of_numbers", t)],
    "split_of_another_dataset": lambda t: ["--split", _bad_split("another_dataset", t)],
    "seed_negative": lambda t: ["--seed", "-1"],
    "seed_huge": lambda t: ["--seed", str(2**40)],
    "learning_rate_inf": lambda t: ["--learning-rate", "inf"],
    "learning_rate_nan": lambda t: ["--learning-rate", "nan"],
    "fine_tune_learning_rate_inf": lambda t: ["--fine-tune-learning-rate", "inf"],
    "patience_negative": lambda t: ["--patience", "-1"],
    "fine_tune_epochs_negative": lambda t: ["--fine-tune-epochs", "-1"],
    "runs_under_a_file": lambda t: ["--runs", "/etc/passwd/x"],
}
EXPECTED = {
    "split": "split file",
    "seed": "seed must be",
    "learning_rate": "learning rate must be",
    "fine_tune_learning_rate": "fine-tune learning rate must be",
    "patience": "patience must be",
    "fine_tune_epochs": "fine-tune epochs must be",
    "runs": "a file stands where a folder is needed",
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_train_arguments_exit_2_in_one_line_and_create_no_run(synthetic_dataset, tmp_path, capsys, case):
    runs = tmp_path / "runs"
    argv = [
        "train",
        "--data",
        str(synthetic_dataset),
        "--runs",
        str(runs),
        "--backbone",
        "mobilenet",
        "--weights",
        "none",
        "--image-size",
        "32",
        "--epochs",
        "1",
        *CASES[case](tmp_path),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    expected = next(
        text for key, text in sorted(EXPECTED.items(), key=lambda kv: -len(kv[0])) if case.startswith(key)
    )
    assert expected in err
    assert not runs.exists() or not any(runs.iterdir())


@pytest.mark.parametrize("logs", [{"loss": math.nan}, {"loss": math.inf}, {"loss": np.float32("nan")}])
def test_a_loss_that_is_not_a_number_fails_the_run_at_that_batch(logs):
    stop = StopOnNaN()
    stop.on_train_begin()
    stop.on_epoch_begin(2)
    stop.on_train_batch_end(0, {"loss": 0.5})
    with pytest.raises(FlowerError, match="batch 4 of epoch 3.*lower the learning rate"):
        stop.on_train_batch_end(3, logs)
    with pytest.raises(FlowerError, match="val_loss became nan at epoch 3"):
        stop.on_epoch_end(2, {"loss": 0.5, "val_loss": math.nan})


@pytest.mark.slow
def test_a_run_whose_loss_becomes_nan_ends_failed_with_the_reason(synthetic_dataset, tmp_path):
    from flower_core.config import make_config
    from flower_core.store.runs import read_status
    from flower_core.training.jobs import train_new_run

    config = make_config(
        "base",
        backbone="mobilenet",
        weights="none",
        image_size=32,
        epochs=2,
        learning_rate=3e38,
        dense_units=[8],
        seed=0,
    )
    run_dir = train_new_run(config, synthetic_dataset, tmp_path / "runs")
    status = read_status(run_dir)
    assert status.state == "failed", status
    assert "became" in status.message and "lower the learning rate" in status.message
