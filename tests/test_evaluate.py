"""Evaluation: the metrics math on a hand-computed case, a run on its test split and on a folder
with a subset of its classes, unreadable files, and the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from flower_core.errors import FlowerError
from flower_core.evaluation.evaluate import (
    confusion_matrix,
    evaluate_model,
    evaluate_run,
    format_metrics,
    summarise,
)
from flower_core.evaluation.predict import load_run, predict_paths
from flower_core.store.run_files import Metrics

CLASSES = ["daisy", "rose", "tulip"]


def _dataset(root: Path, per_class: dict[str, int]) -> list[str]:
    files = []
    for c, (name, count) in enumerate(per_class.items()):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            array = np.random.default_rng([c, i]).integers(0, 256, (48, 56, 3), np.uint8)
            Image.fromarray(array).save(root / name / f"{i}.png")
            files.append(f"{name}/{i}.png")
    return files


def test_metrics_on_a_hand_computed_case():
    # true:      daisy daisy rose rose tulip tulip
    # predicted: daisy rose  rose rose tulip daisy
    probabilities = np.array(
        [
            [0.8, 0.1, 0.1],
            [0.3, 0.6, 0.1],
            [0.1, 0.8, 0.1],
            [0.2, 0.5, 0.3],
            [0.1, 0.1, 0.8],
            [0.9, 0.05, 0.05],
        ]
    )
    files = [f"f{i}.jpg" for i in range(6)]
    metrics = summarise(probabilities, [0, 0, 1, 1, 2, 2], CLASSES, files)
    assert metrics["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert metrics["test_accuracy"] == pytest.approx(4 / 6)
    expected_loss = -np.mean(np.log([0.8, 0.3, 0.8, 0.5, 0.8, 0.05]))
    assert metrics["test_loss"] == pytest.approx(expected_loss)
    report = metrics["per_class"]
    assert report["daisy"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert report["rose"] == pytest.approx({"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2})
    assert report["tulip"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})
    wrong = metrics["misclassified"]
    assert [row["path"] for row in wrong] == ["f5.jpg", "f1.jpg"]  # by loss, highest first
    assert wrong[0] == pytest.approx(
        {
            "path": "f5.jpg",
            "true_class": "tulip",
            "predicted_class": "daisy",
            "confidence": 0.9,
            "true_probability": 0.05,
            "loss": -math.log(0.05),
        }
    )
    assert metrics["most_confused"][0]["count"] == 1
    json.dumps(metrics)


def test_every_confusion_cell_with_mistakes_comes_with_its_photos_most_confused_first():
    """Four classes, seven cells with mistakes (more than `most_confused` keeps in the metrics)."""
    names = ["daisy", "rose", "tulip", "iris"]
    pairs = [(0, 1), (0, 1), (0, 1), (0, 2), (1, 0), (1, 0), (2, 3), (3, 0), (3, 1), (3, 2), (1, 1)]
    labels = [true for true, _ in pairs]
    probabilities = np.full((len(pairs), 4), 0.1)
    probabilities[np.arange(len(pairs)), [predicted for _, predicted in pairs]] = 0.7
    files = [f"{names[true]}/{i}.jpg" for i, (true, _) in enumerate(pairs)]
    metrics = Metrics.from_json(summarise(probabilities, labels, names, files), "metrics.json")
    cells = metrics.confused_cells()
    assert cells == [
        ("daisy", "rose", 3),
        ("rose", "daisy", 2),
        ("daisy", "tulip", 1),
        ("tulip", "iris", 1),
        ("iris", "daisy", 1),
        ("iris", "rose", 1),
        ("iris", "tulip", 1),
    ]
    assert sorted(m.path for m in metrics.mistakes("daisy", "rose")) == [
        "daisy/0.jpg",
        "daisy/1.jpg",
        "daisy/2.jpg",
    ]
    assert all(len(metrics.mistakes(true, predicted)) == count for true, predicted, count in cells)


def test_empty_class_gives_zero_not_nan():
    metrics = summarise(np.array([[0.9, 0.1, 0.0]]), [0], CLASSES, ["a.jpg"])
    assert metrics["per_class"]["rose"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert confusion_matrix([0, 2], [1, 2], 3).tolist() == [[0, 1, 0], [0, 0, 0], [0, 0, 1]]


def test_evaluate_model_skips_unreadable_and_agrees_with_predict(tiny_classifier_run, tmp_path):
    files = _dataset(tmp_path, {"daisy": 3, "rose": 2, "tulip": 2})
    (tmp_path / "rose" / "cut.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    model, class_names = load_run(tiny_classifier_run)
    seen = []
    metrics = evaluate_model(
        model,
        class_names,
        tmp_path,
        [*files, "rose/cut.jpg"],
        batch_size=3,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert metrics["num_files"] == 7 and seen[-1] == (8, 8)
    assert [row["path"] for row in metrics["skipped"]] == ["rose/cut.jpg"]
    assert sum(map(sum, metrics["confusion"])) == 7
    predicted = predict_paths(tiny_classifier_run, [tmp_path / f for f in files])
    correct = [p["predicted_class"] == f.split("/")[0] for p, f in zip(predicted, files, strict=True)]
    assert metrics["test_accuracy"] == pytest.approx(np.mean(correct))
    assert len(metrics["misclassified"]) == correct.count(False)
    losses = [row["loss"] for row in metrics["misclassified"]]
    assert losses == sorted(losses, reverse=True)


def test_evaluate_run_on_its_test_split(tiny_run_factory, tmp_path):
    files = _dataset(tmp_path / "data", {"daisy": 2, "rose": 2, "tulip": 2})
    split = {"seed": 0, "train": files[1::2], "val": [], "test": files[::2]}
    run = tiny_run_factory("split_run", data_root=tmp_path / "data", split=split)
    metrics = evaluate_run(run)
    assert metrics["source"] == "test split" and metrics["num_files"] == 3
    assert {name: row["support"] for name, row in metrics["per_class"].items()} == dict.fromkeys(CLASSES, 1)
    assert "accuracy" in format_metrics(metrics)


def test_evaluate_run_on_a_folder_with_a_subset_of_classes(tiny_classifier_run, tmp_path):
    _dataset(tmp_path, {"daisy": 2, "sunflower": 3, "tulip": 1})
    metrics = evaluate_run(tiny_classifier_run, tmp_path)
    assert metrics["source"] == "folder" and metrics["ignored_classes"] == ["sunflower"]
    assert metrics["num_files"] == 3 and metrics["class_names"] == CLASSES
    assert [row["support"] for row in metrics["per_class"].values()] == [2, 0, 1]
    assert len(metrics["confusion"]) == 3


def test_folder_without_the_runs_classes_and_run_without_split(tiny_classifier_run, tmp_path):
    _dataset(tmp_path / "other", {"cactus": 1, "fern": 1})
    with pytest.raises(FlowerError, match=r"\(daisy, rose, tulip\)\. Received: folders cactus, fern"):
        evaluate_run(tiny_classifier_run, tmp_path / "other")
    with pytest.raises(FlowerError, match="no dataset or split.json: pass --data"):
        evaluate_run(tiny_classifier_run)
    with pytest.raises(FlowerError, match="dataset folder not found"):
        evaluate_run(tiny_classifier_run, tmp_path / "missing")


def test_cli_evaluate_json_and_bad_input(tiny_classifier_run, tmp_path, capsys):
    from flower_core.cli import main

    _dataset(tmp_path, {"rose": 2, "tulip": 2})
    assert main(["evaluate", "--run", str(tiny_classifier_run), "--data", str(tmp_path), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert payload["num_files"] == 4 and 0.0 <= payload["test_accuracy"] <= 1.0
    assert main(["evaluate", "--run", str(tiny_classifier_run), "--data", str(tmp_path / "no")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: dataset folder not found") and error.count("\n") == 1
