"""The Train page's job panel: start a job, follow it live, see the queue and the results.

The panel reads the run folder, like any other process could, so leaving the page, refreshing
the browser or opening a second tab shows the same job: the run followed is the one training
(or next in the queue), else the last one this session started.
"""

from __future__ import annotations

import datetime as dt
import secrets
from pathlib import Path

import streamlit as st

from flower_core import charts
from flower_core.config import make_config
from flower_core.evaluation.uncertainty import interval_text
from flower_core.store.run_files import HistoryRow, Status
from flower_core.store.runs import ACTIVE_STATES, RUN_LOG, Run, peek_status
from flower_core.training import jobs
from flower_core.training.estimate import run_eta
from flower_core.training.stopping import run_stop_reason
from ui import export_view
from ui.common import guard, percent, runs_root, target

REFRESH_SECONDS = 1.5
STATE_BADGES = {
    "queued": ("queued", ":material/schedule:", "gray"),
    "running": ("training", ":material/sync:", "blue"),
    "done": ("finished", ":material/check_circle:", "green"),
    "failed": ("failed", ":material/error:", "red"),
    "cancelled": ("cancelled", ":material/cancel:", "orange"),
    "interrupted": ("interrupted", ":material/warning:", "orange"),
}


def start(values: dict, preset: str, data_root: Path) -> Path:
    """Queue a run with the form's settings; a worker process trains it. Returns its folder."""
    token = st.session_state.setdefault("train_token", secrets.token_hex(8))
    run_dir = jobs.submit(make_config(preset, **values), data_root, runs_root(), token=token)
    st.session_state["train_run"] = run_dir.name
    return run_dir


def new_submission() -> None:
    """After a script run without a press of Train, the next press is a new submission; presses
    with no run between them (a double-click) share one token and queue one run."""
    st.session_state.pop("train_token", None)


def followed_run() -> Path | None:
    """The run this page shows (`jobs.followed_run`), given the run this session started last."""
    return jobs.followed_run(runs_root(), st.session_state.get("train_run"))


def badge(state: str) -> None:
    """The run's state as a coloured badge."""
    label, icon, colour = STATE_BADGES.get(state, (state, ":material/help:", "gray"))
    st.badge(label, icon=icon, color=colour)


def _title(run: Run) -> None:
    settings = run.config.settings
    st.markdown(f"#### {settings.preset} · {settings.backbone} · {settings.image_size} px")
    st.caption(f"Run `{run.id}`")


def _log_lines(history: tuple[HistoryRow, ...], message: str | None) -> str:
    """The epochs' lines, then `message` (none while the extraction bar says it)."""
    return "\n".join([*(row.line for row in history), *([f"> {message}"] if message else [])][-200:])


def _seconds_since(stamp: str | None) -> float | None:
    try:
        return (dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(stamp)).total_seconds()
    except (TypeError, ValueError):
        return None


def _elapsed(status: Status) -> str:
    seconds = _seconds_since(status.started)
    return "–" if seconds is None else str(dt.timedelta(seconds=int(max(seconds, 0))))


def progress(status: Status) -> None:
    """Feature extraction over all its passes (photos/s), epoch and batch progress bars, elapsed,
    and the whole run's ETA (`estimate.run_eta`: during extraction too)."""
    extraction = status.extraction
    if extraction and extraction.photos_total:
        st.progress(min(extraction.photos_done / extraction.photos_total, 1.0), text=extraction.message)
    epochs, epoch = status.epochs, status.epoch
    batches, batch = status.batches or 0, status.batch or 0
    st.progress(
        min(epoch / epochs, 1.0) if epochs else 0.0,
        text=f"Epoch {epoch} of {epochs} done" if epochs else "Waiting to start",
    )
    st.progress(
        min(batch / batches, 1.0) if batches else 0.0,
        text=f"Batch {batch} of {batches}" if batches else "No batch yet",
    )
    cells = st.columns(3)
    eta = run_eta(status)
    cells[0].metric("Elapsed", _elapsed(status))
    cells[1].metric(
        "ETA",
        "–" if eta is None else str(dt.timedelta(seconds=int(eta))),
        help="Time left for the whole run: from its estimate at first, then from the speed measured "
        "while its features are computed and its epochs run.",
    )
    cells[2].metric(
        "Phase",
        status.phase or "setup",
        help="setup: checking photos and building the model; head: training the new "
        "layers; train: the whole network; fine-tune: the unfrozen blocks.",
    )


def _before_first_epoch(status: Status) -> str:
    """What stands in for the curves until the first epoch ends: what the run is doing now and
    the whole run's time left."""
    if status.state == "queued":
        now = "waiting in the queue"
    elif status.extraction:
        now = "computing the photos' features (the bar above)"
    elif status.batches:
        now = "training the first epoch"
    else:
        now = "setting up: checking the photos and building the model"
    eta = run_eta(status)
    left = "" if eta is None else f", about {dt.timedelta(seconds=int(eta))} left for the whole run"
    return f"Loss and accuracy curves appear here after the first epoch. Now {now}{left}."


@st.fragment(run_every=REFRESH_SECONDS)
def live(run_dir: Path) -> None:
    """The job while it runs, refreshed every `REFRESH_SECONDS`; the page reloads once it ends."""
    status = peek_status(run_dir)
    if status.state not in ACTIVE_STATES:
        st.rerun()
    run = Run.open(run_dir)
    _title(run)
    badge(status.state)
    if not status.extraction:  # the extraction bar says it
        st.caption(status.message)
    progress(status)
    if jobs.stalled(status, runs_root()):
        st.warning(
            "No worker is training this queue (it may have been stopped).",
            icon=":material/warning:",
        )
        if st.button("Start the worker", icon=":material/play_arrow:", key="train_resume"):
            with guard("Cannot start the worker"):
                jobs.start_worker(runs_root())
    history = run.history
    if history:
        st.plotly_chart(charts.training_curves(history, "Live training curves"), key="train_live")
    else:  # no empty chart or log box before the first epoch: what is happening instead
        st.info(_before_first_epoch(status), icon=":material/show_chart:")
    lines = _log_lines(history, None if status.extraction else status.message)
    if lines:
        with st.expander("Log", icon=":material/terminal:", expanded=True):
            st.code(lines, language=None, height=200, wrap_lines=True)
    if st.button("Cancel", icon=":material/stop_circle:", key="train_cancel"):
        with guard("Cannot cancel the run"):
            jobs.cancel(run_dir)
        st.toast("Cancel requested: the job stops within one batch.", icon=":material/cancel:")
    queue(run_dir)


def follow_runs() -> None:
    """Keep a page of runs (Compare) current: while runs are queued or training, say so, and
    check every `REFRESH_SECONDS`; the page is drawn again, without a reload, as one starts or
    finishes (`jobs.active_runs`)."""
    active = jobs.active_runs(runs_root())
    if active:
        training = sum(state == "running" for state in active.values())
        st.caption(
            f":material/sync: {training} training, {len(active) - training} queued: "
            "this page updates as they finish."
        )
        _redraw_on_change(active)


@st.fragment(run_every=REFRESH_SECONDS)
def _redraw_on_change(active: dict[str, str]) -> None:
    if jobs.active_runs(runs_root()) != active:
        st.rerun()


def queue(current: Path | None) -> None:
    """The runs waiting their turn (one job trains at a time per runs folder)."""
    waiting = [d for d in jobs.queued_runs(runs_root()) if d != current]
    if not waiting:
        return
    st.markdown(f"##### Queue ({len(waiting)} waiting)")
    for run_dir in waiting:
        settings = Run.open(run_dir).config.settings
        left, right = st.columns([4, 1])
        left.write(f"`{run_dir.name}` · {settings.preset} · {settings.backbone}")
        if right.button("Cancel", key=f"train_cancel_{run_dir.name}"):
            with guard("Cannot cancel the run"):
                jobs.cancel(run_dir)
            st.rerun()


def results(run_dir: Path) -> None:
    """A finished job: test accuracy and loss, the confusion matrix, or why it stopped."""
    run, status = Run.open(run_dir), peek_status(run_dir)
    history = run.history
    _title(run)
    badge(status.state)
    reason = run_stop_reason(run_dir, status)
    if status.state == "failed":
        log = run_dir / RUN_LOG
        where = f" (the traceback is in {log})" if log.is_file() else ""
        st.error(f"Training {reason}{where}", icon=":material/error:")
    elif status.state in ("cancelled", "interrupted", "corrupt"):
        st.warning(reason, icon=":material/warning:")
    elif status.state == "done":
        st.success(f"Stopped: {reason}", icon=":material/flag:")
    metrics = run.metrics
    if metrics.evaluated:
        cells = st.columns(3)
        accuracy, photos = metrics.test_accuracy, metrics.num_files
        cells[0].metric(
            "Test accuracy",
            percent(accuracy),
            delta=interval_text(accuracy, photos) or None,
            delta_color="off",
            delta_arrow="off",
        )
        cells[1].metric("Test loss", f"{metrics.test_loss or 0:.4f}")
        cells[2].metric("Epochs", len(history))
        st.plotly_chart(
            charts.confusion_matrix(metrics.confusion, metrics.class_names, "Confusion matrix (test split)"),
            key="train_confusion",
        )
        if st.button("Explain its predictions", icon=":material/center_focus_strong:", key="train_explain"):
            st.session_state["classify_run"] = run_dir.name
            st.switch_page(target("classify"))
        export_view.export_panel(run_dir, "train")
    if history:
        st.plotly_chart(charts.training_curves(history), key="train_curves")
    with st.expander("Log", icon=":material/terminal:", expanded=status.state != "done"):
        st.code(_log_lines(history, reason), language=None, height=200, wrap_lines=True)
