"""Run files with valid JSON but wrong types (hand-edited, written by another version) show that
run as corrupt with the reason, like garbage files do, and never take a page down."""

import dataclasses
import json
import typing
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from flower_core.config import TrainConfig
from flower_core.errors import FlowerError
from flower_core.store.runs import RunStore, peek_status, read_json, read_record, run_file_schema

APP = str(Path(__file__).resolve().parents[1] / "app.py")
FINISHED = "20260101-000100-dropout20-mobilenet-bbbb"
WRONG = {
    "metrics": ("metrics.json", {"test_accuracy": "high", "confusion": "abc", "class_names": 5}),
    "config": (
        "config.json",
        {"preset": 5, "backbone": ["x"], "image_size": "big", "class_names": "abc", "data_root": 7},
    ),
    "status": ("status.json", {"state": "queued", "epoch": 0, "epochs": "y", "message": "waiting"}),
    "meta": ("meta.json", {"name": 3, "tags": "a,b"}),
    "facts": ("facts.json", {"class_names": "abc", "split_sizes": [1, 2]}),
}


def _plant(run_dir: Path, case: str) -> None:
    name, content = WRONG[case]
    original = json.loads((run_dir / name).read_text()) if (run_dir / name).is_file() else {}
    (run_dir / name).write_text(json.dumps({**original, **content}))


@pytest.mark.parametrize("case", list(WRONG))
def test_wrong_types_are_a_one_line_reason_when_read_and_a_corrupt_row_when_listed(tmp_path, case):
    store = RunStore(tmp_path / "runs")
    run_dir = store.create({"preset": "base", "backbone": "mobilenet", "epochs": 2})
    _plant(run_dir, case)
    name = WRONG[case][0]
    with pytest.raises(FlowerError, match=f"corrupt run file .*{name}: '") as caught:
        read_record(run_dir / name)
    assert "\n" not in str(caught.value) and "should be" in str(caught.value)
    [row] = store.list_runs()
    assert row["state"] == "corrupt" and name in row["message"]
    if case == "status":
        assert peek_status(run_dir)["state"] == "corrupt"


def test_metrics_whose_confusion_does_not_match_the_classes_are_corrupt(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({"class_names": ["a", "b"], "confusion": [[1, 2, 3]]}))
    with pytest.raises(FlowerError, match="'confusion' should be 2 x 2"):
        read_json(path)


def test_files_written_by_training_pass_their_schema(tmp_path):
    from flower_core.config import make_config

    config = {
        **make_config("best").to_json(),
        "data_root": "/d",
        "split_file": None,
        "class_names": ["a", "b"],
        "dataset_fingerprint": "f",
        "skipped_files": [],
        "split_sizes": {"train": 1},
    }
    path = tmp_path / "config.json"  # before facts.json, training added its facts here
    path.write_text(json.dumps(config))
    assert read_json(path) == config
    facts = {
        "class_names": ["a", "b"],
        "dataset_fingerprint": "f",
        "skipped_files": [["a/x.jpg", "why"]],
        "split_sizes": {"train": 1, "val": 1, "test": 0},
        "augment_cache": "views",
    }
    path = tmp_path / "facts.json"
    path.write_text(json.dumps(facts))
    assert read_json(path) == facts


def test_the_config_schema_follows_every_train_config_setting():
    kinds = {str: "str", int: "int", float: "number", bool: "bool", list[int]: "list[int]"}
    hints = typing.get_type_hints(TrainConfig)
    for field in dataclasses.fields(TrainConfig):
        assert run_file_schema("config.json")[field.name] == kinds[hints[field.name]], field.name


def _open(page: str | None, train_run: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    if train_run:
        at.session_state["train_run"] = train_run
    at.run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def _shown(at: AppTest) -> str:
    return " ".join(str(e.value) for e in [*at.warning, *at.error, *at.info, *at.caption])


@pytest.fixture
def app_env(synthetic_dataset, app_runs, tmp_path, monkeypatch):
    import streamlit as st

    monkeypatch.setenv("FLOWER_DATA", str(synthetic_dataset))
    monkeypatch.setenv("FLOWER_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setattr("ui.home.is_online", lambda: False)
    st.cache_data.clear()
    st.cache_resource.clear()
    return app_runs


@pytest.mark.slow
@pytest.mark.parametrize("case", ["metrics", "config", "meta", "facts"])
@pytest.mark.parametrize("page", [None, "pages/2_Train.py", "pages/3_Compare.py", "pages/4_Classify.py"])
def test_pages_show_a_run_with_wrong_typed_files_as_corrupt(app_env, case, page):
    _plant(app_env / FINISHED, case)
    at = _open(page, train_run=FINISHED)
    if page == "pages/3_Compare.py":
        assert f"`{FINISHED}`: corrupt run file" in _shown(at)
    if page == "pages/2_Train.py" and case == "metrics":
        assert "should be" in _shown(at)


@pytest.mark.slow
def test_train_page_survives_a_queued_run_with_wrong_typed_status(app_env):
    run_dir = RunStore(app_env).create({"preset": "base", "backbone": "mobilenet", "epochs": 2})
    _plant(run_dir, "status")
    at = _open("pages/2_Train.py")
    assert "corrupt" not in _shown(at) or "should be" in _shown(at)
