"""Background training for the app: a queue of runs per runs folder and one worker process.

Pressing Train creates a `queued` run folder and makes sure a worker process (started in its own
session, so it outlives Streamlit reruns and browser tabs) is running. The worker holds an
exclusive lock on the runs folder, so at most one job trains at a time, and trains queued runs
oldest first. Once the queue is empty it waits a while, TensorFlow imported and the photos
checked, so the next run on cached features starts in seconds (the app starts one as it opens).
The app follows a job by reading its run folder, like any other process could.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from flower_core import cluster
from flower_core.config import SUGGESTED_PRESET, TrainConfig, make_config
from flower_core.data.dataset import Dataset, check_split_files, list_candidates, load_split
from flower_core.errors import FlowerError
from flower_core.models.backbones import check_weights_ready, ensure_weights
from flower_core.store.run_files import Status
from flower_core.store.runs import (
    ACTIVE_STATES,
    CONFIG,
    QUEUE_SIGNAL,
    STATUS,
    Run,
    RunStore,
    atomic_write_bytes,
    cancel_requested,
    kept_model_note,
    now_iso,
    peek_status,
    request_cancel,
    stored_status,
    write_json,
)

if TYPE_CHECKING:
    from flower_core.training.progress import Reporter

LOCK_FILE = ".worker.lock"
# One empty-then-named file per form submission (`submit(token=...)`), so a double-click queues one run.
SUBMISSIONS = ".submissions"
# A marker only has to outlive a double-click; one a day old is removed when the next is written.
SUBMISSION_MAX_AGE_S = 24 * 3600
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
LOG_FILE = ".worker.log"
WORKER_LOCK_WAIT_S = 2.0
# How long a worker with an empty queue waits for the next run before it exits, holding its
# memory (docs/OPERATIONS.md); `FLOWER_WORKER_IDLE_S` sets it, 0 exits as soon as the queue is empty.
WORKER_IDLE_S = 600.0
IDLE_ENV = "FLOWER_WORKER_IDLE_S"
# A worker that holds this many MB more than when it started restarts itself once no run has been
# queued for `RESTART_WHEN_IDLE_S`: Keras keeps some memory of every run it trained
# (bench/README.md, "The warm worker").
WORKER_RECYCLE_MB = 600
RESTART_WHEN_IDLE_S = 60.0
# A waiting worker looks at the queue signal this often, and at the queue itself every
# `QUEUE_RECHECK_S` (a run queued by hand, without the signal).
QUEUE_POLL_S = 0.05
QUEUE_RECHECK_S = 2.0
# A worker picks a queued run up within a second or two; one queued longer with no worker alive
# was left behind (the worker was killed, or the machine restarted).
STALL_SECONDS = 15
# How long the cluster's queue waits for a task to end before it looks at the queue again.
CLUSTER_POLL_S = 0.5
# The worker each runs folder was last given by this process, and the lock that serialises
# starting one (Streamlit serves each session on its own thread).
_STARTED: dict[Path, subprocess.Popen] = {}
_SPAWN_LOCK = threading.Lock()


@contextmanager
def _exclusive(root: Path, blocking: bool, wait_s: float = 0.0):
    """Hold the runs folder's lock; without `blocking`, retry for up to `wait_s` seconds."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / LOCK_FILE, "a+") as handle:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    yield False
                    return
                time.sleep(0.05)
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def worker_active(runs_root=None) -> bool:
    """True while a worker process holds the runs folder's lock."""
    with _exclusive(RunStore(runs_root).root, blocking=False) as acquired:
        return not acquired


def active_runs(runs_root=None) -> dict[str, str]:
    """The state of every run queued or training, by id: a page that shows runs redraws when
    this changes (a run started, finished or was queued), and only while it is not empty."""
    states = {run_dir.name: peek_status(run_dir).state for run_dir in RunStore(runs_root).run_dirs()}
    return {run_id: state for run_id, state in states.items() if state in ACTIVE_STATES}


def queued_runs(runs_root=None) -> list[Path]:
    """Runs waiting to train, in the order they will run (oldest first)."""
    waiting = []
    for run_dir in RunStore(runs_root).run_dirs():
        status = peek_status(run_dir)
        if status.state == "queued":
            # `queued_ns` orders runs created in the same second (two sessions pressing Train).
            waiting.append((status.queued or "", status.queued_ns or 0, run_dir.name, run_dir))
    return [run_dir for *_, run_dir in sorted(waiting)]


def check_launch(
    configs: Iterable[TrainConfig], data_root, online: bool = True, dataset: Dataset | None = None
) -> dict[str, list[str]] | None:
    """Refuse, in one line, runs that cannot start, reading no photo and building nothing: each
    config's settings, that weights are given and can be had (`backbones.check_weights_ready`:
    ImageNet weights here, or `online`), and the dataset's folders. The app's forms call it
    before the click (`launch_problem`) and `create_run` at the click, so both say the same.

    Args:
        dataset: the dataset at `data_root` as already scanned (a page holds one), whose folders
            are then not listed again. Defaults to `None` (they are listed).

    Returns:
        The dataset's candidate photos by class (`list_candidates`), `None` when `dataset` was given.
    """
    configs = list(configs)
    for config in configs:
        config.validate()
        if not config.weights.strip():  # the form's "a weights file…" with its path left blank
            raise FlowerError(
                "no weights given: choose imagenet or none, or give the path of a weights file. "
                f"Received: weights={config.weights!r}"
            )
    candidates = None if dataset is not None else list_candidates(data_root)[1]
    for backbone, weights in dict.fromkeys((c.backbone, c.weights) for c in configs):
        check_weights_ready(backbone, weights, online)
    return candidates


def launch_problem(
    configs: Callable[[], Iterable[TrainConfig]],
    data_root,
    online: bool = False,
    dataset: Dataset | None = None,
) -> str | None:
    """Why the runs `configs()` plans cannot start now, as the click would say it, or `None`.

    Args:
        configs: makes the configs (a form's `make_config`, a study's or sweep's plan), so a
            refusal while planning (a bad value, a grid too big) is the reason too.
        data_root: the dataset folder.
        online: whether Keras can download ImageNet weights. Defaults to `False`.
        dataset: the dataset as a page scanned it (`check_launch`). Defaults to `None`.
    """
    try:
        check_launch(configs(), data_root, online, dataset)
    except FlowerError as error:
        return str(error)
    return None


def create_run(
    config: TrainConfig,
    data_root,
    runs_root=None,
    split_file=None,
    extra: dict | None = None,
    estimate: dict | None = None,
) -> Path:
    """A `queued` run folder for `config`, made only once the settings, the dataset and the
    backbone's weights have been checked (`check_launch`, then `ensure_weights`, which downloads
    ImageNet weights that are not here yet), so a bad input leaves no folder behind. `extra` adds
    keys to the run's `config.json` (a group's id and shared split, `flower_core.groups.group`).
    Its status keeps the time estimated for it (`estimate.estimate_run`, as a page showed it, or
    made here from the speeds recorded), so its actual time can be compared with it."""
    from flower_core.training.estimate import estimate_run, recorded_estimate

    candidates = check_launch([config], data_root)
    ensure_weights(config.backbone, config.weights, config.image_size)
    files = [file for names in candidates.values() for file in names]
    if split_file:
        check_split_files(load_split(split_file), files, split_file)
    if estimate is None:
        estimate = estimate_run(config, data_root, runs_root=runs_root, photos=len(files))
    return RunStore(runs_root).create(
        {
            **config.to_json(),
            "data_root": str(Path(data_root).resolve()),
            "split_file": str(Path(split_file).resolve()) if split_file else None,
            **(extra or {}),
        },
        config.preset,
        config.backbone,
        recorded_estimate(estimate),
    )


def submit(
    config: TrainConfig,
    data_root,
    runs_root=None,
    split_file=None,
    *,
    extra: dict | None = None,
    start: bool = True,
    token: str | None = None,
    estimate: dict | None = None,
) -> Path:
    """Queue a training run and make sure a worker will train it; returns at once.

    Args:
        extra: keys added to the run's `config.json` (a group's id and shared split,
            `flower_core.groups.group`). Defaults to `None`.
        estimate: the run's time estimate (`estimate.estimate_run`) as shown before the click,
            kept in its status. Defaults to one made from the speeds recorded here.
        start: `False` leaves starting the worker to the caller, which queues a whole group
            before starting one worker. Defaults to `True`.
        token: names one submission of a form (a double-click sends it twice): the first call
            with a token queues a run, any later one returns that run and queues nothing.
            Defaults to `None` (every call queues a run).
    """
    root = RunStore(runs_root).root
    cluster.check_reachable()
    with _claimed(root, token) as earlier:
        if earlier is not None:
            return earlier
        run_dir = create_run(config, data_root, runs_root, split_file, extra, estimate)
        if token:
            atomic_write_bytes(root / SUBMISSIONS / token, run_dir.name.encode())
    if start:
        start_worker(root)
    return run_dir


@contextmanager
def _claimed(root: Path, token: str | None):
    """Claim `token` atomically (a file created with O_EXCL); yields the run an earlier claim
    queued, or `None` for the first. A claim whose run could not be made is released."""
    if token is None:
        yield None
        return
    if not _TOKEN.match(token):
        raise FlowerError(f"invalid submission token. Received: {token!r}")
    folder = root / SUBMISSIONS
    folder.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(folder / token, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        deadline = time.monotonic() + WORKER_LOCK_WAIT_S
        while not (run_id := (folder / token).read_text().strip()) and time.monotonic() < deadline:
            time.sleep(0.02)  # the first claim is still creating its run
        if not run_id:
            raise FlowerError("this form was already submitted; press Train again") from None
        yield root / run_id
        return
    try:
        forget_old_submissions(root)
        yield None
    except BaseException:
        (folder / token).unlink(missing_ok=True)
        raise


def forget_old_submissions(runs_root=None, max_age_s: float = SUBMISSION_MAX_AGE_S) -> int:
    """Remove submission markers (`submit(token=...)`) at least `max_age_s` old; their runs stay.

    A marker only stops a double-click from queueing a second run, so an old one protects
    nothing; `submit` calls this whenever it writes a new one, so the folder stays small.

    Args:
        runs_root: the runs folder. `None` means `FLOWER_RUNS` or `runs/`.
        max_age_s: the age, in seconds, from which a marker is removed. Defaults to
            `SUBMISSION_MAX_AGE_S` (a day).

    Returns:
        How many markers were removed.
    """
    if max_age_s < 0:
        raise FlowerError(f"max_age_s must be 0 or more seconds. Received: max_age_s={max_age_s}")
    folder = RunStore(runs_root).root / SUBMISSIONS
    if not folder.is_dir():
        return 0
    now, removed = time.time(), 0
    for marker in folder.iterdir():
        try:
            if now - marker.stat().st_mtime >= max_age_s:
                marker.unlink()
                removed += 1
        except FileNotFoundError:  # another process removed it first
            continue
    return removed


def stalled(status: Status, runs_root=None) -> bool:
    """A run queued for over `STALL_SECONDS` with no worker process to train it."""
    if status.state != "queued":
        return False
    try:
        queued = dt.datetime.fromisoformat(status.queued)
    except (TypeError, ValueError):
        return False
    waited = (dt.datetime.now(dt.UTC) - queued).total_seconds()
    return waited > STALL_SECONDS and not worker_active(runs_root)


def followed_run(runs_root=None, chosen: str | None = None) -> Path | None:
    """The run a Train page shows: the one training, else the next queued, else `chosen` (the
    last run this browser session started), else the newest readable one."""
    store = RunStore(runs_root)
    states = {d: peek_status(d).state for d in store.run_dirs()}
    running = [d for d, state in states.items() if state == "running"]
    if running:
        return running[-1]
    queued = queued_runs(store.root)
    if queued:
        return queued[0]
    if chosen and (store.root / chosen / CONFIG).is_file():
        return store.root / chosen
    readable = [d for d, state in states.items() if state != "corrupt"]
    return readable[-1] if readable else None


def start_worker(runs_root=None, warm_data=None) -> None:
    """Start a detached worker unless one is training in this runs folder or is still starting;
    `warm_data` is the dataset folder it checks while it waits (`run_worker`).

    A new worker takes the runs folder's lock only once TensorFlow is imported (seconds, or a
    minute on a loaded machine), so the worker this process started last counts as running
    until it exits or says it is leaving: a burst of submissions (a study, a double click, many
    sessions of one server) starts one worker, not one each, and a run queued while a worker
    exits (which takes seconds once it has trained) gets a new one.
    """
    root = RunStore(runs_root).root.resolve()
    with _SPAWN_LOCK:
        starting = _STARTED.get(root)
        still_starting = starting is not None and starting.poll() is None and not _leaving(root, starting.pid)
        if worker_active(root) or still_starting:
            return
        root.mkdir(parents=True, exist_ok=True)
        with open(root / LOG_FILE, "ab") as log:
            warm = ["--warm-data", str(warm_data)] if warm_data else []
            _STARTED[root] = subprocess.Popen(
                [sys.executable, "-m", "flower_core", "worker", "--runs", str(root), *warm],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                cwd=os.getcwd(),
                env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
            )


def keep_worker_warm(runs_root=None, data_root=None) -> None:
    """Have a worker waiting for the next run of this runs folder, checking `data_root`'s photos
    (the app calls this on every page), unless one is there or `FLOWER_WORKER_IDLE_S` is 0."""
    if idle_seconds() > 0:
        start_worker(runs_root, warm_data=data_root)


def cancel(run_dir: Path) -> None:
    """Cancel a queued run at once, or ask a running one to stop within one batch."""
    run_dir = Path(run_dir)
    with _exclusive(run_dir.parent, blocking=False) as no_worker:
        state = peek_status(run_dir).state
        if state == "queued" and no_worker:
            _mark_cancelled(run_dir)
            return
    request_cancel(run_dir)


def _mark_cancelled(run_dir: Path) -> None:
    path = run_dir / STATUS
    status = stored_status(run_dir).merged(
        path, state="cancelled", finished=now_iso(), message="cancelled before it started"
    )
    write_json(path, status.to_json())


def idle_seconds() -> float:
    """How long a worker waits for the next run: `FLOWER_WORKER_IDLE_S`, else `WORKER_IDLE_S`."""
    raw = os.environ.get(IDLE_ENV, "").strip()
    try:
        seconds = float(raw) if raw else WORKER_IDLE_S
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise FlowerError(f"{IDLE_ENV} must be a number of seconds, 0 or more. Received: {raw!r}")
    return seconds


def train_new_run(
    config: TrainConfig, data_root, runs_root=None, *, reporter: Reporter | None = None, split_file=None
) -> Path:
    """Create a run folder for `config` and train it in this process; returns the folder."""
    from flower_core.training.train import run_training

    run_dir = create_run(config, data_root, runs_root, split_file)
    run_training(run_dir, reporter=reporter)
    return run_dir


def run_worker(runs_root=None, idle_s: float | None = None, warm_data=None, *, on_grown=None) -> int:
    """Train queued runs one at a time; with the queue empty, warm up once and wait up to `idle_s`
    seconds (default `idle_seconds()`) for the next. Returns how many runs it trained. With
    `FLOWER_RAY_ADDRESS` set, the runs train on that Ray cluster instead, several at once
    (`_serve_cluster`).

    `on_grown` is called when this process holds `WORKER_RECYCLE_MB` more than when it took the
    lock (Keras keeps some memory of every run it trained) and no run has been queued for
    `RESTART_WHEN_IDLE_S`: the command's worker restarts itself there, `serve_worker`.
    """
    from flower_core.training.train import run_training

    idle_s = idle_seconds() if idle_s is None else idle_s
    if idle_s < 0:
        raise FlowerError(f"the idle time must be 0 or more seconds. Received: {idle_s:g}")
    root = RunStore(runs_root).root
    trained, warmed, grown = 0, idle_s == 0, False
    # A short wait: `worker_active` and `cancel` take the lock for an instant to look.
    with _exclusive(root, blocking=False, wait_s=WORKER_LOCK_WAIT_S) as acquired:
        if not acquired:
            return 0
        _say(root, "working")
        if cluster.address():
            trained = _serve_cluster(root, idle_s)
            _say(root, "leaving")
            return trained
        baseline = resident_mb()
        while True:
            if waiting := queued_runs(root):
                run_dir = waiting[0]
                if cancel_requested(run_dir):
                    _mark_cancelled(run_dir)
                    continue
                run_training(run_dir)
                trained += 1
                _reset_keras()
                continue
            if not warmed:
                _warm_up(root, warm_data)
                warmed = True
                continue
            # A grown worker still takes the next run at once if it comes soon (the same
            # settings again, say); it restarts only once nobody has queued one for a while.
            grown = bool(on_grown and idle_s) and resident_mb() - baseline > WORKER_RECYCLE_MB
            _say(root, "waiting")
            if not _wait_for_queue(root, min(idle_s, RESTART_WHEN_IDLE_S) if grown else idle_s):
                break
            _say(root, "working")
        _say(root, "restarting" if grown else "leaving")
    if grown and root.is_dir():  # a deleted runs folder ends the worker, restarted or not
        on_grown()
    if queued_runs(root):
        trained += run_worker(root, idle_s, warm_data, on_grown=on_grown)
    return trained


def _serve_cluster(root: Path, idle_s: float) -> int:
    """Send every queued run to the Ray cluster as it is queued (Ray starts each once a node has
    its CPUs free), pass on cancels, and settle runs whose tasks could not; wait up to `idle_s`
    seconds for more once none is left. Returns how many tasks ended.

    A cluster that cannot be reached is one line, in the worker's log and in each queued run's
    status; the runs stay queued for the next worker.
    """
    from flower_core.training.cluster_runs import ClusterRuns

    try:
        runs = ClusterRuns()
    except FlowerError as error:
        _tell(str(error))
        for run_dir in queued_runs(root):
            _note(run_dir, f"waiting: {error}")
        return 0
    ended = 0
    try:
        while True:
            for run_dir in queued_runs(root):
                if run_dir in runs.pending:
                    continue
                if cancel_requested(run_dir):
                    _mark_cancelled(run_dir)
                else:
                    _note(run_dir, f"waiting for a node of the Ray cluster with {runs.cpus:g} CPUs free")
                    runs.send(run_dir)
            for run_dir in list(runs.pending):
                if cancel_requested(run_dir):
                    runs.cancel(run_dir, started=peek_status(run_dir).state != "queued")
            for end in runs.ended(CLUSTER_POLL_S):
                _settle(end)
                ended += 1
            if not runs.pending and not _wait_for_queue(root, idle_s):
                return ended
    finally:
        runs.close()


def _note(run_dir: Path, message: str) -> None:
    """Say why a queued run waits, in its status (the Train page shows it)."""
    write_json(run_dir / STATUS, stored_status(run_dir).merged(run_dir / STATUS, message=message).to_json())


def _settle(end) -> None:
    """Write how a run whose task ended stands, where the run could not write it itself: cancelled
    before it started or killed by its cancel, lost with its task (it reads `interrupted`), or
    failed when the task could not even start it."""
    status = stored_status(end.run_dir)
    state = status.state
    if state not in ACTIVE_STATES:
        return
    if end.cancelled or cancel_requested(end.run_dir):
        if state == "queued":
            _mark_cancelled(end.run_dir)
            return
        changes = {"state": "cancelled", "message": f"cancelled by request; {kept_model_note(end.run_dir)}"}
    elif state == "running":
        changes = {"lost": end.error or "its Ray task ended without finishing"}
    else:
        changes = {"state": "failed", "message": f"its Ray task could not train it: {end.error}"}
    path = end.run_dir / STATUS
    write_json(path, status.merged(path, finished=now_iso(), **changes).to_json())


def serve_worker(runs_root=None, idle_s: float | None = None, warm_data=None) -> None:
    """The `worker` command: `run_worker`, restarting this process (same pid, a fresh
    TensorFlow) when it has grown, so memory kept from past runs is returned."""

    def restart() -> None:
        _tell(f"restarting to return the memory of past runs ({resident_mb():.0f} MB now)")
        idle = ["--idle", repr(idle_s)] if idle_s is not None else []
        warm = ["--warm-data", str(warm_data)] if warm_data else []
        command = ["-m", "flower_core", "worker", "--runs", str(RunStore(runs_root).root), *idle, *warm]
        os.execv(sys.executable, [sys.executable, *command])

    run_worker(runs_root, idle_s, warm_data, on_grown=restart)


def _tell(message: str) -> None:
    """A line in the worker's own log (`<runs>/.worker.log`, its stderr); runs log to their folder."""
    print(f"{now_iso()} worker {os.getpid()}: {message}", file=sys.stderr, flush=True)


def resident_mb() -> float:
    """This process's resident memory in MB: current on Linux, the peak elsewhere (macOS)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def _say(root: Path, doing: str) -> None:
    """Note in the lock file what its holder is doing (`<pid> working`, `waiting` for a run,
    `restarting`, `leaving`): a worker that has said it is leaving no longer counts as starting
    (`start_worker`)."""
    try:
        (root / LOCK_FILE).write_text(f"{os.getpid()} {doing}")
    except OSError:
        pass  # the note only lets a run queued while this worker exits start a new one at once


def _leaving(root: Path, pid: int) -> bool:
    try:
        return (root / LOCK_FILE).read_text().strip() == f"{pid} leaving"
    except OSError:
        return False


def _wait_for_queue(root: Path, idle_s: float) -> bool:
    """Wait up to `idle_s` seconds for a run to be queued; False when none was, or when the runs
    folder is gone."""
    signal, deadline = root / QUEUE_SIGNAL, time.monotonic() + idle_s
    seen, recheck = _mtime_ns(signal), time.monotonic() + QUEUE_RECHECK_S
    while time.monotonic() < deadline and root.is_dir():
        time.sleep(QUEUE_POLL_S)
        if _mtime_ns(signal) != seen or time.monotonic() >= recheck:
            if queued_runs(root):
                return True
            seen, recheck = _mtime_ns(signal), time.monotonic() + QUEUE_RECHECK_S
    return False


def _mtime_ns(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return 0


def _warm_up(root: Path, data_root) -> None:
    """Pay once, while nobody waits, what the next run would: check the photos of `data_root` (or
    of the newest run) and build the newest run's model (or the suggested preset's), so TensorFlow
    has loaded its kernels and the photos' checks are remembered (`data.scan_dataset`)."""
    from flower_core.data.dataset import scan_dataset
    from flower_core.models.classifier import build_classifier

    newest = next(reversed(RunStore(root).run_dirs()), None)
    try:
        stored = Run.open(newest).config if newest else None
        config = stored.settings if stored else make_config(SUGGESTED_PRESET)
        data_root = data_root or (stored.data_root if stored else None)
        classes = len(scan_dataset(data_root).class_names) if data_root else 5
        build_classifier(config, classes)
    except Exception as error:  # a warm-up that fails costs the next run its head start, nothing more
        _tell(f"warm-up skipped: {error}")
    finally:
        _reset_keras()


def _reset_keras() -> None:
    import keras

    keras.backend.clear_session()
