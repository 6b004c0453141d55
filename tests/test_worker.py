"""The warm worker: it waits for the next run with TensorFlow loaded, keeps every promise of the
queue while it waits, and exits when told to stop waiting or when its runs folder is gone."""

import os
import shutil
import signal
import threading
import time

import pytest

from flower_core.config import make_config
from flower_core.errors import FlowerError
from flower_core.store.runs import RunStore, read_status
from flower_core.training import jobs
from flower_core.training.jobs import IDLE_ENV, WORKER_IDLE_S, idle_seconds, submit, worker_active

from .conftest import wait_until


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
def test_one_waiting_worker_trains_run_after_run_and_a_killed_one_is_replaced(
    synthetic_dataset, tmp_path, monkeypatch
):
    monkeypatch.setenv(IDLE_ENV, "120")
    runs = tmp_path / "runs"
    quick = make_config("base", backbone="mobilenet", weights="none", image_size=64, epochs=1)
    first = submit(quick, synthetic_dataset, runs)
    wait_until(lambda: read_status(first).state == "done")
    pid = read_status(first).pid
    says = f"{pid} waiting"
    wait_until(lambda: (runs / jobs.LOCK_FILE).read_text() == says, timeout=120, what=f"lock file {says!r}")
    assert worker_active(runs) and _alive(pid), "the worker waits for the next run"
    second = submit(quick, synthetic_dataset, runs)
    wait_until(lambda: read_status(second).state == "done")
    assert read_status(second).pid == pid, "the waiting worker trained it; no new process"

    os.kill(pid, signal.SIGKILL)
    # A killed process holds its lock until the kernel has unmapped its memory (seconds here).
    wait_until(lambda: not worker_active(runs), timeout=120)
    third = submit(quick, synthetic_dataset, runs)
    wait_until(lambda: read_status(third).state == "done")
    replacement = read_status(third).pid
    assert replacement != pid

    shutil.rmtree(runs)
    wait_until(lambda: jobs._STARTED[runs.resolve()].poll() is not None, timeout=60)


def test_a_waiting_worker_sees_a_run_queued_at_once_and_gives_up_after_its_idle_time(tmp_path):
    runs = tmp_path / "runs"
    RunStore(runs).root.mkdir(parents=True)
    started = time.monotonic()
    assert not jobs._wait_for_queue(runs, 0.3)
    assert time.monotonic() - started >= 0.3

    queue_later = threading.Timer(0.2, lambda: RunStore(runs).create({"epochs": 1}, "base", "mobilenet"))
    queue_later.start()
    started = time.monotonic()
    assert jobs._wait_for_queue(runs, 60)
    assert time.monotonic() - started < jobs.QUEUE_RECHECK_S, "the queue signal, not the slow recheck"

    gone = tmp_path / "gone"
    gone.mkdir()
    threading.Timer(0.2, lambda: shutil.rmtree(gone)).start()
    started = time.monotonic()
    assert not jobs._wait_for_queue(gone, 60)
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("", WORKER_IDLE_S),
        ("0", 0.0),
        ("2.5", 2.5),
        ("abc", None),
        ("-1", None),
        ("inf", None),
        ("nan", None),
    ],
)
def test_the_idle_time_comes_from_the_environment_or_is_a_clear_error(monkeypatch, raw, expected):
    monkeypatch.setenv(IDLE_ENV, raw)
    if expected is None:
        with pytest.raises(FlowerError, match=IDLE_ENV):
            idle_seconds()
    else:
        assert idle_seconds() == expected


def test_no_worker_is_kept_warm_when_waiting_is_off(tmp_path, monkeypatch):
    monkeypatch.setenv(jobs.IDLE_ENV, "0")
    runs = tmp_path / "runs"
    jobs.keep_worker_warm(runs, tmp_path)
    assert runs.resolve() not in jobs._STARTED and not worker_active(runs)
    with pytest.raises(FlowerError, match="0 or more"):
        jobs.run_worker(runs, idle_s=-1)


def test_a_worker_says_in_its_lock_file_while_it_waits_for_a_run(tmp_path):
    runs = tmp_path / "runs"
    lock = runs / jobs.LOCK_FILE
    no_photos = tmp_path / "missing"  # the warm-up fails at once and is skipped
    worker = threading.Thread(target=jobs.run_worker, args=(runs, 60, no_photos))
    worker.start()
    says = f"{os.getpid()} waiting"
    wait_until(lambda: lock.is_file() and lock.read_text() == says, timeout=30, what=f"lock file {says!r}")
    shutil.rmtree(runs)  # a deleted runs folder ends the wait
    worker.join(timeout=60)
    assert not worker.is_alive()


def test_a_worker_that_has_grown_is_restarted_once_its_queue_is_empty(tmp_path, monkeypatch):
    monkeypatch.setattr(jobs, "WORKER_RECYCLE_MB", -(10**6))  # any size counts as grown (RSS may shrink)
    monkeypatch.setattr(jobs, "RESTART_WHEN_IDLE_S", 0.2)
    restarts = []
    no_photos = tmp_path / "missing"  # the warm-up fails at once and is skipped
    assert jobs.run_worker(tmp_path / "runs", 30, no_photos, on_grown=lambda: restarts.append(1)) == 0
    assert restarts == [1]
    assert (tmp_path / "runs" / jobs.LOCK_FILE).read_text() == f"{os.getpid()} restarting"

    monkeypatch.setattr(jobs, "RESTART_WHEN_IDLE_S", 30)
    gone = tmp_path / "gone"
    threading.Timer(1.0, lambda: shutil.rmtree(gone)).start()
    assert jobs.run_worker(gone, 30, no_photos, on_grown=lambda: restarts.append(2)) == 0
    assert restarts == [1] and not gone.exists(), "a deleted runs folder is not made again"


def test_a_run_queued_while_the_worker_leaves_gets_a_new_worker(tmp_path, monkeypatch):
    """The worker this process started counts as starting until it says it is leaving."""
    runs = (tmp_path / "runs").resolve()
    runs.mkdir()
    exiting = jobs.subprocess.Popen(["sleep", "60"])
    monkeypatch.setitem(jobs._STARTED, runs, exiting)
    try:
        (runs / jobs.LOCK_FILE).write_text(f"{exiting.pid} working")
        jobs.start_worker(runs)
        assert jobs._STARTED[runs] is exiting, "still starting: no second worker"
        (runs / jobs.LOCK_FILE).write_text(f"{exiting.pid} leaving")
        jobs.start_worker(runs)
        replacement = jobs._STARTED[runs]
        assert replacement is not exiting
        assert replacement.wait(timeout=120) == 0, "a real worker: it found the queue empty and exited"
    finally:
        exiting.kill()
        exiting.wait()


def test_every_page_keeps_a_worker_waiting_even_opened_without_the_app_script(
    synthetic_dataset, tmp_path, monkeypatch
):
    """A server's first request for /Train runs pages/2_Train.py alone, without app.py."""
    from streamlit.testing.v1 import AppTest

    runs = (tmp_path / "runs").resolve()
    monkeypatch.setenv("FLOWER_DATA", str(synthetic_dataset))
    monkeypatch.setenv(IDLE_ENV, "not a number")
    page = AppTest.from_file("../pages/2_Train.py", default_timeout=120).run()
    assert not page.exception
    assert any(IDLE_ENV in caption.value for caption in page.caption)
    monkeypatch.setenv(IDLE_ENV, "30")
    AppTest.from_file("../pages/2_Train.py", default_timeout=120).run()
    worker = jobs._STARTED[runs]
    try:
        wait_until(lambda: worker_active(runs), timeout=120)
        assert f"--warm-data {synthetic_dataset}" in " ".join(worker.args)
    finally:
        worker.terminate()
        worker.wait(timeout=60)
