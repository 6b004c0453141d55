"""Background jobs: one worker per runs folder, a visible queue, cancel of queued and running jobs."""


import pytest

from flower_core.config import make_config
from flower_core.jobs import cancel, queued_runs, submit, worker_active
from flower_core.runs import read_history, read_status

from .conftest import wait_until


@pytest.fixture
def quick_config():
    return make_config("base", backbone="mobilenet", weights="none", image_size=64, epochs=1)


@pytest.mark.slow
def test_jobs_queue_behind_one_worker_and_run_in_order(synthetic_dataset, tmp_path, quick_config):
    runs = tmp_path / "runs"
    long = make_config("base", backbone="mobilenet", weights="none", image_size=64, epochs=100, patience=200)
    first = submit(long, synthetic_dataset, runs)
    second = submit(quick_config, synthetic_dataset, runs)
    wait_until(lambda: len(read_history(first)) >= 1)
    assert worker_active(runs)
    assert read_status(second)["state"] == "queued" and queued_runs(runs) == [second]
    cancel(first)
    wait_until(lambda: read_status(second)["state"] == "done")
    assert read_status(first)["state"] == "cancelled" and len(read_history(second)) == 1
    wait_until(lambda: not worker_active(runs), timeout=30)


@pytest.mark.slow
def test_cancel_a_queued_job_and_a_running_job(synthetic_dataset, tmp_path):
    runs = tmp_path / "runs"
    long = make_config("base", backbone="mobilenet", weights="none", image_size=64, epochs=100, patience=200)
    running = submit(long, synthetic_dataset, runs)
    waiting = submit(long, synthetic_dataset, runs)
    wait_until(lambda: len(read_history(running)) >= 1)
    cancel(waiting)
    cancel(running)
    wait_until(lambda: read_status(running)["state"] == "cancelled")
    wait_until(lambda: read_status(waiting)["state"] == "cancelled")
    assert read_history(waiting) == []
    wait_until(lambda: not worker_active(runs), timeout=30)
