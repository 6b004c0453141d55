"""Find a dataset laid out `<root>/<class>/<image>`, validate its photos and split it.

Scanning decodes every candidate photo once so that unreadable files are reported up front,
with their reason, instead of crashing a training run halfway through an epoch; a process that
scans the same folder again decodes only the photos changed since.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from flower_core.data.images import DECODE_THREADS, is_candidate_image, load_image
from flower_core.errors import FlowerError, ImageError
from flower_core.paths import allowed_roots, check_allowed_path, is_allowed

DEFAULT_DATA_DIR = Path("data/flowers")
# Validation decodes at a reduced JPEG scale: truncation is still detected, at a fraction of the cost.
_VALIDATION_DRAFT_SIZE = 64
# What checking a photo found, by its path and the (size, modification time, inode) it had then:
# a process that scans the same folder again (the app's worker, run after run) decodes only the
# photos added or changed since. Forgotten past this many photos.
_CHECKED: dict[str, tuple[tuple[int, int, int], str | None]] = {}
_CHECKED_LIMIT = 1_000_000


@dataclass(frozen=True)
class Dataset:
    """The usable photos of a dataset folder, as paths relative to `root`, and what was skipped."""

    root: Path
    class_names: list[str]
    files: list[str]
    labels: list[int]
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Number of usable photos per class, in label order."""
        counts = dict.fromkeys(self.class_names, 0)
        for label in self.labels:
            counts[self.class_names[label]] += 1
        return counts


def resolve_data_root(explicit: str | os.PathLike | None = None) -> Path:
    """The dataset folder: `explicit`, else `FLOWER_DATA`, else `data/flowers`."""
    return Path(explicit or os.environ.get("FLOWER_DATA") or DEFAULT_DATA_DIR)


def folder_stamp(root: str | os.PathLike) -> str:
    """A cheap fingerprint of a dataset folder: its class folders' names, times and photo counts.

    The app keys its cached scan of a dataset by this, so it is computed on every page view; the
    folder is checked against `FLOWER_ALLOWED_ROOTS` before anything in it is looked at, and a
    class folder that links outside them is left out, as `list_candidates` leaves it out.

    Returns:
        16 hex digits, or `"missing"` when `root` is not a readable folder.

    Raises:
        FlowerError: `root` is outside the allowed folders (the same message whatever is there).
    """
    roots = allowed_roots()
    resolved = check_allowed_path(root)
    parts = []
    try:
        if not resolved.is_dir():
            return "missing"
        for entry in sorted(resolved.iterdir()):
            if entry.is_dir() and not entry.name.startswith(".") and is_allowed(entry, roots):
                stat = entry.stat()
                parts.append(f"{entry.name}:{stat.st_mtime_ns}:{sum(1 for _ in entry.iterdir())}")
    except OSError:
        return "missing"
    return hashlib.sha1("|".join(parts).encode()).hexdigest()[:16]


def list_candidates(
    root: str | os.PathLike, min_classes: Literal[1, 2] = 2
) -> tuple[list[str], dict[str, list[str]]]:
    """Class folder names (sorted) and each class's candidate image files, without decoding.

    Every way in (app, CLI, jobs, evaluation on a folder) opens a dataset here, so this is where
    `FLOWER_ALLOWED_ROOTS` is enforced: the folder must resolve inside an allowed root, and a
    class folder or photo that is a link to somewhere outside them is left out
    (`flower_core.paths`). Training needs two classes; evaluating a run on one is fine.
    """
    roots = allowed_roots()
    resolved = check_allowed_path(root)
    if not resolved.is_dir():
        raise FlowerError(
            f"dataset folder not found: {root}. Expected one sub-folder per class, "
            "e.g. data/flowers/daisy/*.jpg"
        )
    class_names = [entry.name for entry in _class_folders(resolved, roots)]
    if len(class_names) < min_classes:
        raise FlowerError(
            f"dataset needs at least {'two class folders' if min_classes > 1 else 'one class folder'}, "
            f"found {len(class_names)} in {root}"
        )
    candidates = {}
    for name in class_names:
        paths = sorted(
            p
            for p in (resolved / name).rglob("*")
            if p.is_file() and is_candidate_image(p) and is_allowed(p, roots)
        )
        candidates[name] = [p.relative_to(resolved).as_posix() for p in paths]
    return class_names, candidates


def _class_folders(folder: Path, roots: list[Path] | None) -> list[Path]:
    """The class folders of a dataset folder, sorted: its visible, allowed sub-folders."""
    return sorted(
        entry
        for entry in folder.iterdir()
        if entry.is_dir() and not entry.name.startswith(".") and is_allowed(entry, roots)
    )


def _holds_photo(folder: Path, roots: list[Path] | None) -> bool:
    """Whether a photo (by its name) lies anywhere in `folder`; stops at the first one."""
    return any(p.is_file() and is_candidate_image(p) and is_allowed(p, roots) for p in folder.rglob("*"))


def find_datasets(places: list[str | os.PathLike], min_classes: int = 2) -> list[Path]:
    """The folders directly inside `places` that are datasets `list_candidates` opens: photos
    in at least `min_classes` class folders. What the app offers as "a dataset already here".

    Hidden folders, folders outside `FLOWER_ALLOWED_ROOTS` and the places themselves (a place
    inside another, like `data/uploads`, holds datasets, it is not one) are left out; a folder
    of code or a virtual environment, with no photos in two of its folders, is not offered.

    Args:
        places: folders to look in.
        min_classes: class folders with photos needed. Defaults to `2` (what training needs).

    Returns:
        The dataset folders, sorted.
    """
    roots = allowed_roots()
    looked_in = {Path(p).resolve() for p in places}
    found = set()
    for place in map(Path, places):
        if not place.is_dir() or not is_allowed(place, roots):
            continue
        for folder in _class_folders(place, roots):
            if folder.resolve() in looked_in:
                continue
            with_photos = 0
            for class_folder in _class_folders(folder, roots):
                with_photos += _holds_photo(class_folder, roots)
                if with_photos >= min_classes:
                    found.add(folder)
                    break
    return sorted(found)


def _problem(path: Path) -> str | None:
    """Why the photo at `path` cannot be used, or `None`; decoded only when new or changed."""
    try:
        stat = path.stat()
    except OSError:
        return _decoding_problem(path)  # says why in the same words as any unreadable photo
    seen = (stat.st_size, stat.st_mtime_ns, stat.st_ino)
    known = _CHECKED.get(str(path))
    if known is not None and known[0] == seen:
        return known[1]
    problem = _decoding_problem(path)
    if len(_CHECKED) >= _CHECKED_LIMIT:
        _CHECKED.clear()
    _CHECKED[str(path)] = (seen, problem)
    return problem


def _decoding_problem(path: Path) -> str | None:
    try:
        load_image(path, draft_size=_VALIDATION_DRAFT_SIZE)
    except ImageError as error:
        return str(error)
    return None


def scan_dataset(
    root: str | os.PathLike,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> Dataset:
    """Find and validate every photo under `root`.

    Args:
        root: folder with one sub-folder per class.
        progress: called as `progress(done, total)` while photos are checked. Defaults to `None`.

    Returns:
        A `Dataset`; unreadable files are listed in `skipped` with their reason.

    Raises:
        FlowerError: the folder is missing, has fewer than two classes, or a class has no
            readable photo.
    """
    root = Path(root)
    class_names, candidates = list_candidates(root)
    ordered = [(rel, label) for label, name in enumerate(class_names) for rel in candidates[name]]
    with ThreadPoolExecutor(max_workers=DECODE_THREADS) as pool:
        problems = []
        for done, problem in enumerate(pool.map(lambda item: _problem(root / item[0]), ordered), 1):
            problems.append(problem)
            if progress:
                progress(done, len(ordered))
    files, labels, skipped = [], [], []
    for (rel, label), problem in zip(ordered, problems):
        if problem is None:
            files.append(rel)
            labels.append(label)
        else:
            skipped.append((rel, problem))
    dataset = Dataset(root, class_names, files, labels, skipped)
    empty = [name for name, count in dataset.counts().items() if count == 0]
    if empty:
        raise FlowerError(f"class folder has no readable images: {', '.join(empty)} (in {root})")
    return dataset


def fingerprint(dataset: Dataset) -> str:
    """A short hash of relative paths, sizes and modification times of the usable photos."""
    digest = hashlib.sha256()
    for rel in dataset.files:
        stat = (dataset.root / rel).stat()
        digest.update(f"{rel}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class Split:
    """File lists (relative to the dataset root) of the train, validation and test parts."""

    train: list[str]
    val: list[str]
    test: list[str]
    seed: int

    def to_json(self) -> dict:
        return {"seed": self.seed, "train": self.train, "val": self.val, "test": self.test}

    @classmethod
    def from_json(cls, data: dict) -> Split:
        return cls(list(data["train"]), list(data["val"]), list(data["test"]), int(data["seed"]))


def load_split(path: str | os.PathLike) -> Split:
    """The `split.json` of an earlier run (`train --split`), read and checked before a new run
    is created, so a wrong path or file is one line and leaves nothing behind.

    Raises:
        FlowerError: the file is missing, a folder, not JSON, or not an object with the file lists
            `train`, `val`, `test` and an integer `seed`.
    """
    fix = "pass the split.json of an earlier run"
    try:
        data = json.loads(Path(path).read_text())
    except OSError as error:
        raise FlowerError(f"cannot read the split file ({error.strerror}); {fix}. Received: {path}") from None
    except ValueError as error:
        raise FlowerError(f"the split file is not JSON ({error}); {fix}. Received: {path}") from None
    lists = isinstance(data, dict) and all(
        isinstance(data.get(part), list) and all(isinstance(f, str) for f in data[part])
        for part in ("train", "val", "test")
    )
    if not lists or isinstance(data.get("seed"), bool) or not isinstance(data.get("seed"), int):
        raise FlowerError(
            f"the split file must be an object with the file lists train, val, test "
            f"and an integer seed; {fix}. Received: {path}"
        )
    return Split.from_json(data)


def check_split_files(split: Split, files, path) -> Split:
    """`split`, if every file it lists is one of the dataset's `files`: the split of another
    dataset is refused in one line (before the run is created, `jobs.create_run`, and again when
    it trains, in case photos went meanwhile)."""
    missing = set(split.train + split.val + split.test) - set(files)
    if missing:
        raise FlowerError(
            f"{len(missing)} files of the split file are not in the dataset, e.g. {sorted(missing)[0]}; "
            f"pass the split.json of a run on this dataset. Received: {path}"
        )
    return split


# The split every run makes unless told otherwise (TrainConfig's defaults come from here).
DEFAULT_SPLIT = {"val_fraction": 0.15, "test_fraction": 0.15, "seed": 0}


def split_dataset(
    dataset: Dataset,
    *,
    val_fraction: float = DEFAULT_SPLIT["val_fraction"],
    test_fraction: float = DEFAULT_SPLIT["test_fraction"],
    seed: int = DEFAULT_SPLIT["seed"],
) -> Split:
    """Stratified, seeded split: each class is shuffled and cut in the same proportions.

    The same files and seed always give the same split, whatever order the files were found in.
    """
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise FlowerError(
            "val and test fractions must be in [0, 1) and sum to less than 1. "
            f"Received: val_fraction={val_fraction}, test_fraction={test_fraction}"
        )
    by_class: dict[int, list[str]] = defaultdict(list)
    for rel, label in zip(dataset.files, dataset.labels):
        by_class[label].append(rel)
    parts: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for label in sorted(by_class):
        files = sorted(by_class[label])
        random.Random(f"{seed}:{dataset.class_names[label]}").shuffle(files)
        n_test = round(len(files) * test_fraction)
        n_val = round(len(files) * val_fraction)
        parts["test"] += files[:n_test]
        parts["val"] += files[n_test : n_test + n_val]
        parts["train"] += files[n_test + n_val :]
    return Split(sorted(parts["train"]), sorted(parts["val"]), sorted(parts["test"]), seed)


def labels_for(files: list[str], class_names: list[str]) -> list[int]:
    """Labels of relative paths `<class>/<file>`, by the class folder's name."""
    index = {name: i for i, name in enumerate(class_names)}
    try:
        return [index[rel.split("/", 1)[0]] for rel in files]
    except KeyError as error:
        raise FlowerError(
            f"class {error} is not one of the model's classes: {', '.join(class_names)}"
        ) from None
