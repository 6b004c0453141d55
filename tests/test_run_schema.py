"""Run files read as checked records (`flower_core.store.run_files`): a wrong type or a number that is
not finite (Python's json reads NaN and Infinity) makes the file corrupt, one line naming the file
and the field; the run then shows as corrupt and never takes a page down. Fields older runs lack
read as their defaults, and older layouts go through `run_files.migrate`."""

import json
import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from flower_core.config import TrainConfig
from flower_core.errors import FlowerError
from flower_core.store.run_files import Facts, HistoryRow, Meta, Status
from flower_core.store.runs import HISTORY, STATUS, Run, RunStore, peek_status, stored_status
from flower_core.training.progress import Throughput, update_status

APP = str(Path(__file__).resolve().parents[1] / "app.py")
FINISHED = "20260101-000100-dropout20-mobilenet-bbbb"
# Valid JSON of the wrong type in each run file, and the field the reason names.
WRONG = {
    "metrics": ("metrics.json", {"test_accuracy": "high", "confusion": "abc", "class_names": 5}),
    "config": ("config.json", {"preset": 5, "backbone": ["x"], "image_size": "big", "data_root": 7}),
    "status": ("status.json", {"state": "queued", "epoch": 0, "epochs": "y", "message": "waiting"}),
    "meta": ("meta.json", {"name": 3, "tags": "a,b"}),
    "facts": ("facts.json", {"class_names": "abc", "split_sizes": [1, 2]}),
}
# A number that is not finite in each run file that holds numbers.
NOT_FINITE = {
    "metrics": ("metrics.json", '{"test_accuracy": NaN}', "test_accuracy"),
    "config": ("config.json", '{"preset": "base", "dropout": Infinity}', "dropout"),
    "status": ("status.json", '{"state": "running", "eta": -Infinity}', "eta"),
    "calibration": (
        "metrics.json",
        '{"calibration": {"ece": 0.1, "bins": [{"confidence": NaN, "accuracy": 1, "count": 2}]}}',
        "calibration.bins[0].confidence",
    ),
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
        Run.open(run_dir).check()
    assert "\n" not in str(caught.value) and "should be" in str(caught.value)
    [row] = store.list_runs()
    assert row["state"] == "corrupt" and name in row["message"]
    if case == "status":
        assert peek_status(run_dir).state == "corrupt" and name in peek_status(run_dir).message


@pytest.mark.parametrize("case", list(NOT_FINITE))
def test_a_number_that_is_not_finite_makes_its_file_corrupt(tmp_path, case):
    store = RunStore(tmp_path / "runs")
    run_dir = store.create({"preset": "base", "epochs": 2})
    name, text, field = NOT_FINITE[case]
    (run_dir / name).write_text(text)
    with pytest.raises(
        FlowerError, match=re.escape(f"{name}: '{field}' should be a finite number")
    ) as caught:
        Run.open(run_dir).check()
    assert "\n" not in str(caught.value)
    [row] = store.list_runs()
    assert row["state"] == "corrupt" and f"'{field}'" in row["message"]


def test_a_file_that_is_not_one_object_is_corrupt(tmp_path):
    run_dir = RunStore(tmp_path / "runs").create({"preset": "base"})
    (run_dir / STATUS).write_text("null")
    assert peek_status(run_dir).state == "corrupt"
    assert "expected a JSON object, found NoneType" in peek_status(run_dir).message


@pytest.mark.parametrize("seconds", ['"z"', "NaN"])
def test_an_epoch_line_of_the_wrong_type_never_reaches_a_reader(tmp_path, seconds):
    run_dir = RunStore(tmp_path / "runs").create({"preset": "base"})
    (run_dir / HISTORY).write_text(f'{{"epoch": 1, "seconds": 2}}\n{{"epoch": 2, "seconds": {seconds}}}\n')
    assert Run.open(run_dir).history == (HistoryRow(epoch=1, seconds=2.0),)
    [row] = RunStore(tmp_path / "runs").list_runs()
    assert (row["epochs_done"], row["seconds"]) == (1, 2.0)


def test_a_status_written_by_training_reads_back_as_written(tmp_path):
    run_dir = RunStore(tmp_path / "runs").create({"preset": "base"})
    update_status(run_dir, state="running", extraction=Throughput("train features").update(0, 10))
    status = stored_status(run_dir)
    assert status.extraction.photos_total == 10 and status.pid and status.heartbeat
    assert Status.from_json(json.loads((run_dir / STATUS).read_text()), STATUS) == status


def test_a_writer_never_leaves_a_status_its_readers_refuse(tmp_path):
    run_dir = RunStore(tmp_path / "runs").create({"preset": "base"})
    before = (run_dir / STATUS).read_bytes()
    with pytest.raises(FlowerError, match="'eta' should be a finite number"):
        update_status(run_dir, state="running", eta=float("nan"))
    assert (run_dir / STATUS).read_bytes() == before


def test_fields_older_runs_lack_read_as_their_defaults(tmp_path):
    run_dir = tmp_path / "20250101-000000-base-vgg16-old0"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(
        json.dumps({"preset": "base", "augment": True, "class_names": ["c"]})
    )
    (run_dir / STATUS).write_text(json.dumps({"state": "done"}))
    (run_dir / "metrics.json").write_text(json.dumps({"test_accuracy": 0.5}))
    (run_dir / HISTORY).write_text('{"epoch": 1, "loss": 0.7}\n')
    run = Run.open(run_dir)
    assert run.config.settings.augment_cache == "views" and run.augmented_as == "views"
    assert run.config.data_root is None and run.config.settings.backbone == TrainConfig().backbone
    assert run.facts == Facts(class_names=("c",))
    assert (run.status.state, run.status.stop_reason, run.kept_epoch) == ("done", None, None)
    assert (run.metrics.threshold, run.metrics.calibration, run.metrics.evaluated) == (None, None, False)
    assert run.history == (HistoryRow(epoch=1, phase="train", loss=0.7),)
    assert run.meta == Meta() and run.name == run.id


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
