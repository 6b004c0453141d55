"""Summarise a folder of study runs (from scripts/reproduce_study.sh) as a markdown table.

Groups runs by preset and weights, and reports mean and standard deviation over seeds of test
accuracy and loss beside the study's numbers, with the mean wall time per run.

Usage: python -m scripts.summarize_study runs/study
"""

from __future__ import annotations

import statistics
import sys
from collections import defaultdict
from pathlib import Path

from flower_core.config import STUDY_RESULTS
from flower_core.store.runs import RunStore


def _mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {std:.4f}"


def _timings(root: Path) -> dict[str, list[float]]:
    """Wall seconds per run id, from the timings.tsv that the reproduce script writes."""
    seconds = {}
    path = root / "timings.tsv"
    for line in path.read_text().splitlines() if path.is_file() else []:
        label, wall, payload = line.split("\t", 2)
        if '"run_id": "' in payload:
            seconds[payload.split('"run_id": "', 1)[1].split('"', 1)[0]] = float(wall)
    return seconds


def summarize(root: Path) -> str:
    groups = defaultdict(list)
    wall = _timings(root)
    for row in RunStore(root).list_runs():
        if row.get("state") == "done":
            key = (row["preset"], "no transfer" if row["weights"] == "none" else "ImageNet")
            groups[key].append(row)
    lines = [
        "| preset | backbone weights | runs | test accuracy (mean ± sd) | test loss (mean ± sd) "
        "| study's accuracy / loss | mean wall time per run |",
        "|---|---|---|---|---|---|---|",
    ]
    order = list(STUDY_RESULTS) + sorted({p for p, _ in groups} - set(STUDY_RESULTS))
    for preset in order:
        for weights in ("ImageNet", "no transfer"):
            rows = groups.get((preset, weights))
            if not rows:
                continue
            study = STUDY_RESULTS.get(preset)
            study_text = f"{study[1]:.2%} / {study[0]:.4f}" if study and weights == "ImageNet" else "-"
            times = [wall[r["run_id"]] for r in rows if r["run_id"] in wall]
            time_text = f"{statistics.mean(times):.0f} s" if times else "-"
            lines.append(
                f"| `{preset}` | {weights} | {len(rows)} | {_mean_std([r['test_accuracy'] for r in rows])} "
                f"| {_mean_std([r['test_loss'] for r in rows])} | {study_text} | {time_text} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    print(summarize(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/study")))
