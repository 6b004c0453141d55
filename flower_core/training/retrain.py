"""Train again on a dataset after fixing it, with the settings of its last run, so the Compare
page shows the run before the fixes beside the run after."""

from __future__ import annotations

import os
from pathlib import Path

from flower_core.config import TrainConfig
from flower_core.errors import FlowerError
from flower_core.store.runs import Run, RunStore
from flower_core.training import jobs


def last_run_on(data_root: str | os.PathLike, runs_root=None) -> tuple[str, TrainConfig] | None:
    """The newest run trained on `data_root` (by its resolved path): its id and settings."""
    wanted = str(Path(data_root).resolve())
    store = RunStore(runs_root)
    for run_dir in reversed(store.run_dirs()):
        try:
            config = Run.open(run_dir).config
        except (FlowerError, OSError):
            continue
        if config.data_root == wanted:
            return run_dir.name, config.settings
    return None


def train_again(data_root: str | os.PathLike, runs_root=None, token: str | None = None) -> Path:
    """Queue a run on `data_root` with the settings of its last run (a new split of the photos
    as they are now); its `config.json` names that run (`repeats`), so Compare shows the two as
    before and after (`evaluation.compare.retrain_pairs`).

    Raises:
        FlowerError: no run was trained on this dataset yet.
    """
    found = last_run_on(data_root, runs_root)
    if found is None:
        raise FlowerError(f"no run on {data_root} yet: train one on the Train page first, then train again")
    return jobs.submit(found[1], data_root, runs_root, token=token, extra={"repeats": found[0]})
