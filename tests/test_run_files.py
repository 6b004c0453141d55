"""The run files' records (`flower_core.store.run_files`), read from JSON as a file holds it: every type
checked, every number finite (Python's json reads NaN and Infinity), one line naming the field;
fields older runs lack read as their defaults, and older layouts go through `migrate`."""

import dataclasses
import json

import numpy as np
import pytest

from flower_core.config import TrainConfig, make_config
from flower_core.errors import FlowerError
from flower_core.evaluation.calibration import confidence_threshold
from flower_core.evaluation.evaluate import summarise
from flower_core.store.run_files import (
    Calibration,
    Facts,
    HistoryRow,
    Meta,
    Metrics,
    RunConfig,
    Status,
    Threshold,
    history_rows,
    migrate,
)
from flower_core.training.progress import Throughput


@pytest.mark.parametrize(
    "record, data, reason",
    [
        (Status, {"epochs": "y"}, "'epochs' should be an integer, found str \"y\""),
        (Status, {"eta": float("nan")}, "'eta' should be a finite number, found float NaN"),
        (Status, {"extraction": {"photos_done": 1.5}}, "'extraction.photos_done' should be an integer"),
        (Meta, {"tags": "a,b"}, "'tags' should be a list, found str"),
        (Facts, {"split_sizes": {"train": True}}, "'split_sizes.train' should be an integer, found bool"),
        (
            Metrics,
            {"test_accuracy": float("inf")},
            "'test_accuracy' should be a finite number, found float Infinity",
        ),
        (Metrics, {"per_class": {"a": {"recall": "x"}}}, "'per_class.a.recall' should be a number"),
        (Metrics, {"misclassified": [{"path": "a/1.jpg"}]}, "'misclassified[0].true_class' is missing"),
        (HistoryRow, {"seconds": 1.0}, "'epoch' is missing"),
        (HistoryRow, {"epoch": 1, "seconds": "z"}, "'seconds' should be a number, found str \"z\""),
        (Status, [1, 2], "expected a JSON object, found list"),
    ],
)
def test_a_wrong_value_is_one_line_naming_the_file_and_the_field(record, data, reason):
    with pytest.raises(FlowerError) as caught:
        record.from_json(data, "runs/x/file.json")
    assert str(caught.value).startswith(f"corrupt run file runs/x/file.json: {reason}")
    assert "\n" not in str(caught.value)


def test_every_train_config_setting_is_checked_against_its_type():
    for field in dataclasses.fields(TrainConfig):
        with pytest.raises(FlowerError, match=f"config.json: '{field.name}' should be"):
            RunConfig.from_json({field.name: {"not": "a setting"}}, "config.json")
    with pytest.raises(FlowerError, match="'dropout' should be a finite number, found float NaN"):
        RunConfig.from_json({"dropout": float("nan")}, "config.json")
    config = make_config("best")
    stored = {**config.to_json(), "data_root": "/d", "group": "study-1", "share_split": True}
    assert RunConfig.from_json(stored, "config.json") == RunConfig(
        config, data_root="/d", group="study-1", share_split=True
    )


def test_metrics_whose_confusion_does_not_match_the_classes_are_corrupt():
    with pytest.raises(FlowerError, match="'confusion' should be 2 x 2, one row and column per class"):
        Metrics.from_json({"class_names": ["a", "b"], "confusion": [[1, 2, 3]]}, "metrics.json")


@pytest.mark.parametrize(
    "line",
    [
        '{"epoch": 2, "seconds": "z"}',
        '{"epoch": 2, "seconds": NaN}',
        '{"epoch": 2, "loss": Infinity}',
        '{"epoch": "2"}',
        '{"loss": 0.5}',
        "[2]",
        '{"epoch": 2, "lo',
    ],
)
def test_an_epoch_line_that_is_torn_or_wrong_is_left_out(line):
    text = f'{{"epoch": 1, "seconds": 2}}\n{line}\n{{"epoch": 3, "seconds": 1.5}}\n'
    assert history_rows(text) == (HistoryRow(epoch=1, seconds=2.0), HistoryRow(epoch=3, seconds=1.5))


def test_what_training_writes_reads_back_as_written():
    probabilities = np.array([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4]])
    written = summarise(probabilities, [0, 1, 1], ["a", "b"], ["a/1.jpg", "b/2.jpg", "b/3.jpg"])
    written["confidence"] = confidence_threshold(probabilities, [0, 1, 1])
    metrics = Metrics.from_json(json.loads(json.dumps(written)), "metrics.json")
    assert {k: v for k, v in metrics.to_json().items() if k in written} == written
    assert metrics.confused_cells() == [("b", "a", 1)]
    assert [m.path for m in metrics.mistakes("b", "a")] == ["b/3.jpg"] and metrics.mistakes("a", "b") == []
    skipped = Metrics.from_json({**written, "skipped": [{"path": "b/4.jpg"}]}, "metrics.json")
    test = ["a/1.jpg", "b/2.jpg", "b/3.jpg", "b/4.jpg"]  # b/4.jpg could not be read
    assert (skipped.right("a", test), skipped.right("b", test)) == (["a/1.jpg"], ["b/2.jpg"])
    assert metrics.evaluated and metrics.threshold == written["confidence"]["threshold"]
    facts = {
        "class_names": ["a", "b"],
        "dataset_fingerprint": "f",
        "skipped_files": [["a/x.jpg", "why"]],
        "split_sizes": {"train": 1, "val": 1, "test": 0},
        "augment_cache": "views",
    }
    assert Facts.from_json(facts, "facts.json").to_json() == facts
    extraction = Throughput("train features").update(0, 10)
    status = Status().merged("status.json", state="running", extraction=extraction)
    assert status.extraction.photos_total == 10 and status.to_json()["extraction"] == {
        k: v for k, v in extraction.items() if v is not None
    }


def test_a_status_merged_for_writing_is_checked_as_its_readers_check_it():
    with pytest.raises(FlowerError, match="'eta' should be a finite number"):
        Status().merged("status.json", eta=float("nan"))
    with pytest.raises(TypeError):
        Status().merged("status.json", etaa=1.0)


def test_fields_older_files_lack_read_as_their_defaults():
    assert Status.from_json({}, "status.json") == Status(state="unknown", epoch=0, message="")
    old = Metrics.from_json({"test_accuracy": 0.5}, "metrics.json")
    assert (old.threshold, old.calibration, old.evaluated, old.confused_cells()) == (None, None, False, [])
    assert HistoryRow.from_json({"epoch": 1}, "history.jsonl").phase == "train"
    assert Meta.from_json({}, "meta.json") == Meta(name=None, tags=())
    assert RunConfig.from_json({"preset": "base"}, "config.json").settings == TrainConfig(preset="base")


def test_one_function_turns_older_layouts_into_todays():
    assert migrate({"preset": "base"}, None) == ({"preset": "base", "augment_cache": "views"}, {})
    old = {"augment_cache": "maps", "class_names": ["a"], "split_sizes": {"train": 2}}
    facts = {"class_names": ["a"], "split_sizes": {"train": 2}, "augment_cache": "maps"}
    assert migrate(old, None) == (old, facts)
    assert migrate(old, {"class_names": ["b"]})[1] == {"class_names": ["b"]}


def test_records_round_trip_through_json():
    records = [
        Status(state="running", epoch=2, heartbeat=1.5, kept_epoch=1),
        Meta(name="n", tags=("a",)),
        Metrics(calibration=Calibration(ece=0.1), confidence=Threshold(threshold=0.8)),
        Facts(class_names=("a",), skipped_files=(("a/x.jpg", "why"),)),
        HistoryRow(epoch=3, loss=0.2),
    ]
    for record in records:
        assert type(record).from_json(json.loads(json.dumps(record.to_json())), "x.json") == record
