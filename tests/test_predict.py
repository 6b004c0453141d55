"""Prediction: top-k, the low-confidence flag, batch prediction of files and folders, CSV, CLI."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from flower_core.errors import FlowerError
from flower_core.evaluation import predict
from flower_core.evaluation.predict import (
    MIN_TOP_PROBABILITY,
    assess,
    describe,
    load_run,
    predict_image,
    predict_paths,
    predictions_table,
    run_threshold,
    to_csv,
)

CLASSES = ["daisy", "rose", "tulip"]


def _photos(folder: Path, count: int = 3) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        array = np.random.default_rng(i).integers(0, 256, (40 + i, 60, 3), np.uint8)
        path = folder / f"photo_{i}.jpg"
        Image.fromarray(array).save(path)
        paths.append(path)
    return paths


def test_describe_orders_top_k_and_keeps_every_probability():
    record = describe(np.array([0.1, 0.7, 0.2]), CLASSES, top_k=2)
    assert [t["class"] for t in record["top_k"]] == ["rose", "tulip"]
    assert record["predicted_class"] == "rose" and record["probability"] == pytest.approx(0.7)
    assert sum(record["probabilities"].values()) == pytest.approx(1.0)
    assert len(describe(np.array([0.1, 0.7, 0.2]), CLASSES, top_k=10)["top_k"]) == 3
    with pytest.raises(FlowerError, match="Received: top_k=0"):
        describe(np.array([0.1, 0.7, 0.2]), CLASSES, top_k=0)


def test_low_confidence_is_the_run_threshold_and_says_the_model_is_unsure():
    uniform = assess(np.full(5, 0.2))
    assert uniform["low_confidence"] and uniform["normalised_entropy"] == pytest.approx(1.0)
    assert uniform["reason"] == (
        f"the model is unsure: top probability 0.20 is below this run's threshold {MIN_TOP_PROBABILITY:.2f}"
    )
    assert "not be one of these flowers" not in uniform["reason"]
    assert not assess(np.array([0.8, 0.05, 0.05, 0.05, 0.05]))["low_confidence"]
    assert assess(np.array([0.8, 0.1, 0.1]), threshold=0.85)["low_confidence"]
    assert not assess(np.array([0.62, 0.14, 0.12, 0.12]))["low_confidence"]  # spread, yet above
    sure = assess(np.array([1.0, 0.0, 0.0]))
    assert sure["entropy"] == 0.0 and not sure["low_confidence"] and sure["reason"] == ""


def test_run_threshold_comes_from_the_runs_metrics_else_the_old_constant(tmp_path):
    assert run_threshold(tmp_path) == MIN_TOP_PROBABILITY
    (tmp_path / "metrics.json").write_text(json.dumps({"confidence": {"threshold": 0.83}}))
    assert run_threshold(tmp_path) == 0.83
    (tmp_path / "metrics.json").write_text("{torn")
    assert run_threshold(tmp_path) == MIN_TOP_PROBABILITY


def test_predict_paths_uses_the_runs_threshold(tiny_run_factory, tmp_path):
    run_dir = tiny_run_factory("strict")
    photo = _photos(tmp_path / "in", 1)[0]
    (run_dir / "metrics.json").write_text(json.dumps({"confidence": {"threshold": 0.0}}))
    assert not predict_paths(run_dir, [photo])[0]["low_confidence"]
    (run_dir / "metrics.json").write_text(json.dumps({"confidence": {"threshold": 1.0}}))
    result = predict_paths(run_dir, [photo])[0]
    assert result["low_confidence"] and result["threshold"] == 1.0


def test_uniform_output_model_is_flagged(tiny_run_factory, tmp_path):
    model, class_names = load_run(tiny_run_factory("uniform"))
    dense = model.get_layer("predictions")
    dense.set_weights([np.zeros_like(w) for w in dense.get_weights()])
    photo = _photos(tmp_path / "in", 1)[0]
    result = predict_image(model, class_names, photo, top_k=3)
    assert [t["probability"] for t in result["top_k"]] == pytest.approx([1 / 3] * 3)
    assert result["low_confidence"] and result["normalised_entropy"] == pytest.approx(1.0)
    assert result["entropy"] == pytest.approx(math.log(3))


def test_predict_image_accepts_path_bytes_and_file(tiny_classifier_run, tmp_path):
    model, class_names = load_run(tiny_classifier_run)
    photo = _photos(tmp_path, 1)[0]
    by_path = predict_image(model, class_names, photo)
    assert by_path == predict_image(model, class_names, photo.read_bytes())
    with open(photo, "rb") as handle:
        assert by_path == predict_image(model, class_names, handle)
    assert sum(by_path["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)


def test_folder_batch_with_a_corrupt_file_and_csv(tiny_classifier_run, tmp_path):
    folder = tmp_path / "album"
    good = _photos(folder / "sub", 3)
    (folder / "broken.jpg").write_bytes(good[0].read_bytes()[:300])
    (folder / "notes.txt").write_text("skipped: not a photo")
    (folder / ".hidden.jpg").write_bytes(good[0].read_bytes())
    results = predict_paths(tiny_classifier_run, [folder, good[1]], top_k=2, batch_size=2)
    assert len(results) == 5
    errors = [r for r in results if "error" in r]
    assert [Path(r["path"]).name for r in errors] == ["broken.jpg"]
    assert "unreadable" in errors[0]["error"]
    for result in results:
        if "error" not in result:
            assert len(result["top_k"]) == 2
            assert result["top_k"][0]["probability"] >= result["top_k"][1]["probability"]
    csv = to_csv(results, tmp_path / "out" / "predictions.csv")
    table = pd.read_csv(csv)
    assert len(table) == 5 and list(table.columns[:6]) == list(predictions_table(results).columns[:6])
    assert {"p_daisy", "p_rose", "p_tulip"} <= set(table.columns)
    assert table["error"].fillna("").str.contains("unreadable").sum() == 1


def test_batch_order_and_results_match_single_predictions(tiny_classifier_run, tmp_path):
    photos = _photos(tmp_path, 5)
    model, class_names = load_run(tiny_classifier_run)
    batched = predict_paths(tiny_classifier_run, photos, batch_size=2)
    for photo, result in zip(photos, batched, strict=True):
        single = predict_image(model, class_names, photo)
        assert result["path"] == str(photo)
        assert result["probabilities"] == pytest.approx(single["probabilities"], abs=1e-5)


def test_nothing_readable_or_found_is_an_error(tiny_classifier_run, tmp_path):
    (tmp_path / "bad.jpg").write_text("not a photo")
    with pytest.raises(FlowerError, match="no readable image: .*bad.jpg: not an image"):
        predict_paths(tiny_classifier_run, [tmp_path / "bad.jpg"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(FlowerError, match="no images found"):
        predict_paths(tiny_classifier_run, [tmp_path / "empty"])
    with pytest.raises(FlowerError, match="not a run folder"):
        predict_paths(tmp_path, [tmp_path / "bad.jpg"])


def test_cli_predict_json_and_bad_input(tiny_classifier_run, tmp_path, capsys):
    from flower_core.cli import main

    photos = _photos(tmp_path, 2)
    assert (
        main(["predict", "--run", str(tiny_classifier_run), *map(str, photos), "--top-k", "2", "--json"]) == 0
    )
    payload = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [len(p["top_k"]) for p in payload["predictions"]] == [2, 2]
    assert main(["predict", "--run", str(tiny_classifier_run), str(tmp_path / "missing.jpg")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: no readable image") and error.count("\n") == 1


def test_cli_predict_in_a_subprocess(tiny_classifier_run, tmp_path):
    """The real entry point: the last stdout line is JSON; bad input exits 2 with one line."""
    photo = _photos(tmp_path, 1)[0]
    command = [sys.executable, "-m", "flower_core", "predict", "--run", str(tiny_classifier_run)]
    root = Path(predict.__file__).resolve().parents[2]
    done = subprocess.run(
        [*command, str(photo), "--json"], capture_output=True, text=True, cwd=root, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["predictions"][0]["path"] == str(photo)
    (tmp_path / "empty.jpg").write_bytes(b"")
    failed = subprocess.run(
        [*command, str(tmp_path / "empty.jpg")], capture_output=True, text=True, cwd=root, timeout=120
    )
    assert failed.returncode == 2
    assert failed.stderr.strip().splitlines()[-1].startswith("error: no readable image")
    assert "empty file" in failed.stderr


def test_cli_predicts_folders_into_a_csv_written_whole(tiny_classifier_run, tmp_path, capsys):
    from flower_core.cli import main

    folder = tmp_path / "album"
    _photos(folder / "a", 2)
    _photos(folder / "b", 1)
    out = tmp_path / "predictions.csv"
    out.write_text("an earlier file\n")
    assert main(["predict", "--run", str(tiny_classifier_run), str(folder), "--csv", str(out), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert payload["csv"] == str(out) and len(payload["predictions"]) == 3
    table = pd.read_csv(out)
    assert len(table) == 3 and {"predicted_class", "probability", "low_confidence", "top_k"} <= set(
        table.columns
    )
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == [], "a temp file was left"
    assert (
        main(["predict", "--run", str(tiny_classifier_run), str(tmp_path / "none"), "--csv", str(out)]) == 2
    )
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: no readable image:") and "\n" not in error
    assert len(pd.read_csv(out)) == 3, "a refused input left the earlier CSV whole"


def test_a_zip_of_photos_is_predicted_in_a_folder_that_is_removed(tiny_classifier_run, tmp_path):
    import tempfile
    import zipfile

    from flower_core.errors import FlowerError
    from flower_core.evaluation.predict import predict_zip

    photos = _photos(tmp_path / "src", 3)
    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for photo in photos:
            zipped.write(photo, f"trip/{photo.name}")
        zipped.writestr("trip/notes.txt", "not a photo")
    model, class_names = load_run(tiny_classifier_run)
    before = set(Path(tempfile.gettempdir()).glob("flower-predict-*"))
    results = predict_zip(model, class_names, archive, max_bytes=10**7, top_k=2)
    assert [r["path"] for r in results] == [f"trip/{p.name}" for p in photos]
    assert all(len(r["top_k"]) == 2 for r in results)
    assert set(Path(tempfile.gettempdir()).glob("flower-predict-*")) == before
    with pytest.raises(FlowerError, match="archive refused: it unpacks to more than"):
        predict_zip(model, class_names, archive, max_bytes=10)
