"""The Compare page's details of selected runs, read in the core (no Streamlit)."""

import pytest

from flower_core.compare import (
    COMPACT_COLUMNS,
    MORE_COLUMNS,
    TABLE_COLUMNS,
    run_details,
    table_columns,
)
from flower_core.errors import FlowerError
from flower_core.run_files import HistoryRow, Metrics
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
    assert one["history"] == (HistoryRow(epoch=0, val_accuracy=0.7, seconds=1.5),)
    assert (two["preset"], two["history"], two["metrics"]) == ("center", (), Metrics())
    with pytest.raises(FlowerError, match="invalid run id"):
        run_details(store.root, ["../escape"])


def test_an_unknown_table_column_is_refused_in_one_line():
    with pytest.raises(FlowerError, match="unknown runs-table column 'nope'.*Received: \\['nope'\\]"):
        table_columns(["nope"])
    with pytest.raises(FlowerError, match="unknown runs-table column 'label'"):
        table_columns(["label"])  # already in the compact set, so not a choice


def test_the_table_shows_the_compact_set_then_the_chosen_columns_in_table_order():
    assert table_columns() == list(COMPACT_COLUMNS)
    assert COMPACT_COLUMNS[:4] == ("label", "state", "test_accuracy", "test_loss")
    assert set(COMPACT_COLUMNS) | set(MORE_COLUMNS) == set(TABLE_COLUMNS)
    assert not set(COMPACT_COLUMNS) & set(MORE_COLUMNS)
    chosen = table_columns(["run_id", "weights"])
    assert chosen == [*COMPACT_COLUMNS, "weights", "run_id"]
    assert table_columns(MORE_COLUMNS) == list(TABLE_COLUMNS)
