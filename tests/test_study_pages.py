"""The study button and the sweep panel (Train page), and studies and sweeps as they fill, with
the best by validation started as a new run (Compare page), under Streamlit's AppTest."""

import json

import pytest

from flower_core.config import make_config
from flower_core.groups import group as groups
from flower_core.models.backbones import ready_offline
from flower_core.store.runs import (
    CONFIG,
    HISTORY,
    METRICS,
    RunStore,
    append_jsonl,
    peek_status,
    read_json,
    write_json,
)
from flower_core.training import jobs
from flower_core.training.progress import update_status

from .test_app_pages import app_env, assert_clean, open_page, synthetic, texts  # noqa: F401


def _finish(run_dir, val: float, test: float) -> None:
    """Give a queued run the files a finished one has (the display is what is tested)."""
    append_jsonl(
        run_dir / HISTORY,
        {
            "epoch": 0,
            "loss": 1.0,
            "accuracy": 0.5,
            "val_loss": 1.0,
            "val_accuracy": val,
            "lr": 1e-3,
            "seconds": 0.5,
        },
    )
    write_json(run_dir / METRICS, {"test_accuracy": test, "test_loss": 0.5})
    update_status(run_dir, state="done")


def _frame(at, column: str):
    """The page's table that has `column`."""
    [frame] = [df.value for df in at.dataframe if column in df.value.columns]
    return frame


def _queue_study(at):
    at.selectbox(key="study_backbone").set_value("mobilenet")
    at.selectbox(key="study_weights").set_value("none")
    at.selectbox(key="study_size").set_value(32)
    at.number_input(key="study_seeds").set_value(2).run()
    assert "14 runs, about" in texts(at.caption)
    at.button(key="study_start").click().run()
    assert_clean(at)
    [record] = groups.list_groups()
    return record


@pytest.mark.usefixtures("synthetic")
def test_the_study_button_queues_one_group_and_compare_shows_it_filling(no_worker):
    record = _queue_study(open_page("pages/2_Train.py"))
    assert len(record["runs"]) == 14 and len(no_worker) == 1
    run_dirs = groups.group_run_dirs(None, record["id"])
    assert {read_json(d / CONFIG)["image_size"] for d in run_dirs} == {32}

    at = open_page("pages/3_Compare.py")
    cells = _frame(at, "ours (mean ± sd)")
    assert list(cells["ours (mean ± sd)"]) == ["2 queued"] * 7 and "–" not in set(cells["ours (mean ± sd)"])
    for index, run_dir in enumerate(run_dirs[:13]):
        _finish(run_dir, 0.5, 0.6 + 0.1 * (index % 2))
    update_status(run_dirs[13], state="running")
    at.run()
    cells = _frame(at, "ours (mean ± sd)")
    assert list(cells["ours (mean ± sd)"][:6]) == ["65.0% ± 7.1%"] * 6
    assert cells["ours (mean ± sd)"][6] == "60.0% (1 training)" and cells["study"][0] == "82.1%"
    assert cells["study's gain"][1] == "-1.5%" and cells["our gain"][1] == "+0.0%"
    figure = at.get("plotly_chart")
    assert any("error_y" in element.proto.spec for element in figure)


@pytest.mark.usefixtures("synthetic")
def test_a_study_is_cancelled_and_deleted_from_compare(no_worker):
    record = _queue_study(open_page("pages/2_Train.py"))
    first = groups.group_run_dirs(None, record["id"])[0]
    _finish(first, 0.5, 0.6)
    at = open_page("pages/3_Compare.py")
    at.button(key="compare_study_cancel").click().run()
    states = [peek_status(d).state for d in groups.group_run_dirs(None, record["id"])]
    assert states == ["done"] + ["cancelled"] * 13
    at.checkbox(key="compare_study_confirm").check().run()
    at.button(key="compare_study_delete").click().run()
    assert_clean(at)
    assert RunStore().run_dirs() == [] and groups.list_groups() == []


@pytest.mark.usefixtures("synthetic")
def test_the_launchers_open_on_backbones_that_train_here_and_the_sweeps_follows_its_preset(no_worker):
    at = open_page("pages/2_Train.py")
    assert at.selectbox(key="study_backbone").value in ready_offline()
    at.selectbox(key="sweep_preset").set_value("best").run()
    assert at.selectbox(key="sweep_best_backbone").value == make_config("best").backbone
    at.selectbox(key="sweep_best_backbone").set_value("efficientnet_lite2").run()
    at.selectbox(key="sweep_preset").set_value("dropout20").run()
    assert at.selectbox(key="sweep_dropout20_backbone").value in ready_offline()
    assert at.selectbox(key="sweep_dropout20_backbone").value != "efficientnet_lite2"


@pytest.mark.usefixtures("synthetic")
def test_a_sweep_is_planned_shown_and_its_best_by_validation_started(no_worker):
    at = open_page("pages/2_Train.py")
    at.selectbox(key="sweep_preset").set_value("dropout20").run()
    at.selectbox(key="sweep_dropout20_backbone").set_value("mobilenet")
    at.selectbox(key="sweep_weights").set_value("none")
    at.selectbox(key="sweep_size").set_value(32)
    at.text_input(key="sweep_values_dropout").set_value("0.1,0.3")
    at.multiselect(key="sweep_settings").select("pooling").run()
    at.multiselect(key="sweep_values_pooling").select("avg").run()
    assert "4 runs, about" in texts(at.caption)
    at.text_input(key="sweep_values_dropout").set_value("0.1,nope").run()
    assert "Cannot start the sweep: dropout takes a value of type float. Received: dropout='nope'" in texts(
        at.warning
    )
    assert at.button(key="sweep_start").disabled
    at.text_input(key="sweep_values_dropout").set_value("0.1,0.3").run()
    at.button(key="sweep_start").click().run()
    assert_clean(at)
    [record] = groups.list_groups()
    rows = groups.group_rows(None, record["id"])
    # the best test accuracy is not the best validation accuracy: the page must choose by validation
    scores = {
        "dropout=0.1 pooling=max": (0.5, 0.9),
        "dropout=0.1 pooling=avg": (0.8, 0.6),
        "dropout=0.3 pooling=max": (0.6, 0.7),
    }
    for row in rows:
        if row["group_label"] in scores:
            _finish(RunStore().path(row["run_id"]), *scores[row["group_label"]])

    at = open_page("pages/3_Compare.py")
    table = _frame(at, "combination")
    assert list(table["combination"][:2]) == ["dropout=0.1 pooling=avg", "dropout=0.3 pooling=max"]
    assert "Best by validation accuracy: **dropout=0.1 pooling=avg**" in texts(at.success)
    at.button(key="compare_sweep_best").click().run()
    assert_clean(at)
    [new] = [d for d in jobs.queued_runs() if not read_json(d / CONFIG).get("group")]
    stored = json.loads((new / CONFIG).read_text())
    assert (stored["dropout"], stored["pooling"], stored["preset"], stored["seed"]) == (
        0.1,
        "avg",
        "dropout20",
        0,
    )
    assert (stored["weights"], stored["image_size"], stored["backbone"]) == ("none", 32, "mobilenet")


@pytest.mark.usefixtures("synthetic")
def test_compare_follows_queued_and_training_runs_until_they_finish(no_worker):
    record = _queue_study(open_page("pages/2_Train.py"))
    assert jobs.active_runs() == {run_id: "queued" for run_id in record["runs"]}
    at = open_page("pages/3_Compare.py")
    assert "0 training, 14 queued: this page updates as they finish." in texts(at.caption)
    for run_dir in groups.group_run_dirs(None, record["id"]):
        _finish(run_dir, 0.5, 0.6)
    assert jobs.active_runs() == {}
    at.run()
    assert "this page updates" not in texts(at.caption)
