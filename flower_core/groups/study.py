"""The study from one action: its seven presets times N seeds on one split, and its table.

`plan_study` lists the runs (the study's presets in order, each with seeds 0..N-1, then the
optional no-transfer baseline), `start_study` queues them as one group (`flower_core.groups.group`),
and `study_table` turns any runs' rows into the table the Compare page, `study --json` and
`runs --json` show: per preset, our mean ± sd over seeds beside the study's figure, the
per-seed values, how many runs are still queued or training, and each step's gain, with the
95% interval of each mean on its test photos and whether a gain is within that noise
(`flower_core.evaluation.uncertainty`).
"""

from __future__ import annotations

import math
import statistics

from flower_core.config import STUDY_RESULTS, check_seeds, make_config
from flower_core.evaluation.uncertainty import CI_LABEL, accuracy_text, wilson_interval, within_noise
from flower_core.groups.group import Planned, check_weights_files, list_groups, state_counts, submit_group

KIND = "study"
# The study's tuning steps, in order: the presets it reports figures for.
STUDY_PRESETS = tuple(STUDY_RESULTS)
BASELINE = "baseline"
# What a gain within its test photos' noise is called in the tables.
NOISE_WORDS = "within noise"
# The no-transfer baseline (random weights, the whole network trained) as docs/RESULTS.md ran
# it: smaller photos and fewer epochs, to fit a CPU budget; a study's own size and epochs win.
BASELINE_SETTINGS = {"weights": "none", "image_size": 96, "epochs": 15}


def plan_study(
    *,
    seeds: int = 1,
    backbone: str | None = None,
    weights: str | None = None,
    image_size: int | None = None,
    epochs: int | None = None,
    baseline: bool = False,
) -> list[Planned]:
    """The runs of a study, in the order they train: presets in the study's order, seeds 0..N-1.

    Args:
        seeds: seeds per preset, 1 to `MAX_SEEDS`. Defaults to `1`.
        backbone, weights, image_size, epochs: override every preset. Default to the presets'.
        baseline: add the no-transfer baseline (`base` with random weights) for each seed.
            Defaults to `False`.
    """
    check_seeds(seeds)
    common = {"backbone": backbone, "weights": weights, "image_size": image_size, "epochs": epochs}
    planned = [
        Planned(preset, make_config(preset, **common, seed=seed))
        for preset in STUDY_PRESETS
        for seed in range(seeds)
    ]
    if baseline:
        settings = {
            **BASELINE_SETTINGS,
            **{k: v for k, v in common.items() if v is not None},
            "weights": "none",
        }
        planned += [Planned(BASELINE, make_config("base", **settings, seed=seed)) for seed in range(seeds)]
    return check_weights_files(planned)


def start_study(data_root, runs_root=None, *, start: bool = True, **options) -> dict:
    """Queue a study (see `plan_study` for `options`) as one group; returns the group record."""
    planned = plan_study(**options)
    info = {**{k: v for k, v in options.items() if v is not None}, "presets": list(STUDY_PRESETS)}
    return submit_group(KIND, planned, data_root, runs_root, info=info, start=start)


def list_studies(runs_root=None) -> list[dict]:
    """Every study's group record, newest first."""
    return list_groups(runs_root, KIND)


def _mean_sd(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def _label(row: dict) -> str | None:
    """A row's place in a study: its group label, else its preset (runs started by hand)."""
    return row.get("group_label") or row.get("preset")


def study_table(rows: list[dict]) -> list[dict]:
    """One row per study step (and the baseline when present), from runs' summary rows.

    Finished runs (`done`, with a test accuracy) count towards the mean; runs still `queued` or
    `running` are counted in `states`, so a page can say "2 training" instead of showing nothing.
    `gain` is our mean minus the previous step's, `study_gain` the same for the study's figures.

    Args:
        rows: `RunStore.summary` rows (or `groups.group_rows`): preset, seed, state, test
            accuracy and loss, and `group_label` for runs of a study.

    Returns:
        Rows with preset, runs, mean, sd, loss_mean, per_seed ({seed: accuracy}), test_photos,
        interval (the mean's 95% Wilson interval on them), study_accuracy, study_loss, states
        ({state: count} of unfinished runs), gain, gain_within_noise and study_gain.
    """
    table, previous, previous_study = [], None, None
    labels = list(STUDY_PRESETS) + ([BASELINE] if any(_label(r) == BASELINE for r in rows) else [])
    for preset in labels:
        mine = [r for r in rows if _label(r) == preset]
        done = [r for r in mine if r.get("state") == "done" and r.get("test_accuracy") is not None]
        mean, sd = _mean_sd([r["test_accuracy"] for r in done])
        loss_mean, _ = _mean_sd([r["test_loss"] for r in done if r.get("test_loss") is not None])
        study_loss, study_accuracy = STUDY_RESULTS.get(preset, (None, None))
        states = state_counts([r for r in mine if r.get("state") != "done"])
        photos = max((r.get("test_photos") or 0 for r in done), default=0) or None
        gain = _difference(mean, previous) if preset != BASELINE else None
        table.append(
            {
                "preset": preset,
                "runs": len(done),
                "mean": mean,
                "sd": sd,
                "loss_mean": loss_mean,
                "per_seed": {str(r.get("seed")): r["test_accuracy"] for r in done},
                "test_photos": photos,
                "interval": wilson_interval(mean, photos) if mean is not None and photos else None,
                "study_accuracy": study_accuracy,
                "study_loss": study_loss,
                "states": states,
                "gain": gain,
                "gain_within_noise": None
                if gain is None or not photos
                else within_noise(mean, previous, photos),
                "study_gain": _difference(study_accuracy, previous_study),
            }
        )
        if preset != BASELINE:
            previous, previous_study = mean, study_accuracy
    return table


def _difference(value, before):
    if value is None or before is None or math.isnan(value) or math.isnan(before):
        return None
    return value - before


def pending_text(states: dict[str, int]) -> str:
    """What a cell says while a step has no finished run: `1 training, 2 queued`, or `–`."""
    words = {"running": "training", "queued": "queued"}
    parts = [f"{states[s]} {words[s]}" for s in ("running", "queued") if states.get(s)]
    return ", ".join(parts) or "–"


def format_table(table: list[dict]) -> str:
    """The study table as text for the terminal."""
    lines = [
        f"{'preset':<10} {'runs':>4} {'ours (mean ± sd)':>18} {CI_LABEL:>11} {'study':>7} "
        f"{'gain':>7} {'':12}  per seed"
    ]
    for row in table:
        if row["mean"] is None:
            ours = pending_text(row["states"])
        else:
            ours = f"{row['mean']:.4f} ± {row['sd']:.4f}" if row["sd"] is not None else f"{row['mean']:.4f}"
        interval = f"{row['interval'][0]:.3f}-{row['interval'][1]:.3f}" if row["interval"] else "–"
        study = f"{row['study_accuracy']:.4f}" if row["study_accuracy"] is not None else "–"
        gain = f"{row['gain']:+.4f}" if row["gain"] is not None else "–"
        seeds = " ".join(f"{s}:{v:.3f}" for s, v in row["per_seed"].items())
        lines.append(
            f"{row['preset']:<10} {row['runs']:>4} {ours:>18} {interval:>11} {study:>7} {gain:>7} "
            f"{NOISE_WORDS if row['gain_within_noise'] else '':12}  {seeds}"
        )
    photos = {row["test_photos"] for row in table if row["test_photos"]}
    if photos:
        lines.append(
            f"{CI_LABEL}: Wilson interval of the mean on {', '.join(map(str, sorted(photos)))} test photos"
        )
    return "\n".join(lines)


def table_cells(table: list[dict]) -> list[dict]:
    """The study table as the page shows it: percentages as text, and in our cells, while a step
    has no finished run, what its runs are doing (`1 training, 1 queued`) instead of a dash."""

    def pct(value, sign=""):
        return "–" if value is None else f"{value:{sign}.1%}"

    cells = []
    for row in table:
        pending = pending_text(row["states"])
        ours = (
            pending
            if row["mean"] is None
            else (f"{row['mean']:.1%}" + (f" ± {row['sd']:.1%}" if row["sd"] is not None else ""))
        )
        interval = accuracy_text(row["mean"], row["test_photos"]) if row["mean"] is not None else "–"
        if row["mean"] is not None and pending != "–":
            ours += f" ({pending})"
        cells.append(
            {
                "preset": row["preset"],
                "study": pct(row["study_accuracy"]),
                "ours (mean ± sd)": ours,
                "runs": row["runs"],
                "per seed": " · ".join(f"{v:.1%}" for v in row["per_seed"].values()),
                f"mean, {CI_LABEL}": interval,
                "our gain": pct(row["gain"], "+") + (f" ({NOISE_WORDS})" if row["gain_within_noise"] else ""),
                "study's gain": pct(row["study_gain"], "+"),
            }
        )
    return cells
