"""Sweeps: a grid, or a random sample of it, over training settings, queued as one group.

The settings a sweep may vary, and how their values are read, come from `TrainConfig`'s fields
(names and types), less the few that must stay fixed across a sweep (`FIXED`); values are then
checked by `TrainConfig.validate`, so a sweep accepts exactly what a run accepts. All runs of a
sweep share one split (`flower_core.groups.group`) and, when they differ only in head settings, one
feature-cache entry: one backbone pass over the photos for the whole sweep.

The best combination is chosen on validation accuracy, and only when it leads by more than the
validation photos' noise (`evaluation.uncertainty.within_noise`): combinations within noise of
the top one, or equal to it, are a tie, and a tie has no single best.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import random
import statistics

from flower_core.config import (
    DEFAULT_MAX_RUNS,
    SETTINGS,
    TrainConfig,
    check_seeds,
    make_config,
    parse_setting,
)
from flower_core.errors import FlowerError
from flower_core.evaluation.uncertainty import wilson_interval, within_noise
from flower_core.groups.group import Planned, check_weights_files, state_counts, submit_group

KIND = "sweep"
# Settings a sweep cannot vary: what it starts from, what `--seeds` repeats, and the split
# fractions (every run of a sweep reads the group's one split).
FIXED = {
    "preset": "choose it with --preset",
    "seed": "use --seeds to repeat each combination",
    "val_fraction": "a sweep's runs share one split",
    "test_fraction": "a sweep's runs share one split",
}


def sweepable() -> dict[str, str]:
    """The settings a sweep may vary, each with its type as `TrainConfig` declares it."""
    return {
        f.name: str(f.type)
        for f in dataclasses.fields(TrainConfig)
        if f.name in SETTINGS and f.name not in FIXED
    }


def parse_value(name: str, text: str):
    """One value of setting `name` from text (`config.parse_setting`); a list (`dense_units`) is
    written `512/128`, since commas separate a grid's values (any other value, a weights path
    included, is read as typed)."""
    if not text.strip():
        raise FlowerError(f"empty value for {name}")
    return parse_setting(name, text.replace("/", ",") if sweepable()[name] == "list[int]" else text)


def parse_grid(text: str) -> dict[str, list]:
    """`"dropout=0.2,0.5;learning_rate=1e-3,1e-4"` as `{"dropout": [0.2, 0.5], ...}`.

    Names may use dashes (`learning-rate`); a list value (`dense_units`) is written `512/128`.
    """
    grid: dict[str, list] = {}
    for part in filter(str.strip, (text or "").split(";")):
        name, sep, values = part.partition("=")
        name = name.strip().replace("-", "_")
        if not sep:
            raise FlowerError(f"each part of the grid is name=value,value. Received: {part.strip()!r}")
        if name in FIXED:
            raise FlowerError(f"a sweep cannot vary {name}: {FIXED[name]}")
        if name not in sweepable():
            raise FlowerError(f"unknown training setting '{name}'. Choose from: {', '.join(sweepable())}")
        if name in grid:
            raise FlowerError(f"{name} appears twice in the grid")
        parsed = [parse_value(name, value) for value in values.split(",") if value.strip()]
        if not parsed:
            raise FlowerError(f"no values for {name}. Received: {part.strip()!r}")
        grid[name] = list(dict.fromkeys(map(_hashable, parsed)))
        grid[name] = [list(v) if isinstance(v, tuple) else v for v in grid[name]]
    if not grid:
        raise FlowerError('empty grid: give at least one setting, e.g. --grid "dropout=0.2,0.5"')
    return grid


def _hashable(value):
    return tuple(value) if isinstance(value, list) else value


def combination_count(grid: dict[str, list]) -> int:
    """How many combinations the grid has, counted without building any."""
    return math.prod(len(values) for values in grid.values())


def _combination(grid: dict[str, list], index: int) -> dict:
    """The `index`-th combination in `itertools.product`'s order (the last setting varies fastest)."""
    picked = {}
    for name in reversed(grid):
        index, position = divmod(index, len(grid[name]))
        picked[name] = grid[name][position]
    return {name: picked[name] for name in grid}


def combinations(grid: dict[str, list], samples: int | None = None, seed: int = 0) -> list[dict]:
    """Every combination of the grid, or `samples` of them drawn at random (seeded, no repeats);
    a sample is drawn by index, so only the combinations drawn are ever built."""
    count = combination_count(grid)
    if samples is None or samples >= count:
        return [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    if samples < 1:
        raise FlowerError(f"samples must be at least 1. Received: samples={samples}")
    return [_combination(grid, index) for index in random.Random(seed).sample(range(count), samples)]


def combo_label(combo: dict) -> str:
    return " ".join(f"{k}={'/'.join(map(str, v)) if isinstance(v, list) else v}" for k, v in combo.items())


def plan_sweep(
    preset: str,
    grid: dict[str, list],
    *,
    samples: int | None = None,
    seeds: int = 1,
    max_runs: int = DEFAULT_MAX_RUNS,
    **common,
) -> list[Planned]:
    """The runs of a sweep: each combination (over `preset` and `common` settings) x seeds.

    Raises a `FlowerError`, before anything is queued, for seeds outside 1 to `MAX_SEEDS`, more
    than `max_runs` runs (counted from the grid's lengths, before any combination is built), a
    value `TrainConfig` refuses, or a weights file train would refuse.
    """
    check_seeds(seeds)
    count = combination_count(grid)
    runs = (count if samples is None else min(samples, count)) * seeds
    if runs > max_runs:
        raise FlowerError(
            f"the sweep would queue {runs:,} runs, more than the maximum of "
            f"{max_runs}: use fewer values or a random sample of the combinations"
        )
    planned = [
        Planned(combo_label(combo), make_config(preset, **{**common, **combo, "seed": seed}))
        for combo in combinations(grid, samples)
        for seed in range(seeds)
    ]
    return check_weights_files(planned)


def start_sweep(
    data_root, runs_root=None, *, preset: str, grid: dict[str, list], start: bool = True, **options
) -> dict:
    """Queue a sweep (see `plan_sweep`) as one group; returns the group record."""
    planned = plan_sweep(preset, grid, **options)
    info = {"preset": preset, "grid": grid, **{k: v for k, v in options.items() if v is not None}}
    return submit_group(KIND, planned, data_root, runs_root, info=info, start=start)


def sweep_results(rows: list[dict], settings: list[str]) -> list[dict]:
    """One row per combination: its settings, mean validation and test accuracy over its finished
    seeds, the photos each was measured on, the test accuracy's 95% Wilson interval, whether it
    is among the leaders (`leaders`), and how many runs are still queued or training. Best
    validation first."""
    combos: dict[str, dict] = {}
    for row in rows:
        config = row.get("config") or {}
        entry = combos.setdefault(
            row.get("group_label") or row["run_id"],
            {
                "combination": row.get("group_label") or row["run_id"],
                **{name: _cell(config.get(name)) for name in settings},
                "rows": [],
            },
        )
        entry["rows"].append(row)
    results = []
    for entry in combos.values():
        done = [r for r in entry.pop("rows") if r.get("state") == "done"]
        val = [r["best_val_accuracy"] for r in done if r.get("best_val_accuracy") is not None]
        test = [r["test_accuracy"] for r in done if r.get("test_accuracy") is not None]
        test_photos = max((r.get("test_photos") or 0 for r in done), default=0) or None
        test_accuracy = statistics.fmean(test) if test else None
        results.append(
            {
                **entry,
                "runs": len(done),
                "val_accuracy": statistics.fmean(val) if val else None,
                "test_accuracy": test_accuracy,
                "val_photos": max((r.get("val_photos") or 0 for r in done), default=0) or None,
                "test_photos": test_photos,
                "test_interval": (
                    wilson_interval(test_accuracy, test_photos)
                    if test_accuracy is not None and test_photos
                    else None
                ),
                "states": state_counts(
                    [
                        r
                        for r in rows
                        if r.get("group_label") == entry["combination"] and r.get("state") != "done"
                    ]
                ),
            }
        )
    results.sort(key=lambda r: -1 if r["val_accuracy"] is None else r["val_accuracy"], reverse=True)
    leading = {r["combination"] for r in _leaders(results)}
    return [{**r, "leader": r["combination"] in leading} for r in results]


def _leaders(results: list[dict]) -> list[dict]:
    """The top combination by validation and every other within its noise (or equal to it)."""
    scored = [r for r in results if r["val_accuracy"] is not None]
    if not scored:
        return []
    top = scored[0]
    photos = top["val_photos"]
    return [
        r
        for r in scored
        if r["val_accuracy"] == top["val_accuracy"]
        or (photos and within_noise(top["val_accuracy"], r["val_accuracy"], photos))
    ]


def leaders(rows: list[dict], settings: list[str]) -> list[dict]:
    """The combinations tied for best by validation: the top one and every other whose mean
    validation accuracy is equal to it or within its validation photos' noise. One when a
    combination leads clearly; none while no run of the sweep has finished."""
    return [r for r in sweep_results(rows, settings) if r["leader"]]


def _cell(value):
    return "/".join(map(str, value)) if isinstance(value, list) else value


def best_by_validation(rows: list[dict], settings: list[str]) -> dict | None:
    """The combination with the highest mean validation accuracy (never test: the test photos
    stay unseen for choosing) when it leads by more than noise; `None` while no run of the sweep
    has finished, or when the best are tied (`leaders`)."""
    tied = leaders(rows, settings)
    return tied[0] if len(tied) == 1 else None


def best_config(rows: list[dict], settings: list[str]) -> TrainConfig:
    """A standalone run's config of the best-by-validation combination (seed 0, own split)."""
    best = best_by_validation(rows, settings)
    if best is None:
        tied = leaders(rows, settings)
        if tied:
            raise FlowerError(
                f"no single best: {', '.join(r['combination'] for r in tied)} are within the validation "
                "photos' noise of each other; add seeds or photos to tell them apart"
            )
        raise FlowerError("no run of this sweep has finished yet")
    config = next(r["config"] for r in rows if r.get("group_label") == best["combination"])
    return dataclasses.replace(TrainConfig.from_json(config), seed=0).validate()
