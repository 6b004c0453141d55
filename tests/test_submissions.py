"""One press of Train queues at most one run: a double-click sends the same submission twice,
and the core, not the page, refuses to queue it again."""

import os
import threading
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from flower_core.config import make_config
from flower_core.errors import FlowerError
from flower_core.training import jobs

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def _config():
    return make_config("base", backbone="mobilenet", weights="none", image_size=32, epochs=1)


def test_the_same_token_queues_one_run_even_from_eight_threads_at_once(
    synthetic_dataset, tmp_path, no_worker
):
    runs = tmp_path / "runs"
    results = []
    barrier = threading.Barrier(8)

    def press():
        barrier.wait()
        results.append(jobs.submit(_config(), synthetic_dataset, runs, token="a1b2c3d4e5f6"))

    threads = [threading.Thread(target=press) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 1 and len(results) == 8
    assert jobs.queued_runs(runs) == [results[0]]
    other = jobs.submit(_config(), synthetic_dataset, runs, token="f6e5d4c3b2a1")
    assert other != results[0] and len(jobs.queued_runs(runs)) == 2
    jobs.submit(_config(), synthetic_dataset, runs)
    assert len(jobs.queued_runs(runs)) == 3


def test_a_submission_that_failed_can_be_sent_again(synthetic_dataset, tmp_path, no_worker):
    runs = tmp_path / "runs"
    with pytest.raises(FlowerError):
        jobs.submit(
            make_config("base", weights=str(tmp_path / "nope.h5")),
            synthetic_dataset,
            runs,
            token="a1b2c3d4e5f6",
        )
    assert jobs.submit(_config(), synthetic_dataset, runs, token="a1b2c3d4e5f6").is_dir()


@pytest.mark.parametrize("token", ["../../etc", "short", "a" * 65, "with space1"])
def test_a_malformed_token_is_refused(synthetic_dataset, tmp_path, no_worker, token):
    with pytest.raises(FlowerError, match="invalid submission token"):
        jobs.submit(_config(), synthetic_dataset, tmp_path / "runs", token=token)
    assert not jobs.queued_runs(tmp_path / "runs")


@pytest.mark.slow
def test_a_double_click_on_train_queues_one_run_and_a_later_click_another(
    synthetic_dataset, tmp_path, monkeypatch, no_worker
):
    import streamlit as st

    monkeypatch.setenv("FLOWER_DATA", str(synthetic_dataset))
    monkeypatch.setenv("FLOWER_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setattr("ui.home.is_online", lambda: False)
    st.cache_data.clear()
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page("pages/2_Train.py").run()
    key = "train_best_"
    at.selectbox(key=key + "backbone").set_value("mobilenet")
    at.selectbox(key=key + "weights").set_value("none")
    at.select_slider(key=key + "image_size").set_value(64)
    for _ in range(2):  # two presses with no script run between them
        at.button(key="train_submit").click()
        at.run()
        assert not at.exception and not at.error, [e.value for e in at.error]
    assert len(jobs.queued_runs()) == 1
    at.run()  # the page reruns (a refresh, another widget) before the next press
    at.button(key="train_submit").click()
    at.run()
    assert len(jobs.queued_runs()) == 2


def test_forgetting_submissions_refuses_a_negative_age(tmp_path):
    with pytest.raises(FlowerError, match="Received: max_age_s=-1"):
        jobs.forget_old_submissions(tmp_path, max_age_s=-1)


def test_a_new_submission_removes_markers_older_than_a_day(synthetic_dataset, tmp_path, no_worker):
    runs = tmp_path / "runs"
    jobs.submit(_config(), synthetic_dataset, runs, token="oldoldold1")
    jobs.submit(_config(), synthetic_dataset, runs, token="recentrecent")
    folder = runs / jobs.SUBMISSIONS
    a_day_ago = time.time() - jobs.SUBMISSION_MAX_AGE_S
    os.utime(folder / "oldoldold1", (a_day_ago - 60, a_day_ago - 60))
    os.utime(folder / "recentrecent", (a_day_ago + 60, a_day_ago + 60))
    jobs.submit(_config(), synthetic_dataset, runs, token="newnewnew1")
    assert sorted(p.name for p in folder.iterdir()) == ["newnewnew1", "recentrecent"]
    assert len(jobs.queued_runs(runs)) == 3, "forgetting a marker deletes no run"
    assert jobs.forget_old_submissions(runs, max_age_s=0) == 2
    assert jobs.forget_old_submissions(tmp_path / "never_used") == 0
