"""Dataset statistics as tables: class counts, sizes, colour, unreadable files and duplicates.

Each photo is measured once on a small decoded version (`draft_size=64`), so a report on a few
thousand photos takes seconds. Duplicates matter twice: they inflate a class, and a photo in
train with its copy in test makes the test accuracy a memory test (`split_leaks`).
"""

from __future__ import annotations

import hashlib
import io
import os
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from flower_core.data.dataset import DEFAULT_SPLIT, Dataset, Split, scan_dataset, split_dataset
from flower_core.data.images import DECODE_THREADS, load_image
from flower_core.data.synthetic import is_synthetic

# Photos whose dHash and aHash (64 bits each) differ in at most this many bits in all are near
# duplicates: on the real photos it finds resized, re-coloured and re-cropped copies, while
# different centred flowers on plain backgrounds are 9 or more bits apart.
NEAR_DUPLICATE_BITS = 8
_THUMBNAIL = 64
_EXIF_ORIENTATION = 274
_PARTS = ("train", "val", "test")


def _shown_size(data: bytes) -> tuple[int, int, str]:
    """Width, height (after EXIF rotation, as `load_image` shows it) and format, from the header."""
    with Image.open(io.BytesIO(data)) as image:
        width, height = image.size
        if image.getexif().get(_EXIF_ORIENTATION) in (5, 6, 7, 8):
            width, height = height, width
        return width, height, image.format or ""


def perceptual_hashes(image: Image.Image) -> tuple[str, str]:
    """The 64-bit difference hash (dHash) and average hash (aHash) of a photo, as hex strings.

    dHash records whether each pixel of a 9x8 grey thumbnail is brighter than its right-hand
    neighbour, so it survives resizing, re-encoding and small colour changes.
    """
    grey = image.convert("L")
    wide = np.asarray(grey.resize((9, 8), Image.Resampling.BOX), dtype=np.int16)
    square = np.asarray(grey.resize((8, 8), Image.Resampling.BOX), dtype=np.float32)
    dhash = np.packbits(wide[:, 1:] > wide[:, :-1]).tobytes().hex()
    ahash = np.packbits(square > square.mean()).tobytes().hex()
    return dhash, ahash


def _measure(root: Path, relpath: str) -> dict:
    data = (root / relpath).read_bytes()
    width, height, image_format = _shown_size(data)
    small = load_image(data, draft_size=_THUMBNAIL)
    small.thumbnail((_THUMBNAIL, _THUMBNAIL))
    red, green, blue = np.asarray(small, dtype=np.float32).reshape(-1, 3).mean(axis=0)
    dhash, ahash = perceptual_hashes(small)
    return {
        "path": relpath,
        "class": relpath.split("/", 1)[0],
        "format": image_format,
        "width": width,
        "height": height,
        "aspect": round(width / height, 4),
        "file_bytes": len(data),
        "brightness": round(0.299 * red + 0.587 * green + 0.114 * blue, 2),
        "mean_r": round(float(red), 2),
        "mean_g": round(float(green), 2),
        "mean_b": round(float(blue), 2),
        "sha256": hashlib.sha256(data).hexdigest(),
        "dhash": dhash,
        "ahash": ahash,
    }


def image_table(dataset: Dataset, progress: Callable[[int, int], None] | None = None):
    """One row per usable photo: size, aspect, file size, brightness, mean R/G/B and hashes.

    Args:
        dataset: a scanned `Dataset`; its skipped files are not measured.
        progress: called as `progress(done, total)` while photos are measured.
            Defaults to `None`.

    Returns:
        A `pandas.DataFrame` in the dataset's file order; colours are 0-255 means.
    """
    with ThreadPoolExecutor(max_workers=DECODE_THREADS) as pool:
        rows = []
        for row in pool.map(lambda rel: _measure(dataset.root, rel), dataset.files):
            rows.append(row)
            if progress:
                progress(len(rows), len(dataset.files))
    return pd.DataFrame(rows)


def imbalance_ratio(counts: dict[str, int]) -> float:
    """Photos in the largest class divided by photos in the smallest (1.0 is balanced)."""
    return max(counts.values()) / max(1, min(counts.values()))


def class_summary(table: pd.DataFrame, class_names: list[str]) -> pd.DataFrame:
    """Per class: number of photos, median width, height, aspect and size, mean colour."""
    grouped = table.groupby("class")
    summary = pd.DataFrame(
        {
            "images": grouped.size(),
            "median_width": grouped["width"].median(),
            "median_height": grouped["height"].median(),
            "median_aspect": grouped["aspect"].median(),
            "median_kb": grouped["file_bytes"].median() / 1024,
            "brightness": grouped["brightness"].mean(),
            "mean_r": grouped["mean_r"].mean(),
            "mean_g": grouped["mean_g"].mean(),
            "mean_b": grouped["mean_b"].mean(),
        }
    )
    return summary.reindex(pd.Index(class_names, name="class")).round(2)


def exact_duplicates(table: pd.DataFrame) -> list[list[str]]:
    """Groups of byte-identical files (same SHA-256), each sorted, largest first."""
    groups = [sorted(paths) for _, paths in table.groupby("sha256")["path"] if len(paths) > 1]
    return sorted(groups, key=lambda group: (-len(group), group))


def _close_pairs(codes: np.ndarray, max_bits: int) -> list[tuple[int, int]]:
    """Index pairs (i < j) of rows of uint64 codes at Hamming distance <= max_bits, by blocks."""
    pairs = []
    for start in range(0, len(codes), 256):
        block = codes[start : start + 256, None, :] ^ codes[None, :, :]
        distances = np.bitwise_count(block).sum(axis=-1)
        rows, cols = np.nonzero(distances <= max_bits)
        rows += start
        upper = cols > rows
        pairs += zip(rows[upper].tolist(), cols[upper].tolist(), strict=True)
    return pairs


def _linked_groups(count: int, pairs: list[tuple[int, int]]) -> list[list[int]]:
    """Connected components (union-find) of `pairs` over `count` items, singletons left out."""
    parent = list(range(count))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in pairs:
        parent[root(i)] = root(j)
    groups: dict[int, list[int]] = {}
    for i in range(count):
        groups.setdefault(root(i), []).append(i)
    return [members for members in groups.values() if len(members) > 1]


def near_duplicates(table: pd.DataFrame, max_bits: int = NEAR_DUPLICATE_BITS) -> list[list[str]]:
    """Groups of photos that look alike but are not all byte-identical (resized, re-encoded).

    Two photos are linked when their dHash and aHash together differ in at most `max_bits` of
    128 bits; groups are the linked chains. Groups of only identical files are left to
    `exact_duplicates`.
    """
    hashes = [[int(value, 16) for value in table[column]] for column in ("dhash", "ahash")]
    codes = np.array(hashes, dtype=np.uint64).T
    groups = []
    for members in _linked_groups(len(codes), _close_pairs(codes, max_bits)):
        rows = table.iloc[members]
        if rows["sha256"].nunique() > 1:
            groups.append(sorted(rows["path"]))
    return sorted(groups, key=lambda group: (-len(group), group))


def split_leaks(duplicate_groups: list[list[str]], split: Split) -> list[dict]:
    """Duplicate groups whose photos fall in more than one part of `split` (train, val, test).

    Returns:
        One `{"files": [...], "parts": [...]}` per leaking group; files outside the split
        (e.g. unreadable ones) are ignored.
    """
    part_of = {relpath: part for part in _PARTS for relpath in getattr(split, part)}
    leaks = []
    for group in duplicate_groups:
        parts = {part_of[relpath] for relpath in group if relpath in part_of}
        if len(parts) > 1:
            leaks.append({"files": group, "parts": [part for part in _PARTS if part in parts]})
    return leaks


def split_table(split: Split, class_names: list[str]) -> pd.DataFrame:
    """Photos per class (rows) in train, val and test (columns), with a total column."""
    table = pd.DataFrame(index=pd.Index(class_names, name="class"))
    for part in _PARTS:
        counts = Counter(relpath.split("/", 1)[0] for relpath in getattr(split, part))
        table[part] = [counts[name] for name in class_names]
    table["total"] = table[list(_PARTS)].sum(axis=1)
    return table


def _ranges(table: pd.DataFrame) -> dict:
    """Min, median and max of width, height, aspect and file size (kB), over all photos."""
    columns = table[["width", "height", "aspect"]].assign(file_kb=table["file_bytes"] / 1024)
    return columns.agg(["min", "median", "max"]).astype(float).round(2).to_dict()


def dataset_report(root: str | os.PathLike, progress: Callable[[int, int], None] | None = None):
    """Every statistic of a dataset folder in one JSON-able dict (the CLI's `eda`).

    Args:
        root: dataset folder, one sub-folder per class.
        progress: called as `progress(done, total)` over both passes, checking then measuring
            each photo (unreadable ones count as measured). Defaults to `None`.

    Returns:
        A dict with counts, imbalance ratio, unreadable files, per-class and overall sizes and
        colours, exact and near duplicate groups (and those spanning classes), the default
        split's sizes and the duplicate groups it leaks across parts, and the seconds taken.
    """
    started = time.perf_counter()
    tick = progress or (lambda done, total: None)
    dataset = scan_dataset(root, progress=lambda done, total: tick(done, 2 * total))
    found, skipped = len(dataset.files) + len(dataset.skipped), len(dataset.skipped)
    table = image_table(dataset, progress=lambda done, _: tick(found + skipped + done, 2 * found))
    counts = dataset.counts()
    exact, near = exact_duplicates(table), near_duplicates(table)
    split = split_dataset(dataset, **DEFAULT_SPLIT)
    per_class = class_summary(table, dataset.class_names)
    return {
        "root": str(dataset.root),
        "synthetic": is_synthetic(root),
        "classes": dataset.class_names,
        "images": len(dataset.files),
        "counts": counts,
        "imbalance_ratio": round(imbalance_ratio(counts), 3),
        "unreadable": [{"path": path, "reason": reason} for path, reason in dataset.skipped],
        "per_class": per_class.reset_index().to_dict(orient="records"),
        "sizes": _ranges(table),
        "formats": table["format"].value_counts().to_dict(),
        "duplicates": {
            "exact": exact,
            "near": near,
            "cross_class": [g for g in exact + near if len({p.split("/")[0] for p in g}) > 1],
        },
        "split": {
            **DEFAULT_SPLIT,
            "counts": split_table(split, dataset.class_names).to_dict(orient="index"),
            "leaks": split_leaks(exact + near, split),
        },
        "seconds": round(time.perf_counter() - started, 2),
    }


def _group_lines(title: str, groups: list, shown: int = 5) -> list[str]:
    lines = [f"{title}: {len(groups)} groups, {sum(len(group) for group in groups)} files"]
    lines += [f"  {' = '.join(group)}" for group in groups[:shown]]
    if len(groups) > shown:
        lines.append(f"  ... and {len(groups) - shown} more (see --json)")
    return lines


def format_report(report: dict) -> str:
    """The `dataset_report` as compact text for a terminal."""
    kind = " (synthetic)" if report["synthetic"] else ""
    sizes = report["sizes"]
    per_class = pd.DataFrame(report["per_class"]).set_index("class")
    lines = [
        f"dataset {report['root']}{kind}: {report['images']} images, {len(report['classes'])} "
        f"classes, {len(report['unreadable'])} unreadable, "
        f"imbalance (max/min) {report['imbalance_ratio']:.2f}",
        "",
        per_class.to_string(float_format="{:.2f}".format),
        "",
        *(
            f"{name:<7} min {r['min']:g}  median {r['median']:g}  max {r['max']:g}"
            for name, r in sizes.items()
        ),
        "formats: " + ", ".join(f"{name} {count}" for name, count in report["formats"].items()),
    ]
    lines += [f"unreadable: {item['path']}: {item['reason']}" for item in report["unreadable"]]
    duplicates, split = report["duplicates"], report["split"]
    lines += _group_lines("exact duplicates", duplicates["exact"])
    lines += _group_lines("near duplicates", duplicates["near"])
    lines.append(f"duplicate groups spanning classes: {len(duplicates['cross_class'])}")
    parts = pd.DataFrame(split["counts"]).T.sum()
    lines.append(
        f"default split (seed {split['seed']}): train {parts['train']}, val {parts['val']}, "
        f"test {parts['test']}; {len(split['leaks'])} duplicate groups straddle parts"
    )
    lines.append(f"took {report['seconds']:.1f} s")
    return "\n".join(lines)
