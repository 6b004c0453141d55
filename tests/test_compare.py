"""The Compare page's details of selected runs, read in the core (no Streamlit)."""

import pytest

from flower_core.errors import FlowerError
from flower_core.evaluation.compare import (
    COMPACT_COLUMNS,
    MORE_COLUMNS,
    TABLE_COLUMNS,
    best_evaluated,
    best_first,
    retrain_pairs,
    run_details,
    run_label,
    table_columns,
)
from flower_core.store.run_files import HistoryRow, Metrics
from flower_core.store.runs import HISTORY, METRICS, RunStore, append_jsonl, write_json


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
    assert COMPACT_COLUMNS[:4] == ("label", "state", "test_accuracy", "test_ci")
    assert set(COMPACT_COLUMNS) | set(MORE_COLUMNS) == set(TABLE_COLUMNS)
    assert not set(COMPACT_COLUMNS) & set(MORE_COLUMNS)
    chosen = table_columns(["run_id", "weights"])
    assert chosen == [*COMPACT_COLUMNS, "weights", "run_id"]
    assert table_columns(MORE_COLUMNS) == list(TABLE_COLUMNS)


def test_a_run_is_named_by_its_given_name_else_preset_backbone_and_id_suffix():
    run = {"run_id": "20260101-000000-base-vgg16-ab12", "preset": "base", "backbone": "vgg16"}
    assert run_label(run) == "base · vgg16 · ab12"
    assert run_label({**run, "name": run["run_id"]}) == "base · vgg16 · ab12"  # the unrenamed default
    assert run_label({**run, "name": "my best"}) == "my best"


def test_runs_rank_by_test_accuracy_with_runs_not_evaluated_last_in_their_order():
    rows = [
        {"run_id": "queued"},
        {"run_id": "good", "test_accuracy": 0.8},
        {"run_id": "table cell", "test_accuracy": float("nan")},
        {"run_id": "best", "test_accuracy": 0.9},
        {"run_id": "failed", "test_accuracy": None},
        {"run_id": "worst", "test_accuracy": 0.0},
    ]
    ranked = [row["run_id"] for row in best_first(rows)]
    assert ranked == ["best", "good", "worst", "queued", "table cell", "failed"]
    assert [row["run_id"] for row in best_evaluated(rows, 2)] == ["best", "good"]
    assert [row["run_id"] for row in best_evaluated(rows, 5)] == ["best", "good", "worst"]


def test_a_run_trained_again_pairs_with_the_run_it_repeats_its_change_and_noise():
    rows = [
        {"run_id": "again2", "repeats": "gone"},  # the run it repeats was deleted: no pair
        {"run_id": "queued", "repeats": "after", "state": "queued"},
        {"run_id": "after", "repeats": "before", "test_accuracy": 0.95, "test_photos": 2000},
        {"run_id": "other", "test_accuracy": 0.5, "test_photos": 20},
        {"run_id": "before", "test_accuracy": 0.85, "test_photos": 2000},
    ]
    pairs = retrain_pairs(rows)
    assert [(p["before"]["run_id"], p["after"]["run_id"]) for p in pairs] == [
        ("after", "queued"),
        ("before", "after"),
    ]
    assert (pairs[0]["change"], pairs[0]["within_noise"]) == (None, None)  # not evaluated yet
    assert pairs[1]["change"] == pytest.approx(0.10) and pairs[1]["within_noise"] is False
    small = retrain_pairs([{**rows[2], "test_photos": 20}, {**rows[4], "test_photos": 20}])
    assert small[0]["within_noise"] is True  # the same +10 points on 20 photos each
