"""Queued runs trained as Ray tasks, each on whichever node has its CPUs free (`jobs.run_worker`
sends them here when `FLOWER_RAY_ADDRESS` is set; the queue itself stays in `jobs`).

A task trains the run folder it is given, exactly as the local worker does (`run_training`), in a
fresh worker process (`max_calls=1`: TensorFlow's threads sized to the run's CPUs, no memory kept
from another run), and is never retried: a task that died leaves its run `interrupted`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from flower_core.cluster import connect, limit_threads, run_resources
from flower_core.store.runs import cancel_requested

# A running run asked to cancel stops within one batch; one still going this long after is
# stopped by Ray (its worker process killed).
CANCEL_GRACE_S = 60.0


@dataclass
class Ended:
    """A task that is over: its run, and why when it did not simply return."""

    run_dir: Path
    cancelled: bool = False
    error: str | None = None


class ClusterRuns:
    """The runs this process sent to the cluster, and what became of them."""

    def __init__(self):
        self.ray = connect()
        resources = run_resources(self.ray)
        self.task = self.ray.remote(max_calls=1, max_retries=0)(_train_on_node).options(**resources)
        self.cpus = resources["num_cpus"]
        self.pending: dict[Path, object] = {}
        self._cancels: dict[Path, float] = {}

    def send(self, run_dir: Path) -> None:
        """Send a queued run to the cluster; Ray starts it once a node has its resources free."""
        self.pending[run_dir] = self.task.remote(str(run_dir), self.cpus)

    def cancel(self, run_dir: Path, started: bool) -> None:
        """Stop a run that asked to: one Ray has not started never starts; a running one has its
        cancel flag (it stops within one batch, keeping its model) and is killed only once
        `CANCEL_GRACE_S` passed."""
        now = time.monotonic()
        if run_dir not in self._cancels:
            self._cancels[run_dir] = now
            if not started:
                self.ray.cancel(self.pending[run_dir])
        elif started and now - self._cancels[run_dir] > CANCEL_GRACE_S:
            self.ray.cancel(self.pending[run_dir], force=True)
            self._cancels[run_dir] = float("inf")

    def ended(self, timeout_s: float) -> list[Ended]:
        """The runs whose tasks ended, waiting up to `timeout_s` seconds for one."""
        if not self.pending:
            return []
        refs = {ref: run_dir for run_dir, ref in self.pending.items()}
        done, _ = self.ray.wait(list(refs), num_returns=len(refs), timeout=timeout_s)
        ended = []
        for ref in done:
            run_dir = refs[ref]
            del self.pending[run_dir]
            self._cancels.pop(run_dir, None)
            try:
                self.ray.get(ref)
                ended.append(Ended(run_dir))
            except self.ray.exceptions.TaskCancelledError:
                ended.append(Ended(run_dir, cancelled=True))
            except self.ray.exceptions.RayError as error:
                line = (str(error).strip().splitlines() or [""])[0]
                ended.append(Ended(run_dir, error=f"{type(error).__name__}: {line}"[:300]))
        return ended

    def close(self) -> None:
        self.ray.shutdown()


def _train_on_node(run_dir: str, cpus: float) -> str:
    """The task: train one queued run on this node; a run cancelled before it started is left
    for the queue to mark. Returns the run's final state."""
    import ray

    if cancel_requested(Path(run_dir)):
        return "cancelled"
    limit_threads(cpus)
    from flower_core.training.train import run_training

    return run_training(Path(run_dir), node=ray.get_runtime_context().get_node_id())
