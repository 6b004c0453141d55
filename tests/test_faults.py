"""Under faults, bad input and many users: nothing crashes, nothing is lost, nothing escapes.

Real training processes are killed at random moments; writes fail as on a full or read-only
disk; two sessions press Train at once; readers poll runs while they are written; model files
carry code or garbage. Every run folder must stay readable and be marked correctly.
"""

import errno
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import zipfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import keras
import pytest

from flower_core.config import make_config
from flower_core.errors import FlowerError
from flower_core.models.features import FeatureCache
from flower_core.store.run_files import HistoryRow
from flower_core.store.runs import (
    CONFIG,
    FACTS,
    HISTORY,
    METRICS,
    MODEL,
    RUN_LOG,
    SPLIT,
    STATUS,
    TENSORBOARD_DIR,
    RunStore,
    append_jsonl,
    clear_write_errors,
    load_run_model,
    read_history,
    read_json,
    read_status,
    write_json,
)
from flower_core.training.jobs import IDLE_ENV, queued_runs, submit, worker_active
from flower_core.training.progress import BestModelKeeper, update_status
from flower_core.training.train import run_training

from .conftest import wait_until

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 6
KILLS = 22
PARALLEL = 3
KILL_SEED = 20260101
# Each kill waits for a milestone, then for a random delay of up to this many seconds, so the
# kills spread over start-up, scanning, feature extraction, epochs (with model saves) and the end.
# A worker that finishes its run waits for the next one, so every process is killed, and the
# delays stay inside this tiny run: its five epochs after the first take about 0.7 s, its test
# evaluation a few tenths.
MILESTONES = {"spawned": 6.0, "running": 4.0, "first epoch": 0.6, "last epoch": 0.4}
RUN_FILES = {CONFIG, FACTS, SPLIT, STATUS, HISTORY, METRICS, MODEL, RUN_LOG, TENSORBOARD_DIR}
VALID_STATES = {"queued", "running", "done", "interrupted"}
_LOAD_LOCK = threading.Lock()


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    """30 small synthetic photos: 4 train, 1 validation and 1 test photo per class."""
    from flower_core.data.synthetic import generate

    out = tmp_path_factory.mktemp("faults") / "flowers"
    generate(out, per_class=6, size=48, seed=0)
    return out


@pytest.fixture(scope="module")
def frozen_weights(tmp_path_factory) -> str:
    """Random MobileNet weights as a file: the backbone is frozen and its features are cached, the
    app's usual path, and a run takes seconds instead of minutes of end-to-end training."""
    path = tmp_path_factory.mktemp("weights") / "mobilenet_random.weights.h5"
    keras.applications.MobileNet(include_top=False, weights=None, input_shape=(64, 64, 3)).save_weights(path)
    return str(path)


def _config(weights: str, epochs: int = EPOCHS):
    return make_config(
        "dropout20",
        backbone="mobilenet",
        weights=weights,
        image_size=64,
        epochs=epochs,
        augment_views=2,
        patience=20,
    )


def _queued_run(root: Path, config, data: Path) -> Path:
    return RunStore(root).create({**config.to_json(), "data_root": str(data)}, config.preset, config.backbone)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


class _Reader(threading.Thread):
    """Reads every run under `roots` as fast as it can, like another browser tab, and records
    what it saw; an exception here is a failure of the run store."""

    def __init__(self, roots, pause: float = 0.0):
        super().__init__(daemon=True)
        self.roots, self.pause = [Path(r) for r in roots], pause
        self.errors: list[str] = []
        self.states: Counter = Counter()
        self.rounds = 0
        self.halt = threading.Event()

    def run(self):
        while not self.halt.is_set():
            for root in self.roots:
                try:
                    self._read(root)
                except Exception as error:
                    self.errors.append(f"{type(error).__name__}: {error}")
            self.rounds += 1
            time.sleep(self.pause)

    def _read(self, root: Path):
        for row in RunStore(root).list_runs():
            run_dir = root / row["run_id"]
            self.states[row["state"]] += 1
            self.states[read_status(run_dir).state] += 1
            assert all(isinstance(h.epoch, int) for h in read_history(run_dir))
            metrics = read_json(run_dir / METRICS)
            assert metrics is None or "test_accuracy" in metrics

    def stop(self):
        self.halt.set()
        self.join()


# --- kills at random points -------------------------------------------------------------------


def _reached(run_dir: Path, milestone: str) -> bool:
    if milestone == "spawned":
        return True
    if milestone == "running":
        return (read_json(run_dir / STATUS) or {}).get("state") != "queued"
    return len(read_history(run_dir)) >= (1 if milestone == "first epoch" else EPOCHS)


def _phase(run_dir: Path) -> str:
    """Where a run was when it was killed, from its own status."""
    status = read_json(run_dir / STATUS) or {}
    message = status.get("message", "")
    if status.get("state") != "running":
        return {"queued": "start-up"}.get(status.get("state"), "after the end")
    for words, phase in (
        ("scanning", "scanning"),
        ("checking", "scanning"),
        ("building", "model build"),
        ("test", "evaluation"),
        ("evaluating", "evaluation"),
        ("features", "features, model build"),
        ("augmented views", "features, model build"),
        ("epoch", "epochs and model saves"),
    ):
        if words in message:
            return phase
    return "other"


def _kill_once(run_dir: Path, milestone: str, delay: float, cache: Path) -> dict:
    """Start a real worker process on the run, SIGKILL it at the planned moment, check the folder."""
    root = run_dir.parent
    with open(root / ".worker.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "flower_core", "worker", "--runs", str(root)],
            cwd=ROOT,
            stdout=log,
            stderr=log,
            env={**os.environ, "FLOWER_CACHE": str(cache), IDLE_ENV: "600", "TF_CPP_MIN_LOG_LEVEL": "2"},
        )
    deadline = time.monotonic() + 240
    while process.poll() is None and not _reached(run_dir, milestone) and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(delay)
    phase, killed = _phase(run_dir), process.poll() is None
    if killed:
        process.send_signal(signal.SIGKILL)
    process.wait()
    _assert_readable(run_dir)
    return {"killed": killed, "phase": phase, "leftovers": len(_leftovers(run_dir))}


def _assert_readable(run_dir: Path) -> None:
    """Every file parses, the state is right for a killed run, and the model loads."""
    assert isinstance(read_json(run_dir / CONFIG), dict)
    raw = read_json(run_dir / STATUS)["state"]
    state = read_status(run_dir).state
    assert (raw, state) in {("queued", "queued"), ("running", "interrupted"), ("done", "done")}, (raw, state)
    lines = (run_dir / HISTORY).read_text().split("\n") if (run_dir / HISTORY).exists() else [""]
    complete = [json.loads(line) for line in lines[:-1]]
    assert read_history(run_dir) == tuple(HistoryRow.from_json(h, HISTORY) for h in complete)
    assert [h["epoch"] for h in complete] == list(range(1, len(complete) + 1))
    if (run_dir / SPLIT).exists():
        assert set(read_json(run_dir / SPLIT)) >= {"train", "val", "test"}
    if (run_dir / METRICS).exists():
        metrics = read_json(run_dir / METRICS)
        assert len(metrics["confusion"]) == 5 and 0 <= metrics["test_accuracy"] <= 1
    if (run_dir / MODEL).exists():
        with _LOAD_LOCK:
            assert load_run_model(run_dir).output_shape == (None, 5)
    assert {p.name for p in run_dir.iterdir() if not p.name.startswith(".")} <= RUN_FILES
    assert all(".tmp" in name for name in _leftovers(run_dir))
    (row,) = RunStore(run_dir.parent).list_runs()
    assert row["state"] == state


@pytest.mark.slow
def test_kills_at_random_points_leave_every_run_readable(tiny_data, frozen_weights, tmp_path):
    config, cache = _config(frozen_weights), tmp_path / "cache"
    rng = random.Random(KILL_SEED)
    plan = []
    for i in range(KILLS):
        milestone = list(MILESTONES)[i % len(MILESTONES)]
        run_dir = _queued_run(tmp_path / f"kill{i:02d}", config, tiny_data)
        plan.append((run_dir, milestone, rng.uniform(0, MILESTONES[milestone]), cache))
    reader = _Reader((run_dir.parent for run_dir, *_ in plan), pause=0.05)  # spare the 2 cores
    reader.start()
    started = time.monotonic()
    with ThreadPoolExecutor(PARALLEL) as pool:
        outcomes = list(pool.map(lambda item: _kill_once(*item), plan))
    reader.stop()
    kills = sum(o["killed"] for o in outcomes)
    print(
        f"\n{kills} of {KILLS} processes SIGKILLed in {time.monotonic() - started:.0f}s; phases: "
        f"{dict(Counter(o['phase'] for o in outcomes if o['killed']))}; kills mid-write (temp file "
        f"left, real file intact): {sum(o['leftovers'] > 0 for o in outcomes)}; reader: "
        f"{reader.rounds} rounds, states {dict(reader.states)}"
    )
    phases = Counter(o["phase"] for o in outcomes)
    assert kills == KILLS and len(phases) >= 4 and phases["epochs and model saves"] >= 2, phases
    assert reader.errors == [] and set(reader.states) <= VALID_STATES
    cache_store = FeatureCache(cache)
    assert all(cache_store.load(entry["key"]) is not None for entry in cache_store.entries())


# --- writes that fail: disk full, permission denied, read-only disk --------------------------


def _fail_fsync(monkeypatch, name: str, code: int) -> None:
    """A full disk shows when data is committed: fsync of any file whose path holds `name` fails."""
    real = os.fsync

    def fsync(fd):
        if name in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(code, os.strerror(code))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def _fail_replace(monkeypatch, name: str, code: int) -> None:
    real = os.replace

    def replace(src, dst, **kwargs):
        if name in str(dst):
            raise OSError(code, os.strerror(code), str(dst))
        return real(src, dst, **kwargs)

    monkeypatch.setattr(os, "replace", replace)


def _fail_mkstemp(monkeypatch, code: int) -> None:
    """A read-only folder: no temp file can be created (chmod does not stop root, so simulate)."""
    import tempfile

    def mkstemp(*args, dir=None, **kwargs):
        raise OSError(code, os.strerror(code), str(dir))

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)


FAILURES = {"fsync": _fail_fsync, "replace": _fail_replace}
PROBLEMS = {
    errno.ENOSPC: "no space left on device",
    errno.EACCES: "permission denied",
    errno.EROFS: "read-only file system",
}


@pytest.mark.parametrize("code", list(PROBLEMS))
@pytest.mark.parametrize("step", ["fsync", "replace", "mkstemp"])
def test_failed_json_write_keeps_the_old_file_and_says_why_in_one_line(tmp_path, monkeypatch, step, code):
    target = tmp_path / "status.json"
    write_json(target, {"state": "running", "epoch": 3})
    before = target.read_bytes()
    if step == "mkstemp":
        _fail_mkstemp(monkeypatch, code)
    else:
        FAILURES[step](monkeypatch, "status.json", code)
    with pytest.raises(FlowerError) as caught, clear_write_errors():
        write_json(target, {"state": "done"})
    assert str(caught.value).startswith(f"{PROBLEMS[code]} while writing {tmp_path}")
    assert "\n" not in str(caught.value)
    assert target.read_bytes() == before and _leftovers(tmp_path) == []


@pytest.mark.parametrize("code", list(PROBLEMS))
def test_failed_history_append_leaves_no_half_line(tmp_path, monkeypatch, code):
    history = tmp_path / HISTORY
    append_jsonl(history, {"epoch": 1, "loss": 0.9})
    before = history.read_bytes()
    _fail_fsync(monkeypatch, HISTORY, code)
    with pytest.raises(OSError) as caught:
        append_jsonl(history, {"epoch": 2, "loss": 0.8})
    assert caught.value.errno == code and caught.value.filename == str(history)
    assert history.read_bytes() == before
    monkeypatch.undo()
    append_jsonl(history, {"epoch": 2, "loss": 0.8})
    assert [h.epoch for h in read_history(tmp_path)] == [1, 2]


def _tiny_model():
    inputs = keras.Input((3,))
    return keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name="predictions")(inputs))


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES])
def test_failed_model_save_keeps_the_previous_best_model(tmp_path, code):
    model = _tiny_model()
    keeper = BestModelKeeper(model, tmp_path / MODEL, min_interval=0)
    keeper.set_model(model)
    keeper.on_train_begin()
    keeper.on_epoch_end(0, {"val_loss": 0.9})
    before = (tmp_path / MODEL).read_bytes()

    def save_half_then_fail(path):
        Path(path).write_bytes(before[: len(before) // 2])
        raise OSError(code, os.strerror(code))

    model.save = save_half_then_fail
    with pytest.raises(OSError) as caught:
        keeper.on_epoch_end(1, {"val_loss": 0.5})
    assert caught.value.filename == str(tmp_path / MODEL)
    assert (tmp_path / MODEL).read_bytes() == before and _leftovers(tmp_path) == []
    assert load_run_model(tmp_path).output_shape == (None, 2)


@pytest.mark.slow
@pytest.mark.parametrize("code, name", [(errno.ENOSPC, MODEL), (errno.EACCES, SPLIT), (errno.EROFS, HISTORY)])
def test_training_that_cannot_write_ends_failed_with_a_clear_message(
    tiny_data, frozen_weights, tmp_path, monkeypatch, code, name
):
    run_dir = _queued_run(tmp_path / "runs", _config(frozen_weights, epochs=2), tiny_data)
    _fail_fsync(monkeypatch, name, code)
    assert run_training(run_dir) == "failed"
    status = read_status(run_dir)
    assert status.state == "failed" and status.finished
    assert status.message.startswith(f"{PROBLEMS[code]} while writing {run_dir / name}")
    assert "\n" not in status.message and "Traceback" in (run_dir / RUN_LOG).read_text()
    assert _leftovers(run_dir) == []
    assert not (run_dir / name).exists() or (name == HISTORY and (run_dir / name).read_bytes() == b"")
    _assert_no_torn_files(run_dir)


def _assert_no_torn_files(run_dir: Path) -> None:
    for name in (CONFIG, SPLIT, STATUS, METRICS):
        if (run_dir / name).exists():
            assert isinstance(read_json(run_dir / name), dict)
    read_history(run_dir)


DISK_FILLS_UP = """
import errno, os, sys
real, full = os.fsync, []
def fsync(fd):
    name = os.readlink(f"/proc/self/fd/{fd}")
    full.extend(["yes"] if "split.json" in name else [])
    if full and sys.argv[1] in name:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return real(fd)
os.fsync = fsync
from flower_core.cli import main
sys.exit(main(["worker", "--runs", sys.argv[1]]))
"""


def test_when_even_the_failed_status_cannot_be_written_the_process_exits_with_one_line(
    tiny_data, frozen_weights, tmp_path
):
    root = tmp_path / "runs"
    run_dir = _queued_run(root, _config(frozen_weights, epochs=2), tiny_data)
    result = subprocess.run(
        [sys.executable, "-c", DISK_FILLS_UP, str(root)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: no space left on device while writing {run_dir / STATUS}")
    assert read_status(run_dir).state == "interrupted"
    assert _leftovers(run_dir) == [] and not (run_dir / SPLIT).exists()
    _assert_no_torn_files(run_dir)


def test_a_run_that_cannot_be_created_leaves_no_half_made_folder(tiny_data, tmp_path, monkeypatch):
    _fail_replace(monkeypatch, STATUS, errno.ENOSPC)
    config = make_config("base", backbone="mobilenet", weights="none", image_size=32, epochs=1)
    for create in (
        lambda: submit(config, tiny_data, tmp_path / "runs"),
        lambda: RunStore(tmp_path / "runs").create({"epochs": 1}),
    ):
        with pytest.raises(FlowerError, match="^no space left on device while writing .*status.json"):
            create()
    assert [p for p in (tmp_path / "runs").iterdir() if not p.name.startswith(".")] == []


# --- many users: two sessions press Train at the same time, readers poll meanwhile -------------


@pytest.mark.slow
def test_two_sessions_pressing_train_at_once_queue_one_behind_the_other_while_readers_poll(
    tiny_data, frozen_weights, tmp_path
):
    runs, config = tmp_path / "runs", _config(frozen_weights, epochs=3)
    barrier = threading.Barrier(2)

    def press_train():
        barrier.wait()
        return submit(config, tiny_data, runs)

    with ThreadPoolExecutor(2) as pool:
        runs_made = [f.result() for f in [pool.submit(press_train) for _ in range(2)]]
    reader = _Reader([runs])
    reader.start()
    pairs, deadline = set(), time.monotonic() + 600
    while {read_status(r).state for r in runs_made} != {"done"}:
        assert time.monotonic() < deadline, f"runs not done: {[read_status(r) for r in runs_made]}"
        first, second, first_again = (read_status(r).state for r in (*runs_made, runs_made[0]))
        assert (first, second, first_again).count("running") < 3, "two runs trained at once"
        pairs.add((first, second))
        time.sleep(0.02)
    reader.stop()
    assert {("running", "queued"), ("queued", "running")} & pairs, pairs
    assert reader.errors == [] and set(reader.states) <= VALID_STATES and reader.rounds > 10
    earlier, later = sorted((read_status(r) for r in runs_made), key=lambda s: s.started)
    assert earlier.finished <= later.started
    assert all(len(read_history(r)) == 3 for r in runs_made) and queued_runs(runs) == []
    wait_until(lambda: not worker_active(runs), timeout=60)


# --- corrupt run files and hostile model files -------------------------------------------------

BAD_STATUS = [
    b"",
    b"{",
    b"[1, 2]",
    b'"running"',
    b"null",
    b"\xff\xfe\x00",
    b'{"state": "running", "pid": "x", "heartbeat": "soon"}',
    b'{"state": "running", "pid": 999999999, "host": "elsewhere"}',
]


@pytest.mark.parametrize("content", BAD_STATUS)
def test_corrupt_status_never_breaks_listing_or_the_queue(tmp_path, content):
    store = RunStore(tmp_path / "runs")
    bad, good = store.create({"epochs": 1}, "bad"), store.create({"epochs": 1}, "good")
    (bad / STATUS).write_bytes(content)
    rows = {row["run_id"]: row for row in store.list_runs()}
    assert rows[bad.name]["state"] in {"corrupt", "unknown", "interrupted"}
    assert rows[good.name]["state"] == "queued" and queued_runs(store.root) == [good]
    update_status(bad, state="failed", message="reset")
    assert read_status(bad).state == "failed"


def test_garbage_history_metrics_and_meta_are_skipped_or_reported(tmp_path):
    store = RunStore(tmp_path / "runs")
    run_dir = store.create({"epochs": 2}, "x")
    (run_dir / HISTORY).write_bytes(b'\xff\xfe\n{]\n[1]\n"text"\n{"epoch": 1}\n{"epoch": 2, "lo')
    assert read_history(run_dir) == (HistoryRow(epoch=1),)
    assert store.list_runs()[0]["epochs_done"] == 1
    for name, content in ((METRICS, b"[0.5]"), ("meta.json", b"{oops")):
        (run_dir / name).write_bytes(content)
        (row,) = store.list_runs()
        assert row["state"] == "corrupt" and name in row["message"] and "\n" not in row["message"]
        (run_dir / name).unlink()


def _save_lambda_model(path: Path, marker: Path) -> None:
    """A model whose Lambda layer would create `marker`: arbitrary Python hidden in a model file."""
    payload = eval(f"lambda x: (__import__('pathlib').Path({str(marker)!r}).touch(), x)[1]")
    inputs = keras.Input((3,))
    keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Lambda(payload)(inputs))).save(path)


def test_a_model_with_python_code_is_refused_and_its_code_never_runs(tmp_path):
    marker = tmp_path / "code_ran"
    _save_lambda_model(tmp_path / MODEL, marker)
    marker.unlink(missing_ok=True)
    keras.saving.load_model(tmp_path / MODEL, safe_mode=False)
    assert marker.exists(), "the payload should run when safe mode is off (the test's control)"
    marker.unlink()
    with pytest.raises(FlowerError) as caught:
        load_run_model(tmp_path)
    assert str(caught.value).startswith(f"refused to load {tmp_path / MODEL}: it holds Python code")
    assert "\n" not in str(caught.value) and not marker.exists()


def test_no_code_turns_safe_mode_off():
    """Keras lets a process-wide switch override `safe_mode=True`, so nothing here may flip it."""
    sources = [
        ROOT / "app.py",
        *ROOT.glob("flower_core/**/*.py"),
        *ROOT.glob("ui/*.py"),
        *ROOT.glob("pages/*.py"),
    ]
    for path in sources:
        text = path.read_text()
        assert "enable_unsafe_deserialization" not in text and "safe_mode=False" not in text, path


def _crafted(config: dict, marker: Path) -> bytes:
    """A .keras zip whose config names a non-Keras callable, as in published model-file exploits."""
    text = json.dumps(config).replace("MARKER", str(marker))
    path = marker.parent / "crafted.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", text)
        archive.writestr("metadata.json", json.dumps({"keras_version": keras.__version__}))
        archive.writestr("model.weights.h5", b"")
    return path.read_bytes()


CRAFTED = {
    "os.system": {"module": "os", "class_name": "system", "config": {"command": "touch MARKER"}},
    "subprocess.Popen": {
        "module": "subprocess",
        "class_name": "Popen",
        "config": {"args": ["touch", "MARKER"]},
    },
    "builtins.exec": {
        "module": "builtins",
        "class_name": "function",
        "config": "exec",
        "registered_name": "function",
    },
    "Popen inside a model": {
        "module": "keras",
        "class_name": "Sequential",
        "config": {
            "name": "s",
            "layers": [
                {"module": "keras.layers", "class_name": "InputLayer", "config": {"batch_shape": [None, 3]}},
                {"module": "subprocess", "class_name": "Popen", "config": {"args": ["touch", "MARKER"]}},
            ],
        },
    },
    "keras get_file": {
        "module": "keras.src.utils.file_utils",
        "class_name": "get_file",
        "config": {"fname": "x", "origin": "file:///etc/hostname", "cache_dir": "MARKER"},
    },
}


def _garbage(kind: str, tmp_path: Path) -> bytes:
    if kind in ("truncated zip", "hdf5 renamed"):
        saved = tmp_path / ("real.keras" if kind == "truncated zip" else "legacy.h5")
        _tiny_model().save(saved)
        return saved.read_bytes()[: 300 if kind == "truncated zip" else None]
    return {
        "empty": b"",
        "text": b"not a model at all\n",
        "zip without config": _zip_with({"hello.txt": "hi"}, tmp_path),
        "config not json": _zip_with({"config.json": "{nope", "metadata.json": "{}"}, tmp_path),
    }[kind]


def _zip_with(members: dict, tmp_path: Path) -> bytes:
    path = tmp_path / "members.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in members.items():
            archive.writestr(name, text)
    return path.read_bytes()


BAD_MODELS = [
    *CRAFTED,
    "empty",
    "text",
    "truncated zip",
    "zip without config",
    "config not json",
    "hdf5 renamed",
]


@pytest.mark.parametrize("kind", BAD_MODELS)
def test_hostile_or_broken_model_files_give_one_clear_line(tmp_path, kind):
    marker = tmp_path / "code_ran"
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    content = _crafted(CRAFTED[kind], marker) if kind in CRAFTED else _garbage(kind, tmp_path)
    (run_dir / MODEL).write_bytes(content)
    with pytest.raises(FlowerError) as caught:
        load_run_model(run_dir)
    message = str(caught.value)
    assert "\n" not in message and len(message) < 400 and str(run_dir / MODEL) in message
    assert not marker.exists()


def test_a_model_file_that_is_a_folder_or_missing_is_reported(tmp_path):
    with pytest.raises(FlowerError, match="has no model.keras yet"):
        load_run_model(tmp_path)
    (tmp_path / MODEL).mkdir()
    with pytest.raises(FlowerError, match="has no model.keras yet"):
        load_run_model(tmp_path)
