"""Fix a dataset's labels with nothing lost: move a photo to another class, exclude it, keep it
(reviewed), add, rename or remove a class; each action is appended to a journal inside the
dataset and undone last first, back to the byte-identical dataset.

Nothing is ever deleted: an excluded photo (or a removed class) moves into `EXCLUDED_DIR`, a
hidden folder that discovery skips (`dataset.list_candidates` lists visible class folders only).
Every action holds `LOCK_FILE` (fcntl) while it checks, renames and appends to `JOURNAL_FILE`,
so two sessions fixing the same dataset at once lose no action and never undo the same one twice.
The journal is append-only: an undo is itself a line (`"action": "undo"`), which pops the last
action still standing.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from flower_core.data.images import is_candidate_image
from flower_core.errors import FlowerError
from flower_core.paths import check_allowed_path
from flower_core.store.runs import append_jsonl, clear_write_errors

EXCLUDED_DIR = ".excluded"
JOURNAL_FILE = ".fixes.jsonl"
LOCK_FILE = ".fixes.lock"
UNDO = "undo"
MAX_CLASS_NAME = 100


def _root(root: str | os.PathLike) -> Path:
    resolved = check_allowed_path(root)
    if not resolved.is_dir():
        raise FlowerError(f"dataset folder not found: {root}; pass the folder that holds the class folders")
    return resolved


@contextmanager
def _locked(root: Path) -> Iterator[None]:
    """Hold the dataset's fix lock; a folder that cannot be written is one line."""
    with clear_write_errors():
        handle = open(root / LOCK_FILE, "a")
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        with clear_write_errors():
            yield


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def journal(root: str | os.PathLike) -> list[dict]:
    """Every line of the dataset's journal, oldest first (an empty list before the first fix)."""
    path = _root(root) / JOURNAL_FILE
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    try:
        return [json.loads(line) for line in lines if line.strip()]
    except ValueError as error:
        raise FlowerError(f"the fix journal is damaged ({error}); look at {path}") from None


def standing(entries: list[dict]) -> list[dict]:
    """The actions not undone, oldest first: each undo line pops the last one standing."""
    stack: list[dict] = []
    for entry in entries:
        if entry.get("action") == UNDO:
            if stack:
                stack.pop()
        else:
            stack.append(entry)
    return stack


def reviewed(root: str | os.PathLike) -> set[str]:
    """Photos a person already decided on (kept, moved: at their new path), to leave out of a
    review queue."""
    done = set()
    for entry in standing(journal(root)):
        if entry["action"] == "keep":
            done.add(entry["from"])
        elif entry["action"] == "move":
            done.add(entry["to"])
    return done


def _record(root: Path, action: str, source, target, **extra) -> dict:
    entry = {"when": _now(), "action": action, "from": source, "to": target, **extra}
    append_jsonl(root / JOURNAL_FILE, entry)
    return entry


def check_class_name(name: str) -> str:
    """`name` as a class folder name, or a one-line refusal (a path, hidden or empty name)."""
    name = str(name).strip()
    bad = (
        not name
        or name.startswith(".")
        or "/" in name
        or "\\" in name
        or "\0" in name
        or len(name) > MAX_CLASS_NAME
    )
    if bad:
        raise FlowerError(
            f"a class name must be 1 to {MAX_CLASS_NAME} characters, not start with '.', and hold no "
            f"'/' or '\\'. Received: {name!r}"
        )
    return name


def _classes(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _existing_class(root: Path, name: str) -> Path:
    folder = root / check_class_name(name)
    if not folder.is_dir():
        raise FlowerError(f"no class {name!r} in {root}; choose one of: {', '.join(_classes(root))}")
    return folder


def _photo(root: Path, photo: str | os.PathLike) -> str:
    """The dataset-relative path of `photo` (relative to the dataset, or a path to a file in it),
    refused in one line unless it is a photo of one of its class folders. The link itself is
    what moves, so a linked photo (a quick subset) is checked where the link lies."""
    given = Path(photo)
    candidate = given if given.is_absolute() else root / given
    if not given.is_absolute() and not os.path.lexists(candidate) and os.path.lexists(given):
        candidate = given.absolute()
    parent = check_allowed_path(candidate.parent, "photo")
    path = parent / candidate.name
    inside = path.is_relative_to(root) and len(path.relative_to(root).parts) >= 2
    rel = path.relative_to(root).as_posix() if inside else ""
    if not inside or rel.startswith(".") or not is_candidate_image(path) or not os.path.lexists(path):
        raise FlowerError(
            f"not a photo of the dataset's class folders: {photo}; pass a path like <class>/<photo> "
            f"inside {root}"
        )
    return rel


def _free(path: Path) -> Path:
    """`path`, or `name-2.ext`, `name-3.ext`, ... when taken (a photo is never overwritten)."""
    candidate, n = path, 2
    while os.path.lexists(candidate):
        candidate, n = path.with_name(f"{path.stem}-{n}{path.suffix}"), n + 1
    return candidate


def _rename(root: Path, source: str, target: str) -> None:
    """Move `root/source` to `root/target` (both relative), making the folders it needs."""
    (root / target).parent.mkdir(parents=True, exist_ok=True)
    os.rename(root / source, root / target)


def move_photo(root: str | os.PathLike, photo: str | os.PathLike, to_class: str) -> dict:
    """Relabel `photo` by moving it into the class folder `to_class` (a free name if taken).

    Returns:
        The journal entry: `{"when", "action": "move", "from", "to"}`, paths dataset-relative.

    Raises:
        FlowerError: `photo` is not a photo of the dataset, `to_class` is not one of its classes
            or is the photo's class already.
    """
    root = _root(root)
    with _locked(root):
        rel = _photo(root, photo)
        folder = _existing_class(root, to_class)
        if rel.split("/", 1)[0] == folder.name:
            raise FlowerError(f"{rel} is in {folder.name} already; choose another class")
        target = _free(folder / Path(rel).name).relative_to(root).as_posix()
        _rename(root, rel, target)
        return _record(root, "move", rel, target)


def exclude_photo(root: str | os.PathLike, photo: str | os.PathLike) -> dict:
    """Move `photo` into the hidden `EXCLUDED_DIR` (under its class's name), out of training."""
    root = _root(root)
    with _locked(root):
        rel = _photo(root, photo)
        target = _free(root / EXCLUDED_DIR / rel).relative_to(root).as_posix()
        _rename(root, rel, target)
        return _record(root, "exclude", rel, target)


def keep_photo(root: str | os.PathLike, photo: str | os.PathLike) -> dict:
    """Mark `photo` reviewed with its label kept (nothing moves; undone like any action)."""
    root = _root(root)
    with _locked(root):
        rel = _photo(root, photo)
        return _record(root, "keep", rel, rel)


def add_class(root: str | os.PathLike, name: str) -> dict:
    """A new, empty class folder `name`."""
    root = _root(root)
    with _locked(root):
        name = check_class_name(name)
        if os.path.lexists(root / name):
            raise FlowerError(f"class {name!r} exists already in {root}; choose another name")
        (root / name).mkdir()
        return _record(root, "add_class", None, name)


def rename_class(root: str | os.PathLike, old: str, new: str) -> dict:
    """Rename the class folder `old` to `new` (its photos keep their names)."""
    root = _root(root)
    with _locked(root):
        folder, new = _existing_class(root, old), check_class_name(new)
        if os.path.lexists(root / new):
            raise FlowerError(f"class {new!r} exists already in {root}; choose another name")
        os.rename(folder, root / new)
        return _record(root, "rename_class", folder.name, new)


def remove_class(root: str | os.PathLike, name: str) -> dict:
    """Move the class folder `name`, photos and all, into the hidden `EXCLUDED_DIR`."""
    root = _root(root)
    with _locked(root):
        folder = _existing_class(root, name)
        target = _free(root / EXCLUDED_DIR / folder.name).relative_to(root).as_posix()
        _rename(root, folder.name, target)
        return _record(root, "remove_class", folder.name, target)


def record_added(root: str | os.PathLike, photos: list[str]) -> dict:
    """Journal photos just written into the dataset (relative paths), so undo takes them out
    again (into `EXCLUDED_DIR`: an upload is not deleted either)."""
    root = _root(root)
    with _locked(root):
        return _record(root, "add_photos", None, list(photos))


def _undo_one(root: Path, entry: dict) -> None:
    """Put back what `entry` changed, refusing in one line when something took its place."""
    action, source, target = entry["action"], entry["from"], entry["to"]
    if action == "keep":
        return
    if action == "add_class":
        try:
            (root / target).rmdir()
        except OSError:
            raise FlowerError(
                f"cannot undo adding class {target!r}: it holds files now; move or exclude them first"
            ) from None
        return
    if action == "add_photos":
        for rel in target:
            if os.path.lexists(root / rel):
                _rename(root, rel, _free(root / EXCLUDED_DIR / rel).relative_to(root).as_posix())
        return
    if not os.path.lexists(root / target):
        raise FlowerError(f"cannot undo the {action} of {source}: {target} is no longer in {root}")
    if os.path.lexists(root / source):
        raise FlowerError(f"cannot undo the {action} of {source}: something else is there now; move it first")
    _rename(root, target, source)
    _remove_empty_parents(root, root / target)


def _remove_empty_parents(root: Path, path: Path) -> None:
    """Remove the now-empty folders of `EXCLUDED_DIR` an undo left behind."""
    excluded = root / EXCLUDED_DIR
    folder = path.parent
    while folder.is_relative_to(excluded):
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent


def undo(root: str | os.PathLike) -> dict:
    """Revert the last action still standing; called again, the one before it.

    Returns:
        The undone action's journal entry.

    Raises:
        FlowerError: nothing is left to undo, or a photo was moved by hand since.
    """
    root = _root(root)
    with _locked(root):
        stack = standing(journal(root))
        if not stack:
            raise FlowerError(f"nothing to undo in {root}: the journal has no action left standing")
        entry = stack[-1]
        _undo_one(root, entry)
        _record(root, UNDO, entry["to"], entry["from"], undone=entry["action"], of=entry["when"])
        return entry


def describe(entry: dict) -> str:
    """One line for a journal entry, e.g. `move daisy/a.jpg -> rose/a.jpg`."""
    action, source, target = entry["action"], entry["from"], entry["to"]
    if action == "add_photos":
        return f"add_photos: {len(target)} photos"
    if action == "add_class":
        return f"add_class {target}"
    return f"{action} {source}" + ("" if action == "keep" else f" -> {target}")


def pending(root: str | os.PathLike, suspects: list[dict]) -> list[dict]:
    """The suspects of an audit still to review: photos not decided on (`reviewed`) and still
    where the audit saw them; a duplicate group while two or more of its photos are left."""
    root, done = _root(root), reviewed(root)

    def here(rel: str) -> bool:
        return rel not in done and os.path.lexists(root / rel)

    left = []
    for suspect in suspects:
        if "group" in suspect:
            members = [rel for rel in suspect["group"] if os.path.lexists(root / rel)]
            if len(members) > 1 and not all(rel in done for rel in members):
                left.append({**suspect, "group": members})
        elif here(suspect["path"]):
            left.append(suspect)
    return left
