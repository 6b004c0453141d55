"""Background jobs: one worker per runs folder, a visible queue, cancel of queued and running jobs."""

import os

import pytest

from flower_core.config import make_config
from flower_core.errors import FlowerError
from flower_core.store.runs import read_history, read_status
from flower_core.training.jobs import cancel, create_run, queued_runs, submit, worker_active

from .conftest import wait_until


@pytest.fixture
def quick_config():
    return make_config("base", backbone="mobilenet", weights="none", image_size=64, epochs=1)


@pytest.mark.parametrize("weights", ["", "  "])
def test_a_run_without_weights_is_refused_before_anything_is_queued(synthetic_dataset, tmp_path, weights):
    config = make_config("base", backbone="mobilenet", weights=weights, image_size=64)
    with pytest.raises(FlowerError, match="^no weights given: choose imagenet or none, or give the path"):
        create_run(config, synthetic_dataset, tmp_path / "runs")
    assert queued_runs(tmp_path / "runs") == []


@pytest.mark.slow
def test_jobs_queue_behind_one_worker_and_run_in_order(synthetic_dataset, tmp_path, quick_config):
    runs = tmp_path / "runs"
    long = make_config("base", backbone="mobilenet", weights="none", image_size=64, epochs=100, patience=200)
    first = submit(long, synthetic_dataset, runs)
    second = submit(quick_config, synthetic_dataset, runs)
    wait_until(lambda: len(read_history(first)) >= 1)
    assert worker_active(runs)
    assert read_status(second).state == "queued" and queued_runs(runs) == [second]
    cancel(first)
    wait_until(lambda: read_status(second).state == "done")
    assert read_status(first).state == "cancelled" and len(read_history(second)) == 1
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
    wait_until(lambda: read_status(running).state == "cancelled")
    wait_until(lambda: read_status(waiting).state == "cancelled")
    assert read_history(waiting) == ()
    wait_until(lambda: not worker_active(runs), timeout=30)


def _run_with(runs, state: str, **status) -> object:
    from flower_core.store.runs import STATUS, RunStore, read_json, write_json

    run_dir = RunStore(runs).create({"epochs": 1}, "base", "mobilenet")
    write_json(run_dir / STATUS, {**read_json(run_dir / STATUS), "state": state, **status})
    return run_dir


def test_the_followed_run_is_the_one_training_then_the_next_queued_then_the_chosen(tmp_path):
    from flower_core.store.runs import STATUS
    from flower_core.training.jobs import followed_run

    runs = tmp_path / "runs"
    assert followed_run(runs) is None
    done = _run_with(runs, "done")
    assert followed_run(runs) == done, "no choice: the newest readable run"
    other = _run_with(runs, "done")
    assert followed_run(runs, chosen=done.name) == done and followed_run(runs, chosen=other.name) == other
    (other / STATUS).write_text("{not json")
    assert followed_run(runs) == done, "a corrupt run is never the one shown by default"
    assert followed_run(runs, chosen="no-such-run") == done
    queued = _run_with(runs, "queued")
    assert followed_run(runs, chosen=done.name) == queued
    running = _run_with(runs, "running", pid=os.getpid(), host=os.uname().nodename)
    assert followed_run(runs, chosen=done.name) == running


def test_a_queued_run_stalls_only_after_the_wait_with_no_worker(tmp_path):
    import datetime as dt

    from flower_core.store.run_files import Status
    from flower_core.training.jobs import STALL_SECONDS, stalled

    runs = tmp_path / "runs"
    long_ago = (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=STALL_SECONDS + 5)).isoformat()
    just_now = dt.datetime.now(dt.UTC).isoformat()
    assert stalled(Status(state="queued", queued=long_ago), runs)
    assert not stalled(Status(state="queued", queued=just_now), runs)
    assert not stalled(Status(state="running", queued=long_ago), runs)
    assert not stalled(Status(state="queued", queued="not a time"), runs)
    assert not stalled(Status(state="queued"), runs)


def test_a_burst_of_submissions_starts_one_worker(synthetic_dataset, tmp_path, quick_config):
    """Workers take the queue's lock only after importing TensorFlow: submissions in that window
    must not each start a worker (a study queued 14 runs and got 14 workers)."""
    import subprocess

    runs = tmp_path / "runs"
    before = subprocess.run(
        ["pgrep", "-fc", f"flower_core worker --runs {runs.resolve()}"], capture_output=True, text=True
    ).stdout.strip()
    runs_made = [submit(quick_config, synthetic_dataset, runs) for _ in range(4)]
    started = subprocess.run(
        ["pgrep", "-fc", f"flower_core worker --runs {runs.resolve()}"], capture_output=True, text=True
    ).stdout.strip()
    assert before == "0" and started == "1"
    for run in runs_made:
        cancel(run)
    wait_until(lambda: all(read_status(run).state == "cancelled" for run in runs_made))
    wait_until(
        lambda: (
            subprocess.run(
                ["pgrep", "-f", f"flower_core worker --runs {runs.resolve()}"], capture_output=True
            ).returncode
            == 1
        )
    )
