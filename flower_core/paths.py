"""Keep paths typed by users (datasets, weights files) inside the folders a shared server allows.

On a laptop any folder may hold a dataset. On a server shared by a class or a team, a path typed
into the app must not reach other people's files or the system's, so the admin sets
`FLOWER_ALLOWED_ROOTS` to the folders datasets may live in (separated by `os.pathsep`, `:` on
Linux). Every way in (app, CLI, background jobs, `evaluate --data`) opens a dataset through
`flower_core.data.dataset.list_candidates`, and a weights file through `backbones.ensure_weights`; both
check the path here, so neither a link nor a `../` can step outside.

With roots set, a path is resolved one component at a time and nothing outside the roots (or
above them, on the way in) is ever stat-ed, listed or read: a refusal is the same sentence
whether the outside path exists, is unreadable or is missing, so the app tells nobody what lies
outside; the same for `~name`, whether or not an account `name` exists. Unset, nothing is
restricted.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from flower_core.errors import FlowerError

ALLOWED_ROOTS_ENV = "FLOWER_ALLOWED_ROOTS"
_MAX_LINKS = 40


def _expand(path: str | os.PathLike, what: str) -> Path:
    """`path` with `~` expanded, made absolute without touching the disk; ".." is kept, since
    after a link it means the link target's parent."""
    try:
        if "\x00" in os.fspath(path):  # the OS refuses it later, as a bare `ValueError`
            raise ValueError("embedded null byte")
        expanded = Path(path).expanduser()
        return expanded if expanded.is_absolute() else Path.cwd() / expanded
    except (RuntimeError, ValueError, TypeError) as error:
        raise FlowerError(f"cannot read the {what} path ({error}). Received: {str(path)!r}") from None


def _resolve(path: str | os.PathLike, what: str = "dataset folder") -> Path:
    """`path` with `~`, symlinks and ".." resolved; a loop or a NUL byte is a one-line error."""
    try:
        return _expand(path, what).resolve(strict=False)
    except (OSError, RuntimeError, ValueError) as error:
        raise FlowerError(f"cannot resolve the {what} path ({error}). Received: {str(path)!r}") from None


def allowed_roots() -> list[Path] | None:
    """The resolved folders of `FLOWER_ALLOWED_ROOTS`, or `None` when it is unset or empty.

    Returns:
        A list of absolute folders; relative entries are taken from the current folder.
    """
    roots = _root_entries()
    return [_resolve(entry) for entry in roots] if roots else None


def _root_entries() -> list[Path]:
    value = os.environ.get(ALLOWED_ROOTS_ENV, "")
    return [Path(os.path.abspath(part.strip())) for part in value.split(os.pathsep) if part.strip()]


def _inside(path: Path, roots: list[Path]) -> bool:
    return any(path.is_relative_to(root) for root in roots)


def _on_the_way(path: Path, roots: list[Path]) -> bool:
    """True for a root, a path inside one, or a folder above one (which must be walked through)."""
    return any(path.is_relative_to(root) or root.is_relative_to(path) for root in roots)


def _walk(path: Path, touchable: list[Path]) -> Path | None:
    """`path` resolved like `realpath`, or `None` as soon as it would touch a path outside
    `touchable` (the roots as written and as resolved, and the folders above them)."""
    parts = list(reversed(path.parts[1:]))
    current, links = Path(path.anchor), 0
    while parts:
        name = parts.pop()
        if name in ("", "."):
            continue
        if name == "..":
            current = current.parent
            continue
        candidate = current / name
        if not _on_the_way(candidate, touchable):
            return None
        try:
            is_link = stat.S_ISLNK(os.lstat(candidate).st_mode)
        except OSError:  # missing or unreadable inside the roots: the rest is taken as written
            is_link = False
        if not is_link:
            current = candidate
            continue
        links += 1
        if links > _MAX_LINKS:
            raise FlowerError(f"too many symbolic links in the path. Received: {str(path)!r}")
        target = Path(os.readlink(candidate))
        if target.is_absolute():
            current = Path(target.anchor)
        parts.extend(reversed(target.parts[1:] if target.is_absolute() else target.parts))
    return current


def _contained(path: str | os.PathLike, what: str, roots: list[Path] | None = None) -> Path | None:
    """The resolved `path` if it lies inside the allowed roots (all of it when unset), else `None`,
    without touching anything outside them. `roots`: `allowed_roots()`, when already known."""
    entries = _root_entries()
    if not entries:
        return _resolve(path, what)
    roots = roots or [_resolve(entry) for entry in entries]
    try:
        expanded = _expand(path, what)
    except FlowerError:  # `~name` of no account: refused like any outside path, so no name shows
        return None
    resolved = _walk(expanded, entries + roots)
    return resolved if resolved is not None and _inside(resolved, roots) else None


def is_allowed(path: str | os.PathLike, roots: list[Path] | None) -> bool:
    """True when the resolved `path` is one of `roots` or inside one (compared by whole path
    parts, so `/data/flowers-evil` is not inside `/data/flowers`), or when `roots` is `None`.

    `roots` is `allowed_roots()`, fetched once by a caller that checks many paths."""
    if roots is None:
        return True
    return _contained(path, "dataset folder", roots) is not None


def outside_message(path: str | os.PathLike, what: str = "dataset folder") -> str:
    """The one refusal for every path outside the allowed folders: it says nothing of what, if
    anything, is there."""
    roots = ", ".join(map(str, allowed_roots() or []))
    return (
        f"{what} is outside the allowed folders ({roots}); choose a {what.split()[-1]} inside "
        f"them or ask the server's admin ({ALLOWED_ROOTS_ENV}). Received: {path}"
    )


def check_allowed_path(path: str | os.PathLike, what: str = "dataset folder") -> Path:
    """The resolved `path`, if `FLOWER_ALLOWED_ROOTS` allows it.

    Args:
        path: a dataset folder or weights file as typed by a user or given on the command line.
        what: what the path is, for the error message. Defaults to `"dataset folder"`.

    Returns:
        The absolute path with `~`, symlinks and ".." resolved (it need not exist).

    Raises:
        FlowerError: the path resolves outside every allowed folder (`outside_message`, the same
            whatever lies there, and for `~user` of no account); with no roots set, `~user`
            naming no account.

    Example:
        >>> os.environ["FLOWER_ALLOWED_ROOTS"] = "/srv/flowers"
        >>> check_allowed_path("/srv/flowers/daisies/../tulips")
        PosixPath('/srv/flowers/tulips')
    """
    resolved = _contained(path, what)
    if resolved is None:
        raise FlowerError(outside_message(path, what))
    return resolved
