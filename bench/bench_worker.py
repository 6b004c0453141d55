"""The app's worker, run after run: seconds from queueing a run to its first epoch, and the
worker's resident memory after each run, with a warm worker (waiting, TensorFlow loaded) against
a worker started for each run (`FLOWER_WORKER_IDLE_S=0`, the behaviour before the warm worker).

The runs train on the feature cache of `FLOWER_CACHE`, so run the same settings once before to
time a warm cache (the first run here fills it otherwise). Linux only (reads /proc).

    FLOWER_DATA=../shared/data/flowers FLOWER_CACHE=/tmp/cache \\
        python bench/bench_worker.py --runs 10 [--preset best] [--image-size 384] [--cold-worker]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

# common first: it puts the project on sys.path
from common import emit, rss_mib, wait_until_idle, worker_pid

# isort: split
from flower_core.config import make_config
from flower_core.data.dataset import resolve_data_root
from flower_core.store.runs import HISTORY, read_status
from flower_core.training import jobs

POLL_S = 0.02


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="runs queued one after another")
    parser.add_argument("--preset", default="best")
    parser.add_argument("--backbone", help="default: the preset's")
    parser.add_argument("--weights", default="imagenet")
    parser.add_argument("--image-size", type=int, help="default: the preset's")
    parser.add_argument("--epochs", type=int, default=2, help="epochs of each run")
    parser.add_argument("--cold-worker", action="store_true", help="a new worker process for each run")
    args = parser.parse_args()
    data = resolve_data_root()
    os.environ[jobs.IDLE_ENV] = "0" if args.cold_worker else "600"
    config = make_config(
        args.preset,
        backbone=args.backbone,
        weights=args.weights,
        image_size=args.image_size,
        epochs=args.epochs,
    )
    with tempfile.TemporaryDirectory(prefix="bench_worker_") as work:
        runs = Path(work).resolve() / "runs"
        settle = None
        if not args.cold_worker:
            jobs.keep_worker_warm(runs, data)
            while (pid := worker_pid(runs)) is None:
                time.sleep(POLL_S)
            settle = wait_until_idle(pid)
            emit("worker_warm_up", seconds=round(settle, 1), rss_mib=rss_mib(pid))
        firsts, memory = [], []
        for index in range(args.runs):
            started = time.perf_counter()
            run_dir = jobs.submit(config, data, runs)
            while not (run_dir / HISTORY).is_file() or not (run_dir / HISTORY).read_text().strip():
                if read_status(run_dir).state in ("failed", "cancelled"):
                    raise SystemExit(f"run failed: {read_status(run_dir).message}")
                time.sleep(POLL_S)
            first_epoch = time.perf_counter() - started
            while read_status(run_dir).state != "done":
                time.sleep(POLL_S)
            pid = read_status(run_dir).pid
            time.sleep(1)
            rss = rss_mib(pid) if not args.cold_worker else None
            firsts.append(first_epoch)
            memory.append(rss)
            emit(
                "worker_run",
                run=index + 1,
                worker="cold" if args.cold_worker else "warm",
                queued_to_first_epoch_s=round(first_epoch, 2),
                worker_rss_mib_after=rss,
                preset=config.preset,
                backbone=config.backbone,
                image_size=config.image_size,
                data=str(data),
            )
        emit(
            "worker_summary",
            worker="cold" if args.cold_worker else "warm",
            runs=args.runs,
            median_first_epoch_s=round(statistics.median(firsts), 2),
            max_first_epoch_s=round(max(firsts), 2),
            rss_mib_after_each=memory,
        )
        if pid := worker_pid(runs):
            os.kill(pid, 15)


if __name__ == "__main__":
    main()
