"""The experiment store: one folder per run, files written atomically
(docs/ARCHITECTURE.md, "The run folder").

Another process may read a run while it trains, and a training process may die at any moment,
so every file is replaced whole (temp file + rename) and `history.jsonl` only ever grows by
whole lines. A `running` run whose process is gone (or, trained on another host, whose
heartbeat is stale) reads as `interrupted`. A write that fails for lack of space or permission
becomes a one-line `FlowerError` that names the file (`clear_write_errors`).
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

from flower_core.errors import FlowerError

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
# What a run learned when it started (`run_facts`); `config.json` holds only the settings it was
# queued with and is never rewritten.
FACTS = "facts.json"
CANCEL_FLAG = "cancel.request"
# What a training logged, with the traceback behind a failure (`flower_core/store/logs.py`).
RUN_LOG = "run.log"
# Touched in the runs folder each time a run is queued: a waiting worker watches this one file
# instead of reading every run's status (`jobs.run_worker`).
QUEUE_SIGNAL = ".queued"
HEARTBEAT_TIMEOUT_S = 120
ACTIVE_STATES = ("queued", "running")
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,120}$")


def is_plain_id(name) -> bool:
    """True for a plain folder name (a run's or a group's id): no `/`, no leading dot, so
    `<runs>/<id>` cannot name a place outside the runs folder."""
    return isinstance(name, str) and bool(_RUN_ID.match(name))


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


# What each run file holds, checked whenever one is read (`read_json`): a field may be absent
# (older runs lack newer fields), but when present it has this kind; `?` allows null. Kinds:
# str, int, number, bool, dict, list, list[str], list[int], list[dict], matrix (rows of
# numbers), per_class (class -> {name: number}). config.json's settings take their kinds from
# `TrainConfig`'s fields (`_config_schema`); these are what a run adds to them.
_FACTS_SCHEMA = {
    "class_names": "list[str]",
    "dataset_fingerprint": "str",
    "skipped_files": "list",
    "split_sizes": "dict",
    "augment_cache": "str",
    "host": "str",
    "node": "str?",
}
# Runs written before `FACTS` existed added its facts to config.json when they started.
_RUN_CONFIG_SCHEMA = {"data_root": "str?", "split_file": "str?", **_FACTS_SCHEMA}
_FIELD_KINDS = {"int": "int", "float": "number", "str": "str", "bool": "bool", "list[int]": "list[int]"}
_STATUS_SCHEMA = {
    "state": "str",
    "epoch": "int",
    "epochs": "int",
    "message": "str",
    "queued": "str",
    "queued_ns": "int",
    "started": "str",
    "finished": "str",
    "heartbeat": "number",
    "pid": "int",
    "pid_start": "str?",
    "host": "str",
    "replicas": "int",
    "phase": "str?",
    "batch": "int?",
    "batches": "int?",
    "loss": "number?",
    "accuracy": "number?",
    "lr": "number?",
    "elapsed": "number?",
    "eta": "number?",
    "kept_epoch": "int?",
    "lost": "str",
}
_METRICS_SCHEMA = {
    "test_loss": "number?",
    "test_accuracy": "number?",
    "num_files": "int",
    "per_class": "per_class",
    "confusion": "matrix",
    "class_names": "list[str]",
    "most_confused": "list[dict]",
    "misclassified": "list[dict]",
    "calibration": "dict",
    "skipped": "list",
}
RUN_FILE_SCHEMAS = {
    STATUS: _STATUS_SCHEMA,
    METRICS: _METRICS_SCHEMA,
    META: {"name": "str", "tags": "list[str]"},
    FACTS: _FACTS_SCHEMA,
}
_NUMBER = (int, float)
_KIND_CHECKS: dict[str, Callable[[object], bool]] = {
    "str": lambda v: isinstance(v, str),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, _NUMBER) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool),
    "dict": lambda v: isinstance(v, dict),
    "list": lambda v: isinstance(v, list),
    "list[str]": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
    "list[int]": lambda v: isinstance(v, list) and all(_KIND_CHECKS["int"](x) for x in v),
    "list[dict]": lambda v: isinstance(v, list) and all(isinstance(x, dict) for x in v),
    "matrix": lambda v: (
        isinstance(v, list)
        and all(isinstance(row, list) and all(_KIND_CHECKS["number"](x) for x in row) for row in v)
    ),
    "per_class": lambda v: (
        isinstance(v, dict)
        and all(
            isinstance(row, dict) and all(_KIND_CHECKS["number"](x) for x in row.values())
            for row in v.values()
        )
    ),
}


@functools.cache
def _config_schema() -> dict[str, str]:
    """config.json's kinds: every `TrainConfig` field's (imported here, when a config is first
    read, so that this module stays free of TensorFlow), then what a run adds."""
    from flower_core.config import TrainConfig

    settings = {f.name: _FIELD_KINDS[f.type] for f in dataclasses.fields(TrainConfig)}
    return {**settings, **_RUN_CONFIG_SCHEMA}


def run_file_schema(name: str) -> dict[str, str] | None:
    """The schema of the run file called `name`, or `None` for a file without one."""
    return _config_schema() if name == CONFIG else RUN_FILE_SCHEMAS.get(name)


def _schema_problem(data, schema: dict[str, str]) -> str | None:
    """What is wrong with a run file's content, in a few words, or `None`."""
    if not isinstance(data, dict):
        return f"expected a JSON object, found {type(data).__name__}"
    for name, kind in schema.items():
        if name not in data or (kind.endswith("?") and data[name] is None):
            continue
        if not _KIND_CHECKS[kind.rstrip("?")](data[name]):
            shown = json.dumps(data[name])
            shown = shown if len(shown) <= 40 else f"{shown[:39]}…"
            return f"'{name}' should be {kind.rstrip('?')}, found {type(data[name]).__name__} {shown}"
    names, confusion = data.get("class_names"), data.get("confusion")
    if (
        schema is _METRICS_SCHEMA
        and names is not None
        and confusion is not None
        and (len(confusion) != len(names) or any(len(row) != len(names) for row in confusion))
    ):
        return f"'confusion' should be {len(names)} x {len(names)}, one row and column per class"
    return None


def write_json(path: Path, data) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=2) + "\n").encode())


def read_json(path: Path, default=None):
    """A JSON file; a run file with a schema (`RUN_FILE_SCHEMAS`) is checked against it, so a
    reader never meets a value of the wrong type. Raises one-line `FlowerError`s."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return default
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise FlowerError(f"corrupt run file {path}: {error}") from None
    schema = run_file_schema(Path(path).name)
    problem = schema and _schema_problem(data, schema)
    if problem:
        raise FlowerError(f"corrupt run file {path}: {problem}")
    return data


def read_record(path: Path) -> dict:
    """A run file that must hold one JSON object; `{}` when it does not exist yet."""
    record = read_json(path, default={})
    if not isinstance(record, dict):
        raise FlowerError(f"corrupt run file {path}: expected a JSON object, found {type(record).__name__}")
    return record


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


def read_history(run_dir: Path) -> list[dict]:
    """Finished epochs in order; a torn line (from a killed writer) or a non-object is skipped."""
    records = []
    try:
        lines = (Path(run_dir) / HISTORY).read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return records
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def run_facts(run_dir: Path) -> dict:
    """What a run learned when it started; every reader takes these facts from here.

    `class_names` (in label order), `dataset_fingerprint`, `skipped_files` (unreadable photos,
    each with its reason), `split_sizes` (photos in train / val / test) and `augment_cache`
    (how augmentation was cached as it ran: `views` where the maps were too small for `maps`),
    `host` (the machine that trained it) and `node` (its Ray node on a cluster, else `None`).
    Training writes them once, to `facts.json`, when its model is built; `{}` before that. A run
    written before that file existed added them to its `config.json`, and they are read there.

    Raises:
        FlowerError: the file is not valid JSON or holds a value of the wrong kind (one line).
    """
    facts = read_json(Path(run_dir) / FACTS)
    if facts is not None:
        return facts
    config = read_record(Path(run_dir) / CONFIG)
    if "class_names" not in config:  # queued, or stopped before it learned anything
        return {}
    return {name: config[name] for name in _FACTS_SCHEMA if name in config}


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


def read_status(run_dir: Path) -> dict:
    """`status.json`, with a `running` run whose process is gone reported as `interrupted`.

    On this host the trainer's pid (and its start time) decides; a run trained on another host
    sharing the folder is judged by its heartbeat, or by `lost`, which the queue writes when the
    cluster task training it died (`jobs._settle`).
    """
    status = read_record(Path(run_dir) / STATUS) or {"state": "unknown"}
    if status.get("state") == "running" and (status.get("lost") or not _trainer_alive(status)):
        status = {
            **status,
            "state": "interrupted",
            "message": "the training process stopped "
            f"without finishing (killed or crashed); {kept_model_note(run_dir, status)}",
        }
    return status


def kept_model_note(run_dir: Path, status: dict | None = None) -> str:
    """What a stopped run kept, exactly: which epoch's model `model.keras` holds, or none."""
    status = read_record(Path(run_dir) / STATUS) if status is None else status
    if not (Path(run_dir) / MODEL).is_file():
        return "no model was kept (none had been saved yet)"
    epoch = status.get("kept_epoch")
    return (
        f"the model of epoch {epoch} (the best until then) is kept"
        if epoch
        else "the last saved model is kept"
    )


def peek_status(run_dir: Path) -> dict:
    """`read_status` for lists, queues and pages: an unreadable `status.json` (half-copied,
    edited by hand) reads as state `corrupt` with the reason, instead of raising."""
    try:
        return read_status(run_dir)
    except (FlowerError, OSError) as error:
        return {"state": "corrupt", "message": _one_line(error)}


def _trainer_alive(status: dict) -> bool:
    if status.get("host") == os.uname().nodename and isinstance(status.get("pid"), int):
        return pid_alive(status["pid"], status.get("pid_start"))
    heartbeat = status.get("heartbeat")
    return isinstance(heartbeat, int | float) and time.time() - heartbeat <= HEARTBEAT_TIMEOUT_S


class RunStore:
    """Create, list, read and change the run folders under one root."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = resolve_runs_root(root)

    def create(self, config: dict, preset: str = "run", backbone: str = "") -> Path:
        """A new run folder with `config.json` and a `queued` status; returns its path.

        Two sessions may create runs in the same second, so a taken id is retried; a write that
        fails (disk full, no permission) removes the half-made folder and raises one line.
        """
        with clear_write_errors():
            self.root.mkdir(parents=True, exist_ok=True)
            run_dir = self._new_folder(preset, backbone)
            try:
                write_json(run_dir / CONFIG, config)
                write_json(
                    run_dir / STATUS,
                    {
                        "state": "queued",
                        "epoch": 0,
                        "epochs": config.get("epochs", 0),
                        "message": "waiting to start",
                        "queued": now_iso(),
                        "queued_ns": time.time_ns(),
                    },
                )
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
        """One row of the runs table: settings, state, best validation and test results."""
        config = read_record(run_dir / CONFIG)
        status = read_status(run_dir)
        history = read_history(run_dir)
        metrics = read_record(run_dir / METRICS)
        meta = read_record(run_dir / META)
        facts = run_facts(run_dir)
        val_accs = [h["val_accuracy"] for h in history if h.get("val_accuracy") is not None]
        return {
            "run_id": run_dir.name,
            "name": meta.get("name", run_dir.name),
            "tags": meta.get("tags", []),
            "preset": config.get("preset"),
            "backbone": config.get("backbone"),
            "weights": config.get("weights"),
            "image_size": config.get("image_size"),
            "batch_size": config.get("batch_size"),
            "dropout": config.get("dropout"),
            "augment": config.get("augment"),
            "augment_cache": _augmented_as(config, facts),
            "seed": config.get("seed"),
            "group": config.get("group"),
            "group_label": config.get("group_label"),
            "state": status.get("state"),
            "epochs_done": len(history),
            "best_val_accuracy": max(val_accs) if val_accs else None,
            "test_accuracy": metrics.get("test_accuracy"),
            "test_loss": metrics.get("test_loss"),
            "seconds": round(sum(h.get("seconds", 0) for h in history), 1),
            "started": status.get("started"),
            "finished": status.get("finished"),
            "has_model": (run_dir / MODEL).is_file(),
        }

    def list_runs(self) -> list[dict]:
        """Summaries of every run, newest first; an unreadable run is listed as `corrupt`, and a run
        deleted while the list is made is left out."""
        rows = []
        for run_dir in reversed(self.run_dirs()):
            try:
                rows.append(self.summary(run_dir))
            except FileNotFoundError:
                continue
            except (FlowerError, OSError, TypeError, ValueError) as error:
                rows.append({"run_id": run_dir.name, "state": "corrupt", "message": _one_line(error)})
        return rows

    def delete(self, run_id: str) -> None:
        run_dir = self.path(run_id)
        state = peek_status(run_dir).get("state")
        if state in ACTIVE_STATES:
            raise FlowerError(f"run '{run_id}' is still {state}: cancel it first")
        shutil.rmtree(run_dir)

    def set_meta(self, run_id: str, *, name: str | None = None, tags: list[str] | None = None) -> dict:
        """Rename (display name) or tag a run; the folder and its id never change."""
        run_dir = self.path(run_id)
        meta = read_record(run_dir / META)
        if name is not None:
            meta["name"] = name.strip() or run_id
        if tags is not None:
            meta["tags"] = sorted({t.strip() for t in tags if t.strip()})
        write_json(run_dir / META, meta)
        return meta


def _augmented_as(config: dict, facts: dict) -> str | None:
    """How a run's augmentation reached the head: cached `maps` or `views` (as it ran, once the
    run has started), `on the fly` when the whole network saw the photos, `None` without
    augmentation."""
    if not config.get("augment"):
        return None
    if not config.get("cache_features", True) or config.get("weights") == "none":
        return "on the fly"
    # Runs from before the option cached views.
    return facts.get("augment_cache", config.get("augment_cache", "views"))


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
