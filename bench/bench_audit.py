"""Seconds an audit of a dataset takes with its photos' features already kept (warm) and with
none (cold, `--cold`: every photo through the backbone), and the time of each review action
(relabel, keep, exclude, undo, then the queue of what is left) on a linked copy of the dataset.

    FLOWER_DATA=../shared/data/flowers FLOWER_CACHE=.cache/features \\
        nice python bench/bench_audit.py [--image-size 384] [--cold] [--actions 20]

The warm figure needs the features in `FLOWER_CACHE` (an earlier audit at the same size); with
`--cold` a fresh cache folder is used first, then the same audit again warm.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

# common first: it puts the project on sys.path
from common import emit

# isort: split
from flower_core.data import fixes
from flower_core.data.audit import DEFAULT_IMAGE_SIZE, audit_dataset
from flower_core.data.dataset import resolve_data_root


def timed_audit(root: Path, image_size: int, cache: Path | None) -> dict:
    started = time.perf_counter()
    audit = audit_dataset(root, image_size=image_size, cache_root=cache)
    return {**audit.summary["seconds"], "wall": round(time.perf_counter() - started, 2), "audit": audit}


def linked_copy(root: Path, work: Path) -> Path:
    """The dataset as links, so review actions move links and leave the photos alone."""
    copy = work / "copy"
    for photo in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = photo.relative_to(root)
        if rel.parts[0].startswith("."):
            continue
        (copy / rel).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(photo.resolve(), copy / rel)
    return copy


def review_actions(copy: Path, suspects: list[dict], count: int) -> dict:
    """Median and worst seconds of each action, each followed by the queue the page then shows."""
    timings: dict[str, list[float]] = {"move": [], "keep": [], "exclude": [], "undo": []}
    labels = [s for s in suspects if s["kind"] == "label"][: 3 * count]
    for i, suspect in enumerate(labels):
        action = ("move", "keep", "exclude")[i % 3]
        started = time.perf_counter()
        if action == "move":
            fixes.move_photo(copy, suspect["path"], suspect["suggested"])
        elif action == "keep":
            fixes.keep_photo(copy, suspect["path"])
        else:
            fixes.exclude_photo(copy, suspect["path"])
        fixes.pending(copy, suspects)
        timings[action].append(time.perf_counter() - started)
    for _ in labels:
        started = time.perf_counter()
        fixes.undo(copy)
        fixes.pending(copy, suspects)
        timings["undo"].append(time.perf_counter() - started)
    return {
        name: {"median_s": round(sorted(t)[len(t) // 2], 4), "max_s": round(max(t), 4), "n": len(t)}
        for name, t in timings.items()
        if t
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=DEFAULT_IMAGE_SIZE)
    parser.add_argument("--cold", action="store_true", help="first audit with an empty feature cache")
    parser.add_argument("--actions", type=int, default=20, help="review actions of each kind")
    args = parser.parse_args()
    root = resolve_data_root()
    with tempfile.TemporaryDirectory() as work:
        cache = Path(work) / "cache" if args.cold else None
        if args.cold:
            cold = timed_audit(root, args.image_size, cache)
            emit(
                "audit_cold",
                image_size=args.image_size,
                photos=cold["audit"].summary["photos"],
                **{k: v for k, v in cold.items() if k != "audit"},
            )
        warm = timed_audit(root, args.image_size, cache)
        audit = warm.pop("audit")
        emit(
            "audit_warm",
            image_size=args.image_size,
            photos=audit.summary["photos"],
            features_computed=audit.summary["features_computed"],
            **warm,
        )
        copy = linked_copy(root, Path(work))
        emit(
            "review_actions",
            photos=audit.summary["photos"],
            suspects=len(audit.suspects),
            **review_actions(copy, audit.suspects, args.actions),
        )
        assert not fixes.standing(fixes.journal(copy)), "every action was undone"


if __name__ == "__main__":
    main()
