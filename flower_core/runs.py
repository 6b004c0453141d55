"""The experiment store: one folder per run, files written atomically (DESIGN.md, "A run folder").

Another process may read a run while it trains, and a training process may die at any moment,
so every file is replaced whole (temp file + rename) and `history.jsonl` only ever grows by
whole lines. A `running` run whose process is gone, or whose heartbeat is stale, reads as
`interrupted`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import secrets
import shutil
import tempfile
import time
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
CANCEL_FLAG = "cancel.request"
HEARTBEAT_TIMEOUT_S = 120
ACTIVE_STATES = ("queued", "running")
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,120}$")


def resolve_runs_root(explicit: str | os.PathLike | None = None) -> Path:
    """The runs folder: `explicit`, else `FLOWER_RUNS`, else `runs/`."""
    return Path(explicit or os.environ.get("FLOWER_RUNS") or DEFAULT_RUNS_DIR)


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to a temp file in the same folder, fsync, then rename over `path`."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=2) + "\n").encode())


def read_json(path: Path, default=None):
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return default
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise FlowerError(f"corrupt run file {path}: {error}") from None


def append_jsonl(path: Path, record: dict) -> None:
    """Append one whole line and fsync, so a crash never leaves half a record behind."""
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def read_history(run_dir: Path) -> list[dict]:
    """Finished epochs in order; a torn last line (from a killed writer) is ignored."""
    records = []
    try:
        lines = (Path(run_dir) / HISTORY).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return records
    for line in lines:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def _pid_alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def read_status(run_dir: Path) -> dict:
    """`status.json`, with a dead or silent `running` run reported as `interrupted`."""
    status = read_json(Path(run_dir) / STATUS, default=None) or {"state": "unknown"}
    if status.get("state") == "running":
        age = time.time() - status.get("heartbeat", 0)
        same_host = status.get("host") == os.uname().nodename
        if (same_host and not _pid_alive(status.get("pid"))) or age > HEARTBEAT_TIMEOUT_S:
            status = {**status, "state": "interrupted", "message": "the training process stopped "
                      "without finishing (killed or crashed); the best model so far is kept"}
    return status


class RunStore:
    """Create, list, read and change the run folders under one root."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = resolve_runs_root(root)

    def create(self, config: dict, preset: str = "run", backbone: str = "") -> Path:
        """A new run folder with `config.json` and a `queued` status; returns its path."""
        self.root.mkdir(parents=True, exist_ok=True)
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        run_id = "-".join(filter(None, [stamp, preset, backbone, secrets.token_hex(2)]))
        run_dir = self.root / run_id
        run_dir.mkdir()
        write_json(run_dir / CONFIG, config)
        write_json(run_dir / STATUS, {"state": "queued", "epoch": 0, "epochs": config.get("epochs", 0),
                                      "message": "waiting to start", "queued": now_iso()})
        return run_dir

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
        config = read_json(run_dir / CONFIG, default={}) or {}
        status = read_status(run_dir)
        history = read_history(run_dir)
        metrics = read_json(run_dir / METRICS, default={}) or {}
        meta = read_json(run_dir / META, default={}) or {}
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
            "state": status.get("state"),
            "epochs_done": len(history),
            "best_val_accuracy": max(val_accs) if val_accs else None,
            "test_accuracy": metrics.get("test_accuracy"),
            "test_loss": metrics.get("test_loss"),
            "seconds": round(sum(h.get("seconds", 0) for h in history), 1),
            "started": status.get("started"),
            "has_model": (run_dir / MODEL).is_file(),
        }

    def list_runs(self) -> list[dict]:
        """Summaries of every run, newest first; an unreadable run is listed as `corrupt`."""
        rows = []
        for run_dir in reversed(self.run_dirs()):
            try:
                rows.append(self.summary(run_dir))
            except FlowerError as error:
                rows.append({"run_id": run_dir.name, "state": "corrupt", "message": str(error)})
        return rows

    def delete(self, run_id: str) -> None:
        run_dir = self.path(run_id)
        if read_status(run_dir).get("state") in ACTIVE_STATES:
            raise FlowerError(f"run '{run_id}' is still {read_status(run_dir)['state']}: cancel it first")
        shutil.rmtree(run_dir)

    def set_meta(self, run_id: str, *, name: str | None = None, tags: list[str] | None = None) -> dict:
        """Rename (display name) or tag a run; the folder and its id never change."""
        run_dir = self.path(run_id)
        meta = read_json(run_dir / META, default={}) or {}
        if name is not None:
            meta["name"] = name.strip() or run_id
        if tags is not None:
            meta["tags"] = sorted({t.strip() for t in tags if t.strip()})
        write_json(run_dir / META, meta)
        return meta


def request_cancel(run_dir: Path) -> None:
    """Ask a run to stop; the trainer sees the flag within one batch."""
    (Path(run_dir) / CANCEL_FLAG).touch()


def cancel_requested(run_dir: Path) -> bool:
    return (Path(run_dir) / CANCEL_FLAG).exists()


def load_run_model(run_dir: Path):
    """The run's best model, loaded with Keras safe mode on (no code runs from the file)."""
    import keras

    from flower_core import model as _registers_custom_layers  # noqa: F401

    path = Path(run_dir) / MODEL
    if not path.is_file():
        raise FlowerError(f"run {Path(run_dir).name} has no model.keras yet")
    try:
        return keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as error:
        raise FlowerError(f"could not load {path}: {error}") from None
