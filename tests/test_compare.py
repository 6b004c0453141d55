"""The Compare page's details of selected runs, read in the core (no Streamlit)."""

import pytest

from flower_core.compare import run_details
from flower_core.errors import FlowerError
from flower_core.runs import HISTORY, METRICS, RunStore, append_jsonl, write_json


def test_run_details_join_config_summary_history_and_metrics(tmp_path):
    store = RunStore(tmp_path / "runs")
    first = store.create({"preset": "base", "backbone": "mobilenet", "dropout": 0.3, "seed": 2})
    second = store.create({"preset": "center", "backbone": "vgg16"})
    append_jsonl(first / HISTORY, {"epoch": 0, "val_accuracy": 0.7, "seconds": 1.5})
    write_json(first / METRICS, {"test_accuracy": 0.8})
    one, two = run_details(store.root, [first.name, second.name])
    assert (one["run_id"], one["dropout"], one["seed"], one["state"]) == (first.name, 0.3, 2, "queued")
    assert one["best_val_accuracy"] == 0.7 and one["test_accuracy"] == 0.8
    assert one["history"] == [{"epoch": 0, "val_accuracy": 0.7, "seconds": 1.5}]
    assert (two["preset"], two["history"], two["metrics"]) == ("center", [], {})
    with pytest.raises(FlowerError, match="invalid run id"):
        run_details(store.root, ["../escape"])
