"""What the Compare page shows: the runs table's columns (all of them, and the compact set
shown by default), how a run is named and runs are ranked, the details of the runs a user
selects, and each run trained again on a cleaned dataset beside the run it repeats, gathered in
one place."""

from __future__ import annotations

import math
from collections.abc import Iterable

from flower_core.errors import FlowerError
from flower_core.evaluation.uncertainty import interval_range, within_noise
from flower_core.store.runs import Run, RunStore

# The runs table's columns, in order: the run's name, its state and results first, then the
# settings that tell runs apart, then the rest (keys of `RunStore.summary`, plus `label` and
# `test_ci`, the test accuracy's 95% interval: `table_rows`).
TABLE_COLUMNS = (
    "label",
    "state",
    "test_accuracy",
    "test_ci",
    "best_val_accuracy",
    "preset",
    "backbone",
    "image_size",
    "started",
    "test_loss",
    "weights",
    "batch_size",
    "dropout",
    "augment",
    "augment_cache",
    "seconds",
    "tags",
    "run_id",
)
# The columns shown until a user asks for more: few and narrow enough that the table fits a
# laptop window (1400 px) without scrolling sideways.
COMPACT_COLUMNS = TABLE_COLUMNS[: TABLE_COLUMNS.index("started") + 1]
MORE_COLUMNS = tuple(column for column in TABLE_COLUMNS if column not in COMPACT_COLUMNS)


def table_columns(more: Iterable[str] = ()) -> list[str]:
    """The runs table's columns to show: the compact set plus the `more` a user chose.

    Args:
        more: columns of `MORE_COLUMNS`, in any order. Defaults to none.

    Returns:
        The columns in the table's order (`TABLE_COLUMNS`).

    Example:

    >>> table_columns(["run_id"])[-2:]
    ['started', 'run_id']
    """
    more = set(more)
    unknown = sorted(more - set(MORE_COLUMNS))
    if unknown:
        raise FlowerError(
            f"unknown runs-table column {unknown[0]!r}; choose from "
            f"{', '.join(MORE_COLUMNS)}. Received: {sorted(more)}"
        )
    return [column for column in TABLE_COLUMNS if column in COMPACT_COLUMNS or column in more]


def table_rows(rows: list[dict]) -> list[dict]:
    """`RunStore.summary` rows with `test_ci`: the test accuracy's 95% Wilson interval on the
    run's test photos (`70–97%`), `''` before the run is evaluated."""
    return [
        {**row, "test_ci": interval_range(row.get("test_accuracy"), row.get("test_photos"))} for row in rows
    ]


def run_label(row: dict) -> str:
    """How a run is named in lists, tables and charts: the name a user gave it, else
    `preset · backbone · ` and the last part of its id (its random suffix).

    Args:
        row: a runs-table row (`RunStore.summary`): `run_id`, and `name`, `preset`, `backbone`.

    Example:

    >>> run_label({"run_id": "20260101-000000-base-vgg16-ab12", "preset": "base", "backbone": "vgg16"})
    'base · vgg16 · ab12'
    """
    if row.get("name") and row["name"] != row["run_id"]:
        return row["name"]
    return f"{row.get('preset')} · {row.get('backbone')} · {row['run_id'].rsplit('-', 1)[-1]}"


def _test_accuracy(row: dict) -> float | None:
    score = row.get("test_accuracy")
    return None if score is None or math.isnan(score) else float(score)  # NaN: a table's empty cell


def best_first(rows: Iterable[dict]) -> list[dict]:
    """Runs by test accuracy, best first; runs not evaluated yet last, in the order given.

    Args:
        rows: runs-table rows with `test_accuracy` (`None`, or NaN from a table, when unknown).

    Example:

    >>> [row["run_id"] for row in best_first([{"run_id": "a"}, {"run_id": "b", "test_accuracy": 0.9}])]
    ['b', 'a']
    """
    return sorted(rows, key=lambda row: (_test_accuracy(row) is None, -(_test_accuracy(row) or 0.0)))


def best_evaluated(rows: Iterable[dict], count: int) -> list[dict]:
    """The `count` runs with the best test accuracies (fewer when fewer were evaluated)."""
    return [row for row in best_first(rows) if _test_accuracy(row) is not None][:count]


def retrain_pairs(rows: Iterable[dict]) -> list[dict]:
    """Each run trained again on a cleaned dataset (`training.retrain`: `repeats` names the run
    whose settings it took) beside that run: before and after, in the order given.

    Args:
        rows: runs-table rows (`RunStore.summary`): `run_id`, `repeats`, `test_accuracy` and
            `test_photos`.

    Returns:
        One dict per pair: `before` and `after` (their rows), `change` (after's test accuracy
        minus before's) and `within_noise` (each accuracy measured on its own test photos:
        `uncertainty.within_noise`), both `None` until the two runs are evaluated.

    Example:

    >>> rows = [{"run_id": "b", "repeats": "a", "test_accuracy": 0.95, "test_photos": 20},
    ...         {"run_id": "a", "test_accuracy": 0.9, "test_photos": 20}]
    >>> [(p["before"]["run_id"], p["after"]["run_id"], round(p["change"], 2), p["within_noise"])
    ...  for p in retrain_pairs(rows)]
    [('a', 'b', 0.05, True)]
    """
    rows = list(rows)
    by_id = {row["run_id"]: row for row in rows}
    pairs = []
    for after in rows:
        before = by_id.get(after.get("repeats"))
        if before is None:
            continue
        scores = (_test_accuracy(before), _test_accuracy(after))
        photos = (before.get("test_photos"), after.get("test_photos"))
        known = None not in scores and all(photos)
        pairs.append(
            {
                "before": before,
                "after": after,
                "change": scores[1] - scores[0] if known else None,
                "within_noise": within_noise(*scores, *photos) if known else None,
            }
        )
    return pairs


def run_details(runs_root, run_ids: list[str]) -> list[dict]:
    """Settings, summary row, history and metrics of each run, in the order given.

    Args:
        runs_root: the runs folder. `None` means `FLOWER_RUNS` or `runs/`.
        run_ids: the runs to read; an id that is not a run raises a one-line `FlowerError`.

    Returns:
        One dict per run: its settings and facts (`runs.Run`) overlaid by its summary row, plus
        `history` (its `HistoryRow`s) and `metrics` (its `Metrics`, empty before the run is
        evaluated).
    """
    store = RunStore(runs_root)
    out = []
    for run_id in run_ids:
        run = Run.open(store.path(run_id))
        out.append(
            {
                **run.config.to_json(),
                **run.facts.to_json(),
                **run.summary(),
                "history": run.history,
                "metrics": run.metrics,
            }
        )
    return out
