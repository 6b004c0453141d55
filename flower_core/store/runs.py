"""The experiment store: one folder per run, files written atomically
(docs/ARCHITECTURE.md, "The run folder").

Another process may read a run while it trains, and a training process may die at any moment,
so every file is replaced whole (temp file + rename) and `history.jsonl` only ever grows by
whole lines. A `running` run whose process is gone (or, trained on another host, whose
heartbeat is stale) reads as `interrupted`. A write that fails for lack of space or permission
becomes a one-line `FlowerError` that names the file (`clear_write_errors`). A run's files are
read through `Run`, as the checked records of `flower_core.store.run_files`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import errno
import functools
import json
import os
import re
import secrets
import shutil
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from flower_core.errors import FlowerError
from flower_core.store.run_files import (
    Estimate,
    Facts,
    HistoryRow,
    Meta,
    Metrics,
    RunConfig,
    Status,
    history_rows,
    migrate,
)
from flower_core.store.typed_json import JsonRecord, corrupt

R = TypeVar("R", bound=JsonRecord)
# What `read_json` returns for a file that does not exist, told apart from one that holds `null`.
_ABSENT = object()

DEFAULT_RUNS_DIR = Path("runs")
CONFIG, SPLIT, STATUS, HISTORY, METRICS, MODEL, META = (
    "config.json",
    "split.json",
    "status.json",
    "history.jsonl",
    "metrics.json",
    "model.keras",
    "meta.json",
)
# What a run learned when it started (`Run.facts`); `config.json` holds only the settings it was
# queued with and is never rewritten.
FACTS = "facts.json"
CANCEL_FLAG = "cancel.request"
# What a training logged, with the traceback behind a failure (`flower_core/store/logs.py`).
RUN_LOG = "run.log"
# TensorBoard's event files of a run, one step per epoch (`progress.EpochEvents`).
TENSORBOARD_DIR = "tensorboard"
# Touched in the runs folder each time a run is queued: a waiting worker watches this one file
# instead of reading every run's status (`jobs.run_worker`).
QUEUE_SIGNAL = ".queued"
# Studies and sweeps (`flower_core.groups`): `<runs>/.groups/<id>/`, with the split their runs share.
GROUPS_DIR = ".groups"
HEARTBEAT_TIMEOUT_S = 120
ACTIVE_STATES = ("queued", "running")
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,120}$")


def is_plain_id(name) -> bool:
    """True for a plain folder name (a run's or a group's id): no `/`, no leading dot, so
    `<runs>/<id>` cannot name a place outside the runs folder."""
    return isinstance(name, str) and bool(_RUN_ID.match(name))


def group_dir(runs_root, group_id: str) -> Path:
    """`<runs>/.groups/<id>`, for a plain id only (`../x` would name a folder outside)."""
    if not is_plain_id(group_id):
        raise FlowerError(f"invalid study or sweep id: use an id that `groups` lists. Received: {group_id!r}")
    return resolve_runs_root(runs_root) / GROUPS_DIR / group_id


def resolve_runs_root(explicit: str | os.PathLike | None = None) -> Path:
    """The runs folder: `explicit`, else `FLOWER_RUNS`, else `runs/`."""
    return Path(explicit or os.environ.get("FLOWER_RUNS") or DEFAULT_RUNS_DIR)


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Call `write(tmp)` on a temp file beside `path`, fsync it, then rename it over `path`.

    Readers see the old file or the new one, never part of one; on any failure the temp file is
    removed, the old file is left as it was, and an `OSError` names `path`.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    try:
        write(Path(tmp))
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException as error:
        Path(tmp).unlink(missing_ok=True)
        _name_file(error, path)
        raise


def _fsync(path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _name_file(error: BaseException, path: Path) -> None:
    """Give an `OSError` raised mid-write (no file name of its own) the file it was writing."""
    if isinstance(error, OSError) and not error.filename:
        error.filename = str(path)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically (see `atomic_write`)."""
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def write_json(path: Path, data) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=2) + "\n").encode())


def read_json(path: Path, default=None):
    """A JSON file, `default` when it does not exist; raises a one-line `FlowerError` for one that
    is not JSON. Run files are read through `Run`, which checks what they hold."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return default
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise FlowerError(f"corrupt run file {path}: {error}") from None


def read_record(path: Path) -> dict:
    """A JSON file that must hold one object (a group's `group.json`); `{}` when it does not exist."""
    record = read_json(path, default={})
    if not isinstance(record, dict):
        raise corrupt(path, f"expected a JSON object, found {type(record).__name__}")
    return record


def _read(kind: type[R], path: Path) -> R | None:
    """The run file at `path` as a `kind` record, checked; `None` when it does not exist."""
    data = read_json(path, _ABSENT)
    return None if data is _ABSENT else kind.from_json(data, path)


def append_jsonl(path: Path, record: dict) -> None:
    """Append one whole line and fsync; if that fails (disk full), cut the file back to its old end,
    so a failed write never leaves half a record for the next line to be glued to."""
    line = (json.dumps(record) + "\n").encode()
    with open(path, "ab") as handle:
        end = handle.seek(0, os.SEEK_END)
        try:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
        except BaseException as error:
            handle.truncate(end)
            _name_file(error, Path(path))
            raise


_WRITE_PROBLEMS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "read-only file system",
    errno.ENOTDIR: "a file stands where a folder is needed",
    errno.EEXIST: "a file stands where a folder is needed",
}


@contextmanager
def clear_write_errors() -> Iterator[None]:
    """Turn a failed write (disk full, no permission, read-only disk) into a one-line FlowerError.

    Other `OSError`s are real surprises and pass through unchanged.
    """
    try:
        yield
    except OSError as error:
        problem = _WRITE_PROBLEMS.get(error.errno)
        if problem is None:
            raise
        raise FlowerError(
            f"{problem} while writing {error.filename or 'a run file'}; free some space or make the "
            "folder writable (or point FLOWER_RUNS / FLOWER_CACHE elsewhere), then try again"
        ) from None


def read_history(run_dir: Path) -> tuple[HistoryRow, ...]:
    """Finished epochs in order; a torn, non-object or wrong-typed line is left out
    (`run_files.history_rows`)."""
    try:
        text = (Path(run_dir) / HISTORY).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ()
    return history_rows(text)


def process_start(pid: int) -> str | None:
    """When `pid` started, in clock ticks since boot (Linux), or `None` if it is gone or a zombie.

    Stored beside the pid in `status.json`, it tells a live trainer from an unrelated process
    that was later given the same pid.
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == "Z" else fields[19]


def pid_alive(pid, started=None) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if not Path("/proc/self/stat").exists():
        return True
    current = process_start(pid)
    return current is not None and (started is None or current == started)


def stored_status(run_dir: Path) -> Status:
    """`status.json` as written (state `unknown` before it exists), without the liveness check."""
    return _read(Status, Path(run_dir) / STATUS) or Status()


def read_status(run_dir: Path) -> Status:
    """`status.json`, with a `running` run whose process is gone reported as `interrupted`.

    On this host the trainer's pid (and its start time) decides; a run trained on another host
    sharing the folder is judged by its heartbeat, or by `lost`, which the queue writes when the
    cluster task training it died (`jobs._settle`).
    """
    status = stored_status(run_dir)
    if status.state == "running" and (status.lost or not _trainer_alive(status)):
        status = dataclasses.replace(
            status,
            state="interrupted",
            message="the training process stopped "
            f"without finishing (killed or crashed); {kept_model_note(run_dir, status)}",
        )
    return status


def kept_model_note(run_dir: Path, status: Status | None = None) -> str:
    """What a stopped run kept, exactly: which epoch's model `model.keras` holds, or none."""
    status = stored_status(run_dir) if status is None else status
    if not (Path(run_dir) / MODEL).is_file():
        return "no model was kept (none had been saved yet)"
    return (
        f"the model of epoch {status.kept_epoch} (the best until then) is kept"
        if status.kept_epoch
        else "the last saved model is kept"
    )


def peek_status(run_dir: Path) -> Status:
    """`read_status` for lists, queues and pages: an unreadable `status.json` (half-copied,
    edited by hand) reads as state `corrupt` with the reason, instead of raising."""
    try:
        return read_status(run_dir)
    except (FlowerError, OSError) as error:
        return Status(state="corrupt", message=_one_line(error))


def _trainer_alive(status: Status) -> bool:
    if status.host == os.uname().nodename and status.pid is not None:
        return pid_alive(status.pid, status.pid_start)
    return status.heartbeat is not None and time.time() - status.heartbeat <= HEARTBEAT_TIMEOUT_S


class Run:
    """One run folder, its files read as checked records (`flower_core.store.run_files`).

    Each file is read the first time it is asked for and then kept, so a `Run` is the folder as
    it was when looked at; open a new one to see a training move on. A file that is not JSON, or
    holds a wrong-typed or non-finite value, raises a one-line `FlowerError` naming the file and
    the field when it is first asked for.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    @classmethod
    def open(cls, run_dir: str | os.PathLike) -> Run:
        """The run in `run_dir`; a folder without `config.json` is refused in one line."""
        run_dir = Path(run_dir)
        if not (run_dir / CONFIG).is_file():
            raise FlowerError(f"not a run folder (no {CONFIG}): {run_dir}")
        return cls(run_dir)

    @property
    def id(self) -> str:
        return self.path.name

    @functools.cached_property
    def _layout(self) -> tuple[dict, dict, Path]:
        """config.json's and facts.json's content in today's layout (`run_files.migrate`), and
        the file the facts came from."""
        config, facts = (_object(self.path / name) for name in (CONFIG, FACTS))
        config, migrated = migrate(config or {}, facts)
        return config, migrated, self.path / (CONFIG if facts is None else FACTS)

    @functools.cached_property
    def config(self) -> RunConfig:
        return RunConfig.from_json(self._layout[0], self.path / CONFIG)

    @functools.cached_property
    def facts(self) -> Facts:
        """What the run learned when it started; empty before that."""
        return Facts.from_json(self._layout[1], self._layout[2])

    @functools.cached_property
    def status(self) -> Status:
        """The state with liveness (`read_status`): raises on a corrupt file, as `peek_status` does not."""
        return read_status(self.path)

    @functools.cached_property
    def metrics(self) -> Metrics:
        """The test results; empty before the run is evaluated."""
        return _read(Metrics, self.path / METRICS) or Metrics()

    @functools.cached_property
    def meta(self) -> Meta:
        return _read(Meta, self.path / META) or Meta()

    @functools.cached_property
    def history(self) -> tuple[HistoryRow, ...]:
        return read_history(self.path)

    @property
    def name(self) -> str:
        """The name a user gave the run, else its id."""
        return self.meta.name or self.id

    @property
    def has_model(self) -> bool:
        return (self.path / MODEL).is_file()

    @property
    def kept_epoch(self) -> int | None:
        """The epoch whose model `model.keras` holds; `None` without a model, or for a run
        trained before this was recorded."""
        return self.status.kept_epoch if self.has_model else None

    @property
    def augment_cache_ran(self) -> str:
        """How augmentation was cached as the run ran (`views` where the maps were too small),
        else as it was asked for."""
        return self.facts.augment_cache or self.config.settings.augment_cache

    @property
    def augmented_as(self) -> str | None:
        """How augmentation reached the head: cached `maps` or `views`, `on the fly` when the
        whole network saw the photos, `None` without augmentation."""
        settings = self.config.settings
        if not settings.augment:
            return None
        if not settings.cache_features or settings.weights == "none":
            return "on the fly"
        return self.augment_cache_ran

    @property
    def best_val_accuracy(self) -> float | None:
        accuracies = [row.val_accuracy for row in self.history if row.val_accuracy is not None]
        return max(accuracies) if accuracies else None

    @property
    def train_seconds(self) -> float:
        """Seconds spent in the finished epochs."""
        return round(sum(row.seconds or 0 for row in self.history), 1)

    def check(self) -> Run:
        """Read every file now, so that a corrupt one raises here rather than when a reader first
        asks (the runs list shows such a run as corrupt)."""
        for part in ("config", "facts", "status", "metrics", "meta", "history"):
            getattr(self, part)
        return self

    def summary(self) -> dict:
        """One row of the runs table: settings, state, best validation and test results."""
        self.check()
        settings, status, metrics = self.config.settings, self.status, self.metrics
        return {
            "run_id": self.id,
            "name": self.name,
            "tags": list(self.meta.tags),
            "preset": settings.preset,
            "backbone": settings.backbone,
            "weights": settings.weights,
            "image_size": settings.image_size,
            "batch_size": settings.batch_size,
            "dropout": settings.dropout,
            "augment": settings.augment,
            "augment_cache": self.augmented_as,
            "seed": settings.seed,
            "group": self.config.group,
            "group_label": self.config.group_label,
            "repeats": self.config.repeats,
            "state": status.state,
            "epochs_done": len(self.history),
            "best_val_accuracy": self.best_val_accuracy,
            "test_accuracy": metrics.test_accuracy,
            "test_loss": metrics.test_loss,
            # The photos each accuracy was measured on, for its interval (`evaluation.uncertainty`).
            "test_photos": metrics.num_files or self.facts.split_sizes.get("test"),
            "val_photos": self.facts.split_sizes.get("val"),
            "seconds": self.train_seconds,
            "started": status.started,
            "finished": status.finished,
            "has_model": self.has_model,
        }


def _object(path: Path) -> dict | None:
    """A run file that must hold one JSON object, `None` when it does not exist."""
    data = read_json(path, _ABSENT)
    if data is _ABSENT:
        return None
    if not isinstance(data, dict):
        raise corrupt(path, f"expected a JSON object, found {type(data).__name__}")
    return data


class RunStore:
    """Create, list, read and change the run folders under one root."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = resolve_runs_root(root)

    def create(
        self, config: dict, preset: str = "run", backbone: str = "", estimate: Estimate | None = None
    ) -> Path:
        """A new run folder with `config.json` and a `queued` status (holding the time `estimate`
        made as it was queued, if any); returns its path.

        Two sessions may create runs in the same second, so a taken id is retried; a write that
        fails (disk full, no permission) removes the half-made folder and raises one line.
        """
        with clear_write_errors():
            self.root.mkdir(parents=True, exist_ok=True)
            run_dir = self._new_folder(preset, backbone)
            try:
                write_json(run_dir / CONFIG, config)
                status = Status(
                    state="queued",
                    epochs=config.get("epochs", 0),
                    message="waiting to start",
                    queued=now_iso(),
                    queued_ns=time.time_ns(),
                    estimate=estimate,
                )
                write_json(run_dir / STATUS, status.to_json())
            except BaseException:
                shutil.rmtree(run_dir, ignore_errors=True)
                raise
            (self.root / QUEUE_SIGNAL).touch()
        return run_dir

    def _new_folder(self, preset: str, backbone: str) -> Path:
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        for _ in range(100):
            run_id = "-".join(filter(None, [stamp, preset, backbone, secrets.token_hex(2)]))
            try:
                (self.root / run_id).mkdir()
            except FileExistsError:
                continue
            return self.root / run_id
        raise FlowerError(f"could not find a free run id in {self.root}")

    def path(self, run_id: str) -> Path:
        """The folder of a run id, refusing ids that could leave the runs root."""
        if not _RUN_ID.match(run_id or ""):
            raise FlowerError(f"invalid run id. Received: {run_id!r}")
        run_dir = self.root / run_id
        if not (run_dir / CONFIG).is_file():
            raise FlowerError(f"no run '{run_id}' in {self.root}")
        return run_dir

    def run_dirs(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.iterdir() if (p / CONFIG).is_file())

    def summary(self, run_dir: Path) -> dict:
        """One row of the runs table (`Run.summary`)."""
        return Run.open(run_dir).summary()

    def list_runs(self) -> list[dict]:
        """Summaries of every run, newest first; an unreadable run is listed as `corrupt`, and a run
        deleted while the list is made is left out."""
        rows = []
        for run_dir in reversed(self.run_dirs()):
            try:
                rows.append(self.summary(run_dir))
            except (FlowerError, OSError) as error:
                if (run_dir / CONFIG).is_file():
                    rows.append({"run_id": run_dir.name, "state": "corrupt", "message": _one_line(error)})
        return rows

    def delete(self, run_id: str) -> None:
        run_dir = self.path(run_id)
        state = peek_status(run_dir).state
        if state in ACTIVE_STATES:
            raise FlowerError(f"run '{run_id}' is still {state}: cancel it first")
        shutil.rmtree(run_dir)

    def set_meta(self, run_id: str, *, name: str | None = None, tags: list[str] | None = None) -> Meta:
        """Rename (display name) or tag a run; the folder and its id never change."""
        run_dir = self.path(run_id)
        meta = _read(Meta, run_dir / META) or Meta()
        if name is not None:
            meta = dataclasses.replace(meta, name=name.strip() or run_id)
        if tags is not None:
            meta = dataclasses.replace(meta, tags=tuple(sorted({t.strip() for t in tags if t.strip()})))
        write_json(run_dir / META, meta.to_json())
        return meta


def _one_line(error: BaseException, limit: int = 300) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:limit]


def request_cancel(run_dir: Path) -> None:
    """Ask a run to stop; the trainer sees the flag within one batch."""
    (Path(run_dir) / CANCEL_FLAG).touch()


def cancel_requested(run_dir: Path) -> bool:
    return (Path(run_dir) / CANCEL_FLAG).exists()


def load_run_model(run_dir: Path):
    """The run's best model, loaded with Keras safe mode on: a model file is data, never code.

    Only a Keras v3 `.keras` zip is read (no HDF5, no pickles), and safe mode refuses Python
    lambdas and any class that is not Keras' own or registered by this package.
    """
    import keras

    from flower_core.models import classifier as _registers_custom_layers  # noqa: F401

    path = Path(run_dir) / MODEL
    if not path.is_file():
        raise FlowerError(f"run {Path(run_dir).name} has no model.keras yet")
    if not zipfile.is_zipfile(path):
        raise FlowerError(
            f"not a Keras model file (a .keras zip): {path}. Train the run again "
            "or copy its model.keras from a backup"
        )
    try:
        return keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as error:
        raise FlowerError(_load_error(path, error)) from None


def _load_error(path: Path, error: Exception) -> str:
    """One line for a model that Keras refused; its own messages run to several lines."""
    text = str(error)
    if "arbitrary code execution" in text or "safe_mode" in text:
        return (
            f"refused to load {path}: it holds Python code (e.g. a Lambda layer), which safe "
            "mode never runs. Load only models trained by this app"
        )
    return f"could not load {path}: {_one_line(error).split('. ')[0]}"
