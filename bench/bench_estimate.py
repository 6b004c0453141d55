"""How far a first run's time estimate is from its actual time, on real photos.

Each case is a first run: a fresh feature cache and runs folder, so nothing has measured this
machine's speed yet and the estimate calibrates the backbone first, as the Train page does. The
run is then queued with that estimate (`jobs.create_run`) and trained in this process; its
status keeps the estimate and its start and end, and `estimate.estimate_error` compares them.
One JSON line per run, then the table for bench/README.md.

    FLOWER_DATA=/work/shared/data/flowers FLOWER_WEIGHTS_DIR=/work/shared/weights \\
        python bench/bench_estimate.py --subset 100
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

# common first: it puts the project on sys.path
from common import emit, load_average, subset_folder

# isort: split
from flower_core.config import make_config
from flower_core.data.dataset import resolve_data_root
from flower_core.store.runs import read_status
from flower_core.training.estimate import estimate_error, estimate_run, format_range
from flower_core.training.jobs import create_run
from flower_core.training.train import run_training

# preset, backbone, image size, epochs: cached features, augmented views, a larger input.
CASES = (
    ("base", "mobilenet", 224, 10),
    ("dropout20", "mobilenet", 160, 10),
    ("base", "mobilenet", 320, 10),
)


def first_run(data: Path, work: Path, preset: str, backbone: str, size: int, epochs: int) -> dict:
    """Estimate, queue and train one run on a fresh cache; its figure."""
    os.environ["FLOWER_CACHE"] = str(work / "cache")
    runs = work / "runs"
    config = make_config(preset, backbone=backbone, image_size=size, epochs=epochs)
    estimate = estimate_run(config, data, runs_root=runs, calibration="now")
    run_dir = create_run(config, data, runs, estimate=estimate)
    run_training(run_dir)
    status = read_status(run_dir)
    if status.state != "done":
        raise SystemExit(f"run {run_dir.name} ended {status.state}: {status.message}")
    error = estimate_error(status)
    return emit(
        "estimate",
        preset=preset,
        backbone=backbone,
        image_size=size,
        epochs=epochs,
        epochs_run=status.epoch,
        photos=estimate["photos"],
        **error,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subset", type=int, default=100, help="photos per class (0: all of them)")
    args = parser.parse_args()
    data = resolve_data_root()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_estimate_") as tmp:
        data = subset_folder(data, args.subset, Path(tmp))
        for index, case in enumerate(CASES):
            rows.append(first_run(data, Path(tmp) / str(index), *case))
    print("\n| run | photos | estimate (range) | actual | error | in range | load (1 min) |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['preset']} {row['backbone']} {row['image_size']} px, {row['epochs']} epochs "
            f"({row['epochs_run']} run) | {row['photos']} | {row['estimate_s']:.0f} s "
            f"({format_range(row['low_s'], row['high_s'])}) | {row['actual_s']:.0f} s | "
            f"{row['error']:+.0%} | {'yes' if row['in_range'] else 'no'} | {row['loadavg'][0]} |"
        )
    mean_abs = sum(abs(r["error"]) for r in rows) / len(rows)
    print(f"\nmean |error| {mean_abs:.0%} over {len(rows)} first runs; load now {load_average()}")


if __name__ == "__main__":
    main()
