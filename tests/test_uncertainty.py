"""A 95% Wilson interval beside every test accuracy; differences within it are called noise; a
sweep's tie is a tie."""

import numpy as np
import pytest

from flower_core.config import make_config
from flower_core.errors import FlowerError
from flower_core.evaluation.compare import table_rows
from flower_core.evaluation.evaluate import format_metrics, summarise
from flower_core.evaluation.uncertainty import accuracy_text, wilson_interval, within_noise
from flower_core.groups.study import study_table, table_cells
from flower_core.groups.sweep import best_by_validation, best_config, leaders, sweep_results


@pytest.mark.parametrize(
    "right, n, expected",
    # Published Wilson intervals (e.g. Newcombe 1998, table I; R's binom::binom.confint "wilson").
    [
        (18, 20, (0.6990, 0.9721)),
        (0, 10, (0.0, 0.2775)),
        (10, 10, (0.7225, 1.0)),
        (81, 263, (0.2553, 0.3662)),
    ],
)
def test_wilson_interval_matches_published_values(right, n, expected):
    assert wilson_interval(right / n, n) == pytest.approx(expected, abs=1e-4)


def test_noise_shrinks_with_more_photos():
    assert within_noise(0.85, 0.90, 20) and not within_noise(0.85, 0.90, 2000)
    # On two test sets each accuracy has its own interval: the small set's is wide enough.
    assert within_noise(0.85, 0.90, 2000, 20) and within_noise(0.90, 0.85, 20, 2000)
    assert not within_noise(0.85, 0.90, 2000, 2000)
    assert within_noise(0.5, 0.5, 10**6)
    assert accuracy_text(0.9, 20) == "90.0% (95% CI 70–97% on 20 photos)"
    assert accuracy_text(0.9, None) == "90.0%" and accuracy_text(None, 20) == "–"


def _run(preset, seed, acc, photos):
    return {
        "preset": preset,
        "seed": seed,
        "state": "done",
        "test_accuracy": acc,
        "test_loss": 0.5,
        "test_photos": photos,
        "group_label": preset,
    }


@pytest.mark.parametrize("photos, noise", [(20, True), (4000, False)])
def test_a_study_gain_says_when_it_is_within_noise(photos, noise):
    table = {
        r["preset"]: r
        for r in study_table([_run("base", 0, 0.85, photos), _run("dropout50", 0, 0.90, photos)])
    }
    step = table["dropout50"]
    assert step["gain"] == pytest.approx(0.05) and step["gain_within_noise"] is noise
    assert step["interval"] == pytest.approx(wilson_interval(0.90, photos))
    cells = {c["preset"]: c for c in table_cells(list(table.values()))}
    assert cells["dropout50"]["our gain"] == "+5.0%" + (" (within noise)" if noise else "")
    assert cells["dropout50"]["mean, 95% CI"] == accuracy_text(0.90, photos)


def _combo(label, dropout, val, photos):
    return {
        "run_id": label,
        "group_label": label,
        "state": "done",
        "best_val_accuracy": val,
        "test_accuracy": val,
        "val_photos": photos,
        "test_photos": photos,
        "config": make_config("base", dropout=dropout).to_json(),
    }


def test_a_sweep_s_tie_is_a_tie():
    close = [
        _combo("dropout=0.2", 0.2, 0.90, 20),
        _combo("dropout=0.5", 0.5, 0.85, 20),
        _combo("dropout=0.7", 0.7, 0.40, 20),
    ]
    assert [r["combination"] for r in leaders(close, ["dropout"])] == ["dropout=0.2", "dropout=0.5"]
    assert best_by_validation(close, ["dropout"]) is None
    with pytest.raises(FlowerError, match="no single best: dropout=0.2, dropout=0.5 are within"):
        best_config(close, ["dropout"])
    equal = [_combo("dropout=0.2", 0.2, 0.9, 5000), _combo("dropout=0.5", 0.5, 0.9, 5000)]
    assert best_by_validation(equal, ["dropout"]) is None and len(leaders(equal, ["dropout"])) == 2
    clear = [_combo("dropout=0.2", 0.2, 0.90, 5000), _combo("dropout=0.5", 0.5, 0.85, 5000)]
    assert best_by_validation(clear, ["dropout"])["combination"] == "dropout=0.2"
    results = sweep_results(clear, ["dropout"])
    assert [r["leader"] for r in results] == [True, False]
    assert results[0]["test_interval"] == pytest.approx(wilson_interval(0.90, 5000))


def test_the_runs_table_and_the_cli_show_the_interval():
    [row] = table_rows([{"test_accuracy": 0.9, "test_photos": 20}])
    assert row["test_ci"] == "70–97%"
    assert table_rows([{"test_accuracy": None, "test_photos": None}])[0]["test_ci"] == ""
    labels = np.arange(20) % 2
    predicted = np.where(np.arange(20) < 2, 1 - labels, labels)  # 18 of 20 right
    metrics = summarise(np.eye(2)[predicted], labels, ["daisy", "rose"], [f"{i}.jpg" for i in range(20)])
    assert "accuracy 90.00% (95% CI 70–97% on 20 photos)" in format_metrics(metrics)
