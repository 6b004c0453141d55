"""A run's `config.json` is the settings it was queued with and is never rewritten; what the run
learned when it started (its classes, skipped photos, split sizes, the dataset's fingerprint, how
augmentation was cached) is written once to its own file, `facts.json`. Runs written before that
file existed keep those facts in `config.json` and still list, predict and export."""

import hashlib
import json
from pathlib import Path

import pytest

from flower_core.config import make_config
from flower_core.data.synthetic import CLASSES, generate
from flower_core.errors import FlowerError
from flower_core.evaluation.predict import load_run, predict_paths
from flower_core.store.run_files import Facts
from flower_core.store.runs import CONFIG, FACTS, Run, RunStore, read_json, write_json
from flower_core.training.jobs import create_run
from flower_core.training.train import run_training

from .conftest import _save_tiny_run

FACT_NAMES = {"class_names", "dataset_fingerprint", "skipped_files", "split_sizes"}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def small_set_with_a_broken_photo(tmp_path) -> Path:
    data = tmp_path / "data"
    generate(data, per_class=8, size=32)
    (data / "rose" / "broken.jpg").write_bytes(b"not a jpeg")
    return data


@pytest.mark.slow
def test_training_leaves_config_as_queued_and_writes_its_facts_once(small_set_with_a_broken_photo, tmp_path):
    config = make_config(
        "base", backbone="mobilenet", weights="none", image_size=32, epochs=1, dense_units=[8]
    )
    run_dir = create_run(config, small_set_with_a_broken_photo, tmp_path / "runs")
    queued = _sha(run_dir / CONFIG)
    assert not (run_dir / FACTS).exists() and Run.open(run_dir).facts == Facts()
    seen = []  # facts.json's inode and bytes when the first epoch ends

    def reporter(event):
        if event.get("kind") == "epoch" and not seen:
            seen.append(((run_dir / FACTS).stat().st_ino, (run_dir / FACTS).read_bytes()))

    assert run_training(run_dir, reporter=reporter) == "done"
    assert _sha(run_dir / CONFIG) == queued
    assert not FACT_NAMES & set(read_json(run_dir / CONFIG))
    assert seen == [((run_dir / FACTS).stat().st_ino, (run_dir / FACTS).read_bytes())]
    facts = Run.open(run_dir).facts
    assert FACT_NAMES <= set(read_json(run_dir / FACTS)) and facts.class_names == tuple(CLASSES)
    assert [path for path, _ in facts.skipped_files] == ["rose/broken.jpg"]
    split = read_json(run_dir / "split.json")
    assert facts.split_sizes == {part: len(split[part]) for part in ("train", "val", "test")}
    assert sum(facts.split_sizes.values()) == 8 * len(CLASSES)
    assert len(facts.dataset_fingerprint) == 16 and facts.augment_cache == config.augment_cache


def test_facts_come_from_their_file_or_from_an_old_config(tmp_path):
    store = RunStore(tmp_path / "runs")
    queued = store.create({"preset": "base", "augment": True, "augment_cache": "maps"})
    assert Run.open(queued).facts == Facts()
    new = store.create({"preset": "base", "augment": True, "augment_cache": "maps"})
    write_json(
        new / FACTS, {"class_names": ["a", "b"], "split_sizes": {"train": 4}, "augment_cache": "views"}
    )
    assert Run.open(new).facts.class_names == ("a", "b")
    assert store.summary(new)["augment_cache"] == "views"  # what ran, not what was asked for
    old = store.create(
        {
            "preset": "base",
            "augment": True,
            "augment_cache": "views",
            "class_names": ["c"],
            "dataset_fingerprint": "f",
            "skipped_files": [],
            "split_sizes": {"train": 2},
        }
    )
    assert Run.open(old).facts == Facts(
        class_names=("c",),
        dataset_fingerprint="f",
        skipped_files=(),
        split_sizes={"train": 2},
        augment_cache="views",
    )
    assert store.summary(old)["augment_cache"] == "views"


def test_a_wrong_typed_facts_file_is_a_one_line_reason(tmp_path):
    run_dir = RunStore(tmp_path / "runs").create({"preset": "base"})
    (run_dir / FACTS).write_text(json.dumps({"class_names": "abc"}))
    with pytest.raises(FlowerError, match=f"corrupt run file .*{FACTS}: 'class_names' should be a list"):
        _ = Run.open(run_dir).facts
    (run_dir / FACTS).write_text("{}")
    with pytest.raises(FlowerError, match=f"no class names in {FACTS}"):
        load_run(run_dir)


@pytest.mark.slow
def test_a_run_in_the_old_layout_lists_predicts_and_exports_its_card(synthetic_dataset, tmp_path):
    from flower_core.data.dataset import scan_dataset, split_dataset
    from flower_core.export.card import CARD_JSON
    from flower_core.export.exporter import export_run

    split = split_dataset(scan_dataset(synthetic_dataset)).to_json()
    run_dir = _save_tiny_run(
        tmp_path / "runs" / "20250101-000000-base-mobilenet-old1",
        CLASSES,
        image_size=32,
        data_root=synthetic_dataset,
        split=split,
        layout="old",
    )
    config = json.loads((run_dir / CONFIG).read_text())
    write_json(
        run_dir / CONFIG,
        {
            **config,
            "dataset_fingerprint": "0123456789abcdef",
            "skipped_files": [],
            "split_sizes": {part: len(split[part]) for part in ("train", "val", "test")},
        },
    )
    assert not (run_dir / FACTS).exists()
    [row] = RunStore(tmp_path / "runs").list_runs()
    assert row["run_id"] == run_dir.name and row["state"] != "corrupt" and row["has_model"]
    [result] = predict_paths(run_dir, [synthetic_dataset / split["test"][0]])
    assert result["predicted_class"] in CLASSES
    export_run(run_dir, tmp_path / "export", "saved_model")
    card = json.loads((tmp_path / "export" / CARD_JSON).read_text())
    assert card["classes"] == list(CLASSES) and card["dataset"]["fingerprint"] == "0123456789abcdef"
