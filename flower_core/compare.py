"""What the Compare page shows of the runs a user selects, gathered in one place."""

from __future__ import annotations

from flower_core.runs import CONFIG, METRICS, RunStore, read_history, read_json, run_facts


def run_details(runs_root, run_ids: list[str]) -> list[dict]:
    """Settings, summary row, history and metrics of each run, in the order given.

    Args:
        runs_root: the runs folder. `None` means `FLOWER_RUNS` or `runs/`.
        run_ids: the runs to read; an id that is not a run raises a one-line `FlowerError`.

    Returns:
        One dict per run: its `config.json` and facts (`runs.run_facts`) overlaid by its
        summary row, plus `history` (a list of epochs) and `metrics` (`{}` before the run is
        evaluated).
    """
    store = RunStore(runs_root)
    out = []
    for run_id in run_ids:
        run_dir = store.path(run_id)
        out.append({**(read_json(run_dir / CONFIG, {}) or {}), **run_facts(run_dir), **store.summary(run_dir),
                    "history": read_history(run_dir), "metrics": read_json(run_dir / METRICS, {}) or {}})
    return out
