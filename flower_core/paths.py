"""Keep paths typed by users (datasets, weights files) inside the folders a shared server allows.

On a laptop any folder may hold a dataset. On a server shared by a class or a team, a path typed
into the app must not reach other people's files or the system's, so the admin sets
`FLOWER_ALLOWED_ROOTS` to the folders datasets may live in (separated by `os.pathsep`, `:` on
Linux). Every way in (app, CLI, background jobs, `evaluate --data`) opens a dataset through
`flower_core.data.list_candidates`, and a weights file through `backbones.ensure_weights`; both
check the path here after resolving symlinks and "..", so neither a link nor a `../` can step
outside. Unset, nothing is restricted.
"""

from __future__ import annotations

import os
from pathlib import Path

from flower_core.errors import FlowerError

ALLOWED_ROOTS_ENV = "FLOWER_ALLOWED_ROOTS"


def _resolve(path: str | os.PathLike, what: str = "dataset folder") -> Path:
    """`path` with `~`, symlinks and ".." resolved; a loop or a NUL byte is a one-line error."""
    try:
        return Path(path).expanduser().resolve(strict=False)
    except (OSError, RuntimeError, ValueError) as error:
        raise FlowerError(f"cannot resolve the {what} path ({error}). Received: {str(path)!r}") from None


def allowed_roots() -> list[Path] | None:
    """The resolved folders of `FLOWER_ALLOWED_ROOTS`, or `None` when it is unset or empty.

    Returns:
        A list of absolute folders; relative entries are taken from the current folder.
    """
    value = os.environ.get(ALLOWED_ROOTS_ENV, "")
    roots = [_resolve(part.strip()) for part in value.split(os.pathsep) if part.strip()]
    return roots or None


def is_allowed(path: str | os.PathLike, roots: list[Path] | None) -> bool:
    """True when the resolved `path` is one of `roots` or inside one (compared by whole path
    parts, so `/data/flowers-evil` is not inside `/data/flowers`), or when `roots` is `None`."""
    if roots is None:
        return True
    resolved = _resolve(path)
    return any(resolved.is_relative_to(root) for root in roots)


def check_allowed_path(path: str | os.PathLike, what: str = "dataset folder") -> Path:
    """The resolved `path`, if `FLOWER_ALLOWED_ROOTS` allows it.

    Args:
        path: a dataset folder or weights file as typed by a user or given on the command line.
        what: what the path is, for the error message.

    Returns:
        The absolute path with symlinks and ".." resolved (the folder need not exist).

    Raises:
        FlowerError: the path resolves outside every allowed folder.

    Example:
        >>> os.environ["FLOWER_ALLOWED_ROOTS"] = "/srv/flowers"
        >>> check_allowed_path("/srv/flowers/daisies/../tulips")
        PosixPath('/srv/flowers/tulips')
    """
    resolved = _resolve(path, what)
    roots = allowed_roots()
    if is_allowed(resolved, roots):
        return resolved
    shown = f"{path} (resolves to {resolved})" if str(resolved) != str(path) else str(path)
    raise FlowerError(
        f"{what} is outside the allowed folders ({', '.join(map(str, roots))}); choose a "
        f"{what.split()[-1]} inside them or ask the server's admin (FLOWER_ALLOWED_ROOTS). Received: {shown}"
    )
