"""Why a run stopped, in one line: early stopping, all epochs run, cancelled, failed or killed.

Decided from what the run folder already holds (its state and message, `config.json` and
`history.jsonl`), so the trainer writes it into `status.json` as `stop_reason` when a run ends,
and the app and the CLI can say it for older runs too, without a field of their own.

The early-stopping callback ends a phase after `patience` epochs without a lower validation
loss; a phase that ran fewer epochs than planned, in a run that finished, was stopped so. Which
model is kept is what `model.keras` holds, as `runs.kept_model_note` says it (the file, and the
epoch `status.json` says it holds), never the history's best: a run killed mid-training may
have saved an older best, or none.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from flower_core.errors import FlowerError
from flower_core.store.run_files import Status
from flower_core.store.runs import Run, kept_model_note, read_status

STOP_REASON = "stop_reason"


def _epochs(n: int) -> str:
    return f"{n} epoch{'' if n == 1 else 's'}"


def _planned(phase: str, config: dict) -> int | None:
    key = "fine_tune_epochs" if phase == "fine-tune" else "epochs"
    value = config.get(key)
    return value if isinstance(value, int) else None


def _phases(history: list[dict]) -> list[tuple[str, list[dict]]]:
    """History split into its phases, in order (head then fine-tune, or one train phase)."""
    phases: list[tuple[str, list[dict]]] = []
    for record in history:
        phase = record.get("phase", "train")
        if not phases or phases[-1][0] != phase:
            phases.append((phase, []))
        phases[-1][1].append(record)
    return phases


def _lowest_val_loss_epoch(records: list[dict]) -> int | None:
    """The epoch number with the lowest finite validation loss (the first one on a tie)."""
    losses = [r.get("val_loss") for r in records]
    finite = [(v, i) for i, v in enumerate(losses) if isinstance(v, int | float) and np.isfinite(v)]
    return records[min(finite)[1]]["epoch"] if finite else None


def _phase_end(phase: str, records: list[dict], offset: int, config: dict, several: bool) -> str:
    """How one phase ended: all its epochs, or early stopping with how long it had waited."""
    planned = _planned(phase, config)
    last = records[-1]["epoch"]
    prefix = f"{phase}: " if several else ""
    if planned is None or len(records) >= planned:
        return f"{prefix}ran all {_epochs(len(records))}"
    best = _lowest_val_loss_epoch(records)
    if not best or best == last:  # no wait behind it: not the early-stopping callback
        return f"{prefix}stopped at epoch {last} of {offset + planned}"
    return (
        f"{prefix}early stopping at epoch {last} of {offset + planned}: validation loss had "
        f"not improved for {_epochs(last - best)}"
    )


def stop_reason(state: str, message: str, history: list[dict], config: dict, kept: str) -> str:
    """Why a run stopped, in one line for a person.

    Args:
        state: the run's final state (`done`, `cancelled`, `failed`, `interrupted`, ...).
        message: the status message the trainer wrote with that state.
        history: the finished epochs as JSON objects (`HistoryRow.to_json`).
        config: the run's `config.json` (for the planned epochs).
        kept: what `model.keras` holds, as `runs.kept_model_note` says it.

    Returns:
        For example "early stopping at epoch 12 of 30: validation loss had not improved for 5
        epochs; the model of epoch 7 (the best until then) is kept", "cancelled by request after
        epoch 3 of 30; <kept>" or "failed: <the reason>".

    Example:

    >>> history = [{"epoch": e, "phase": "head", "val_loss": l} for e, l in enumerate([3, 2, 2.5, 2.4], 1)]
    >>> kept = "the model of epoch 2 (the best until then) is kept"
    >>> reason = stop_reason("done", "finished", history, {"epochs": 30, "patience": 2}, kept)
    >>> for part in reason.split("; "):
    ...     print(part)
    early stopping at epoch 4 of 30: validation loss had not improved for 2 epochs
    the model of epoch 2 (the best until then) is kept
    """
    if state == "failed":
        return f"failed: {message or 'no reason recorded'}"
    if state not in ("done", "cancelled", "interrupted"):
        return message or state
    if not history:
        if state == "done":
            return message or "finished"
        what = "cancelled by request" if state == "cancelled" else "the training process stopped"
        return f"{what} before any epoch finished; {kept}"
    phases, offset, parts = _phases(history), 0, []
    for phase, records in phases:
        parts.append(_phase_end(phase, records, offset, config, len(phases) > 1))
        offset += len(records)
    if state == "done":
        return "; ".join(parts) + f"; {kept}"
    last_phase, last_records = phases[-1]
    total = max(offset - len(last_records) + (_planned(last_phase, config) or 0), offset)
    what = (
        "cancelled by request" if state == "cancelled" else "the training process stopped (killed or crashed)"
    )
    return f"{what} after epoch {history[-1]['epoch']} of {total}; {kept}"


def run_stop_reason(run_dir: str | Path, status: Status | None = None) -> str:
    """A run's stop reason: the one its trainer wrote, else decided now from its files (runs
    trained before the field existed, or killed ones); never raises. `status` defaults to
    `runs.read_status` (a run whose process died reads as `interrupted`)."""
    run = Run(run_dir)
    try:
        status = status if status is not None else read_status(run.path)
        if status.stop_reason and status.state != "interrupted":
            return status.stop_reason
        return stop_reason(
            status.state,
            status.message,
            [row.to_json() for row in run.history],
            run.config.settings.to_json(),
            kept_model_note(run.path),
        )
    except (FlowerError, OSError):
        return status.message if status is not None else ""
