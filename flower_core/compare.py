"""What the Compare page shows: the runs table's columns (all of them, and the compact set
shown by default), and the details of the runs a user selects, gathered in one place."""

from __future__ import annotations

from collections.abc import Iterable

from flower_core.errors import FlowerError
from flower_core.runs import Run, RunStore

# The runs table's columns, in order: the run's name, its state and results first, then the
# settings that tell runs apart, then the rest (keys of `RunStore.summary`, plus `label`).
TABLE_COLUMNS = (
    "label",
    "state",
    "test_accuracy",
    "test_loss",
    "best_val_accuracy",
    "preset",
    "backbone",
    "image_size",
    "started",
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
