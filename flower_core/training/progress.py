"""Progress, logging, cancel and best-model keeping as Keras callbacks that report to a function.

The caller hands in a reporter (`reporter(event: dict)`): the CLI prints a bar, the app's job
writes nothing more because the run folder itself is the channel (`status.json` heartbeat
during the epoch, `history.jsonl` at each epoch's end), which any other process can follow.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np

from flower_core.errors import FlowerError
from flower_core.store.run_files import Status
from flower_core.store.runs import (
    HISTORY,
    STATUS,
    TENSORBOARD_DIR,
    append_jsonl,
    atomic_write,
    cancel_requested,
    process_start,
    stored_status,
    write_json,
)

Reporter = Callable[[dict], None]
HEARTBEAT_INTERVAL_S = 1.0


def update_status(run_dir: Path, **fields) -> Status:
    """Merge `fields` into `status.json` with a fresh heartbeat, atomically, checked as its
    readers check it (`Status.merged`).

    The trainer owns this file, so a corrupt one (edited by hand) is replaced, not fatal.
    """
    try:
        status = stored_status(run_dir)
    except FlowerError:
        status = Status()
    path = Path(run_dir) / STATUS
    trainer = {
        "heartbeat": time.time(),
        "pid": os.getpid(),
        "pid_start": process_start(os.getpid()),
        "host": os.uname().nodename,
    }
    status = status.merged(path, **{**fields, **trainer})
    write_json(path, status.to_json())
    return status


def _learning_rate(model: keras.Model) -> float:
    return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))


class RunProgress(keras.callbacks.Callback):
    """Reports every batch and epoch, logs finished epochs, and stops on a cancel request.

    Args:
        run_dir: the run folder to write `status.json` and `history.jsonl` into.
        reporter: called with each progress event. Defaults to `None`.
        total_epochs: epochs across all phases, for the overall progress. Defaults to `None`.
        epoch_offset: epochs already done in earlier phases. Defaults to `0`.
        phase: `"head"` or `"fine-tune"`, shown in events. Defaults to `"head"`.
        then_s: seconds the run still needs once these epochs end (the test photos' features),
            so the ETA is the whole run's; called at each report. Defaults to none.
        clock: seconds, for the elapsed time, the ETA and the heartbeat. Defaults to `time.time`.
    """

    def __init__(
        self,
        run_dir,
        reporter: Reporter | None = None,
        total_epochs=None,
        epoch_offset=0,
        phase="head",
        then_s: Callable[[], float | None] | None = None,
        clock: Callable[[], float] = time.time,
    ):
        super().__init__()
        self.run_dir = Path(run_dir)
        self.reporter = reporter
        self.total_epochs = total_epochs
        self.epoch_offset = epoch_offset
        self.phase = phase
        self.then_s = then_s
        self.clock = clock

    def on_train_begin(self, logs=None):
        self.cancelled = False
        self.batches = self.params.get("steps")
        self.epochs = self.total_epochs or self.params.get("epochs")
        self.started = self.clock()
        self._last_beat = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_in_phase = epoch
        self.epoch_started = self.clock()

    def _event(self, kind: str, logs: dict, batch: int | None = None) -> dict:
        """A progress event; ETA assumes the remaining epochs take as long as the ones so far."""
        elapsed = self.clock() - self.started
        fraction = (batch + 1) / self.batches if batch is not None and self.batches else 1.0
        done = self.epoch_in_phase + fraction
        overall = self.epoch_offset + self.epoch_in_phase
        eta = elapsed / done * max(self.epochs - self.epoch_offset - done, 0)
        eta += (self.then_s() or 0.0) if self.then_s else 0.0
        return {
            "kind": kind,
            "phase": self.phase,
            "epoch": overall + 1,
            "epochs": self.epochs,
            "batch": None if batch is None else batch + 1,
            "batches": self.batches,
            "loss": _float(logs.get("loss")),
            "accuracy": _float(logs.get("accuracy")),
            "lr": _learning_rate(self.model),
            "elapsed": round(elapsed, 2),
            "eta": round(eta, 1),
        }

    def on_train_batch_end(self, batch, logs=None):
        if self.batches:  # with several steps per call, Keras reports the last call past the end
            batch = min(batch, self.batches - 1)
        event = self._event("batch", logs or {}, batch)
        if self.reporter:
            self.reporter(event)
        if self.clock() - self._last_beat >= HEARTBEAT_INTERVAL_S:
            self._last_beat = self.clock()
            update_status(
                self.run_dir,
                state="running",
                epoch=event["epoch"] - 1,
                epochs=self.epochs,
                batch=batch + 1,
                batches=self.batches,
                phase=self.phase,
                eta=event["eta"],
                message=f"{self.phase}: epoch {event['epoch']}/{self.epochs}",
            )
        if cancel_requested(self.run_dir):
            self.cancelled = True
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        overall = self.epoch_offset + epoch
        record = {
            "epoch": overall + 1,
            "phase": self.phase,
            **{k: _float(logs.get(k)) for k in ("loss", "accuracy", "val_loss", "val_accuracy")},
            "lr": _learning_rate(self.model),
            "seconds": round(self.clock() - self.epoch_started, 2),
        }
        if not self.cancelled:
            append_jsonl(self.run_dir / HISTORY, record)
        update_status(
            self.run_dir,
            state="running",
            epoch=overall + 1,
            epochs=self.epochs,
            phase=self.phase,
            message=f"{self.phase}: finished epoch {overall + 1}/{self.epochs}",
        )
        if self.reporter:
            self.reporter({**self._event("epoch", logs), **record})


class StopOnNaN(keras.callbacks.Callback):
    """Fail the run as soon as the loss stops being a number (`TerminateOnNaN` would only stop
    it, and a stopped run reads as finished): the learning rate is too high for this model.

    Raises:
        FlowerError: naming the epoch and batch, so the run ends `failed` with that reason.
    """

    def on_train_batch_end(self, batch, logs=None):
        self._check((logs or {}).get("loss"), f"batch {batch + 1} of epoch {self._epoch + 1}")

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        for name in ("loss", "val_loss"):
            self._check((logs or {}).get(name), f"epoch {epoch + 1}", name)

    def on_train_begin(self, logs=None):
        self._epoch = 0

    @staticmethod
    def _check(value, where: str, name: str = "loss") -> None:
        if value is not None and not np.isfinite(float(value)):
            raise FlowerError(
                f"the {name} became {float(value)} at {where}, so training stopped; "
                "lower the learning rate and train again"
            )


class BestModelKeeper(keras.callbacks.Callback):
    """Keep the weights with the lowest `val_loss`, save the full model atomically, and restore
    those weights when training ends (also after a cancel). A save that fails (disk full) leaves
    the previous best `model.keras` as it was and no temp file behind.

    Saving the whole model, backbone included, takes longer than an epoch of a head on cached
    features; so the first best model is written as soon as the first
    epoch ends, later improvements only when `min_interval` seconds have passed since the last
    write, and the best is always written when training ends. A run killed (or failing)
    mid-training keeps a best model at most that old, and `status.json`'s `kept_epoch` says
    which epoch's model the file holds (`runs.kept_model_note`).

    Args:
        save_model: the model to save; may differ from the one being fitted (the full model while
            its head trains on cached features).
        path: where to write the `.keras` file.
        best: the `val_loss` to beat. Defaults to `inf`.
        min_interval: seconds between two saves while training. Defaults to `30`.
        epoch_offset: epochs done in earlier phases, so `kept_epoch` counts over the whole run.
            Defaults to `0`.
    """

    def __init__(
        self,
        save_model: keras.Model,
        path: Path,
        best: float = np.inf,
        min_interval: float = 30.0,
        epoch_offset: int = 0,
    ):
        super().__init__()
        self.save_model = save_model
        self.path = Path(path)
        self.initial_best = best
        self.min_interval = min_interval
        self.epoch_offset = epoch_offset

    def on_train_begin(self, logs=None):
        self.best = self.initial_best
        self.best_weights = None
        self.best_epoch = None
        self._saved_at = -np.inf  # the first best model is written at once
        self._unsaved = False

    def on_epoch_end(self, epoch, logs=None):
        val_loss = (logs or {}).get("val_loss")
        if val_loss is None or not np.isfinite(val_loss) or val_loss >= self.best:
            return
        self.best = float(val_loss)
        self.best_weights = self.model.get_weights()
        self.best_epoch = self.epoch_offset + epoch + 1
        self._unsaved = True
        if time.monotonic() - self._saved_at >= self.min_interval:
            self._save()

    def on_train_end(self, logs=None):
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)
            if self._unsaved:
                self._save()

    def _save(self):
        atomic_write(self.path, self.save_model.save)
        update_status(self.path.parent, kept_epoch=self.best_epoch)
        self._saved_at = time.monotonic()
        self._unsaved = False


class EpochEvents(keras.callbacks.TensorBoard):
    """Keras' TensorBoard callback, its steps the run's epoch numbers (1, 2, ... over the head and
    fine-tuning phases, as in `history.jsonl`), so `tensorboard --logdir runs` shows every run.

    Writes once per epoch, with no graph and no profile: a run pays a few file appends.

    Args:
        log_dir: the run's event folder (`<run>/tensorboard`); Keras writes `train/` and
            `validation/` in it.
        epoch_offset: epochs done in earlier phases. Defaults to `0`.
    """

    def __init__(self, log_dir: Path, epoch_offset: int = 0):
        super().__init__(str(log_dir), write_graph=False, profile_batch=0)
        self.epoch_offset = epoch_offset

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(self.epoch_offset + epoch + 1, logs)


def epoch_events(run_dir: Path, epoch_offset: int = 0) -> list[keras.callbacks.Callback]:
    """`[EpochEvents]` into `<run>/tensorboard`, or none (with a warning in the run's log) when the
    `tensorboard` package, which TensorFlow writes scalars through, is not installed."""
    if importlib.util.find_spec("tensorboard") is None:
        logging.getLogger(__name__).warning(
            "no TensorBoard events for this run: the tensorboard package is not installed "
            "(pip install -r requirements.txt)"
        )
        return []
    return [EpochEvents(Path(run_dir) / TENSORBOARD_DIR, epoch_offset)]


class Throughput:
    """Photos per second and time left of one feature-extraction pass, from its progress reports.

    The first batch also traces the backbone's graph (seconds on a CPU), so once a second report
    has come the rate is measured from the first one on; until then from the start.

    Args:
        what: what is being computed, e.g. `"train features"`, for the message.
        clock: seconds, monotonic. Defaults to `time.monotonic`.

    Example:

    >>> throughput = Throughput("train features", clock=iter([0.0, 2.0, 3.0]).__next__)
    >>> throughput.update(32, 140)["message"]
    'computing train features 32/140 · 16.0 photos/s · 7 s left'
    >>> throughput.update(64, 140)["message"]
    'computing train features 64/140 · 32.0 photos/s · 2 s left'
    """

    def __init__(self, what: str, clock: Callable[[], float] = time.monotonic):
        self.what = what
        self.clock = clock
        self.started = clock()
        self.first: tuple[float, int] | None = None

    def seconds(self) -> float:
        """Seconds since the pass began."""
        return self.clock() - self.started

    def update(self, done: int, total: int) -> dict:
        """The state after `done` of `total` photos: counts, `photos_per_s`, `eta_s` (both `None`
        until measurable) and a one-line `message`."""
        now = self.clock()
        since, base = self.first or (self.started, 0)
        if self.first is None:
            self.first = (now, done)
        elapsed = now - since
        rate = (done - base) / elapsed if elapsed > 0 and done > base else None
        eta = (total - done) / rate if rate else None
        message = f"computing {self.what} {done}/{total}"
        if rate:
            message += f" · {rate:.1f} photos/s · {eta:.0f} s left"
        return {
            "what": self.what,
            "photos_done": done,
            "photos_total": total,
            "photos_per_s": None if rate is None else round(rate, 2),
            "eta_s": None if eta is None else round(eta, 1),
            "message": message,
        }


class ExtractionProgress:
    """One progress over a run's feature-extraction passes (train, validation, test), so its
    count never restarts: `computing features 1200/4317 · 21.3 photos/s (validation)`.

    The passes are planned up front with the backbone passes each needs; one the cache already
    holds is dropped when it is found there (`finish` without a report). The rate is the
    current pass's (`Throughput`: the first batch of a pass also traces a graph), else the last
    pass's, else `photos_per_s` (the run's estimate); time spent training between two passes
    never counts as extracting.

    Args:
        planned: `{what: backbone passes}` in the order they run, e.g.
            `{"train features": 3000, "validation features": 650, "test features": 650}`.
        photos_per_s: the speed to assume before one is measured. Defaults to `None`.
        clock: seconds, monotonic. Defaults to `time.monotonic`.

    Example:

    >>> progress = ExtractionProgress({"train": 100, "test": 50}, 10.0, clock=iter([0.0, 1.0, 2.0]).__next__)
    >>> progress.update("train", 10, 100)["message"]
    'computing features 10/150 (train) · 10.0 photos/s'
    >>> progress.update("train", 30, 100)["eta_s"]
    6.0
    """

    def __init__(
        self,
        planned: dict[str, int],
        photos_per_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.planned, self.done = dict(planned), dict.fromkeys(planned, 0)
        self.rate, self.clock = photos_per_s, clock
        self.passes: dict[str, Throughput] = {}

    def update(self, what: str, done: int, total: int) -> dict:
        """The state after `done` of `total` passes of `what`: overall counts, `photos_per_s`,
        `eta_s` (all extraction left) and a one-line `message`."""
        if what not in self.passes:
            self.passes[what] = Throughput(what, self.clock)
        rate = self.passes[what].update(done, total)["photos_per_s"]
        self.rate = rate or self.rate
        self.planned[what], self.done[what] = total, done
        overall, photos = sum(self.done.values()), sum(self.planned.values())
        message = f"computing features {overall}/{photos} ({what})"
        if self.rate:
            message += f" · {self.rate:.1f} photos/s"
        return {
            "what": what,
            "photos_done": overall,
            "photos_total": photos,
            "photos_per_s": None if self.rate is None else round(self.rate, 2),
            "eta_s": self.left_s(),
            "message": message,
        }

    def finish(self, what: str) -> None:
        """`what` is done: computed, or found in the cache (then it is no longer counted)."""
        if what not in self.passes:
            self.planned.pop(what, None)
            self.done.pop(what, None)

    def left_s(self) -> float | None:
        """Seconds of extraction left over every pass, at the rate known; `None` before one is."""
        left = sum(self.planned.values()) - sum(self.done.values())
        if not left:
            return 0.0
        return None if not self.rate else round(left / self.rate, 1)


def _float(value):
    return None if value is None else round(float(value), 6)


class TerminalReporter:
    """A one-line progress bar on stderr for the CLI, with an epoch summary line per epoch."""

    def __init__(self, stream=None, width: int = 30):
        self.stream = stream or sys.stderr
        self.width = width

    def __call__(self, event: dict) -> None:
        kind = event.get("kind")
        if kind == "batch" and event.get("batches"):
            done = event["batch"] / event["batches"]
            bar = "#" * int(done * self.width)
            self.stream.write(
                f"\r{event['phase']} epoch {event['epoch']}/{event['epochs']} [{bar:<{self.width}}] "
                f"{event['batch']}/{event['batches']} loss {event['loss']:.4f} "
                f"acc {event['accuracy']:.4f} eta {event['eta']:.0f}s "
            )
        elif kind == "epoch":
            self.stream.write(
                f"\r{event['phase']} epoch {event['epoch']}/{event['epochs']}: loss {event['loss']:.4f} "
                f"acc {event['accuracy']:.4f} val_loss {event.get('val_loss') or float('nan'):.4f} "
                f"val_acc {event.get('val_accuracy') or float('nan'):.4f} ({event['seconds']:.1f}s)"
                + " " * 10
                + "\n"
            )
        elif kind == "stage" and event.get("photos_total"):
            done = event["photos_done"] / event["photos_total"]
            bar = "#" * int(done * self.width)
            rate = (
                f" {event['photos_per_s']:.1f} photos/s, {event['eta_s']:.0f} s left"
                if event["photos_per_s"]
                else ""
            )
            self.stream.write(
                f"\rcomputing {event['what']} [{bar:<{self.width}}] {event['photos_done']}/"
                f"{event['photos_total']}{rate}" + " " * 10 + ("\n" if event.get("done") else "")
            )
        elif kind == "stage":
            self.stream.write(f"\r{event['message']}" + " " * 10 + ("\n" if event.get("done") else ""))
        self.stream.flush()
