"""Groups of runs queued together (a study, a sweep): one split, one id, one cancel, one delete.

A group is a list of configs queued at once. Each run's `config.json` carries the group's id
(`group`), its kind (`group_kind`), the run's place in it (`group_label`: a preset, `baseline`,
or a sweep's settings) and the group's shared split file, and the id is also one of the run's
tags, so the group can be found from the Compare page's search box as well. The first run of the
group to train writes the shared split (`share_split`); every other run reads it, so every run of
a study or sweep is scored on the same test photos.

The group's own folder, `<runs>/.groups/<id>/`, holds `group.json` (kind, when, what was asked)
and the shared `split.json`; it is not a run folder (no `config.json`), so run lists skip it.
Anyone who can write in the runs folder can plant a `group.json`, so a group's id must be a plain
name and its file is checked before it is used (`group_record`): the fields the code reads, and
every run it lists inside the runs folder, links followed; cancel and delete act on nothing else.
"""

from __future__ import annotations

import datetime as dt
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from flower_core.config import TrainConfig
from flower_core.errors import FlowerError
from flower_core.models.backbones import weights_file
from flower_core.store.runs import (
    ACTIVE_STATES,
    CONFIG,
    GROUPS_DIR,
    SPLIT,
    Run,
    RunStore,
    clear_write_errors,
    group_dir,
    is_plain_id,
    now_iso,
    peek_status,
    read_json,
    write_json,
)
from flower_core.training import jobs

GROUP_FILE = "group.json"
# How long `wait_group` lets a queue go without a worker before it starts one.
WORKER_RESTART_S = 120.0
# The fields of `group.json` the code reads, and what each must be.
_GROUP_FIELDS = {"id": str, "kind": str, "created": str, "info": dict, "runs": list}


@dataclass(frozen=True)
class Planned:
    """One run of a group before it is queued: its label in the group and its config."""

    label: str
    config: TrainConfig


def check_weights_files(planned: list[Planned]) -> list[Planned]:
    """`planned`, once every weights file it names passed train's check (`weights_file`: it exists
    and lies inside `FLOWER_ALLOWED_ROOTS`): the time estimate reads those files before any run is
    queued."""
    for weights in dict.fromkeys(item.config.weights for item in planned):
        if weights not in ("imagenet", "none"):
            weights_file(weights)
    return planned


def _leads_out(root: Path, path: Path) -> bool:
    """True when `path`, links followed, is not the place its name says under the runs folder."""
    return path.resolve() != root.resolve() / path.relative_to(root)


def new_group_id(kind: str) -> str:
    """`<kind>-<time>-<4 hex>`: sorts by time, readable as a tag."""
    return f"{kind}-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def submit_group(
    kind: str,
    planned: list[Planned],
    data_root,
    runs_root=None,
    *,
    info: dict | None = None,
    start: bool = True,
) -> dict:
    """Queue every planned run as one group sharing one split; returns the group record.

    Every config is checked before anything is written, so a bad one queues nothing; a write
    that fails half-way (disk full) removes the runs already made.

    Args:
        kind: `study` or `sweep`; the id starts with it.
        planned: the runs, in the order they will train.
        data_root: the dataset folder, the same for every run.
        runs_root: the runs folder. Defaults to `FLOWER_RUNS` or `runs/`.
        info: what was asked (presets, grid, ...), kept in `group.json`. Defaults to `None`.
        start: start the worker once everything is queued. Defaults to `True`.

    Returns:
        The group record: id, kind, created, data_root, runs (ids in order) and `info`.
    """
    if not planned:
        raise FlowerError(f"a {kind} needs at least one run")
    for item in planned:
        item.config.validate()
    store = RunStore(runs_root)
    group_id = new_group_id(kind)
    folder = group_dir(store.root, group_id)
    record = {
        "id": group_id,
        "kind": kind,
        "created": now_iso(),
        "data_root": str(Path(data_root).resolve()),
        "info": info or {},
        "runs": [],
    }
    from flower_core.training.estimate import estimate_group

    estimates = estimate_group([item.config for item in planned], data_root, runs_root=store.root)["runs"]
    made: list[Path] = []
    try:
        with clear_write_errors():
            folder.mkdir(parents=True)
            for item, estimate in zip(planned, estimates, strict=True):
                extra = {
                    "group": group_id,
                    "group_kind": kind,
                    "group_label": item.label,
                    "split_file": str((folder / SPLIT).resolve()),
                    "share_split": True,
                }
                made.append(
                    jobs.submit(
                        item.config, data_root, store.root, extra=extra, start=False, estimate=estimate
                    )
                )
                store.set_meta(made[-1].name, tags=[group_id])
            record["runs"] = [run_dir.name for run_dir in made]
            write_json(folder / GROUP_FILE, record)
    except BaseException:
        for run_dir in made:
            shutil.rmtree(run_dir, ignore_errors=True)
        shutil.rmtree(folder, ignore_errors=True)
        raise
    if start:
        jobs.start_worker(store.root)
    return record


def list_groups(runs_root=None, kind: str | None = None) -> list[dict]:
    """Every group's record, newest first (optionally of one kind)."""
    root = RunStore(runs_root).root / GROUPS_DIR
    records = []
    for folder in sorted(root.iterdir(), reverse=True) if root.is_dir() else []:
        try:
            record = group_record(runs_root, folder.name)
        except FlowerError:
            continue
        if kind is None or record["kind"] == kind:
            records.append(record)
    return records


def group_record(runs_root, group_id: str) -> dict:
    """A group's `group.json`, checked (`_record_problem`): a damaged or planted file is one line.

    Raises:
        FlowerError: no such group, or its file is malformed or lists a run outside the runs folder.
    """
    root = RunStore(runs_root).root
    folder = group_dir(root, group_id)
    if _leads_out(root, folder):
        raise FlowerError(
            f"the group folder {folder} leads outside the runs folder {root.resolve()}; "
            "remove that link by hand"
        )
    record = read_json(folder / GROUP_FILE)
    if record is None:
        raise FlowerError(f"no study or sweep '{group_id}' in {root}")
    problem = _record_problem(record, group_id, root)
    if problem:
        raise FlowerError(
            f"corrupt group file {folder / GROUP_FILE}: {problem}; remove that folder by hand "
            "if it is not a study or sweep of yours"
        )
    return record


def _record_problem(record, group_id: str, root: Path) -> str | None:
    """What is wrong with a `group.json`, in a few words, or `None`."""
    if not isinstance(record, dict):
        return f"expected a JSON object, found {type(record).__name__}"
    for key, kind in _GROUP_FIELDS.items():
        if not isinstance(record.get(key), kind):
            found = type(record[key]).__name__ if key in record else "nothing"
            return f"'{key}' should be {kind.__name__}, found {found}"
    if record["id"] != group_id:
        return f"it names the group {record['id']!r}, not {group_id!r}"
    if record["kind"] == "sweep" and not isinstance(record["info"].get("grid"), dict):
        return "a sweep's 'info' should hold its 'grid' object"
    for run_id in record["runs"]:
        if not is_plain_id(run_id) or _leads_out(root, root / run_id):
            return f"it lists the run {run_id!r}, outside the runs folder {root.resolve()}"
    return None


def group_run_dirs(runs_root, group_id: str) -> list[Path]:
    """The group's run folders that still exist, in queue order. A run is the group's only when
    its own `config.json` says so too: a planted `group.json` cannot claim another's runs.

    Raises:
        FlowerError: the group file lists a run of another group, or of none.
    """
    store = RunStore(runs_root)
    run_dirs = []
    for run_id in group_record(store.root, group_id)["runs"]:
        config = read_json(store.root / run_id / CONFIG)
        if config is None:
            continue
        if not isinstance(config, dict) or config.get("group") != group_id:
            raise FlowerError(
                f"corrupt group file {group_dir(store.root, group_id) / GROUP_FILE}: it lists the run "
                f"{run_id!r}, which is not a run of {group_id!r}; remove that folder by hand if it is "
                "not a study or sweep of yours"
            )
        run_dirs.append(store.root / run_id)
    return run_dirs


def group_rows(runs_root, group_id: str) -> list[dict]:
    """The runs table's rows of the group's runs, each with its full config (`config`) and its
    place in the group (`group_label`), in queue order."""
    store = RunStore(runs_root)
    rows = []
    for run_dir in group_run_dirs(store.root, group_id):
        try:
            run = Run.open(run_dir)
            summary, config = run.summary(), run.config.to_json()
        except (FlowerError, OSError) as error:
            summary, config = {"run_id": run_dir.name, "state": "corrupt", "message": str(error)}, {}
        rows.append({**summary, "config": config, "group_label": config.get("group_label")})
    return rows


def cancel_group(runs_root, group_id: str) -> int:
    """Cancel the group's queued and running runs; finished runs are kept. Returns how many."""
    cancelled = 0
    for run_dir in group_run_dirs(runs_root, group_id):
        if peek_status(run_dir).state in ACTIVE_STATES:
            jobs.cancel(run_dir)
            cancelled += 1
    return cancelled


def delete_group(runs_root, group_id: str) -> int:
    """Delete every run of a group and its folder; refuses while a run is queued or running."""
    store = RunStore(runs_root)
    run_dirs = group_run_dirs(store.root, group_id)
    active = [d.name for d in run_dirs if peek_status(d).state in ACTIVE_STATES]
    if active:
        raise FlowerError(
            f"{len(active)} run(s) of {group_id} are still queued or running: "
            "cancel the group first, then delete it"
        )
    for run_dir in run_dirs:
        shutil.rmtree(run_dir)
    shutil.rmtree(group_dir(store.root, group_id), ignore_errors=True)
    return len(run_dirs)


def state_counts(rows: list[dict]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.get("state") or "unknown"] = counts.get(row.get("state") or "unknown", 0) + 1
    return counts


def wait_group(
    runs_root, group_id: str, *, poll_s: float = 1.0, timeout_s: float | None = None, on_change=None
) -> list[dict]:
    """Block until no run of the group is queued or running; returns the final rows.

    A queued run needs a worker: if none has held the runs folder for `WORKER_RESTART_S` (it
    died), one is started again. Not sooner: a new worker takes many seconds to import
    TensorFlow before it holds the lock, and each extra one started meanwhile costs as much.
    """
    store = RunStore(runs_root)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    last, seen_worker = None, time.monotonic()
    while True:
        rows = group_rows(store.root, group_id)
        counts = state_counts(rows)
        if counts != last and on_change:
            on_change(counts)
        last = counts
        if not any(counts.get(state) for state in ACTIVE_STATES):
            return rows
        if counts.get("running") or jobs.worker_active(store.root):
            seen_worker = time.monotonic()
        elif time.monotonic() - seen_worker > WORKER_RESTART_S:
            jobs.start_worker(store.root)
            seen_worker = time.monotonic()
        if deadline is not None and time.monotonic() > deadline:
            raise FlowerError(f"{group_id} did not finish within {timeout_s:.0f} s: {counts}")
        time.sleep(poll_s)
