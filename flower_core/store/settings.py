"""What the app remembers between visits (the dataset last chosen) and where it writes new
datasets. Plain files, no Streamlit: the app's pages only call these.

The settings file sits in the runs folder and is replaced whole (temp file + rename), so a full
disk or a read-only folder leaves the old file as it was and says so in one line.
"""

from __future__ import annotations

import os
from pathlib import Path

from flower_core.data.dataset import resolve_data_root
from flower_core.errors import FlowerError
from flower_core.paths import check_allowed_path
from flower_core.store.runs import clear_write_errors, read_json, resolve_runs_root, write_json

SETTINGS_FILE = ".app_settings.json"
DATA_HOME_ENV = "FLOWER_DATA_HOME"


def data_home() -> Path:
    """Where new datasets (uploads, downloads, the synthetic set) are written: `FLOWER_DATA_HOME`,
    else the folder above the default dataset if writable, else `data`."""
    explicit = os.environ.get(DATA_HOME_ENV)
    if explicit:
        return Path(explicit)
    parent = resolve_data_root().parent
    writable = os.access(parent, os.W_OK) if parent.exists() else True
    return parent if writable else Path("data")


def settings_path(runs_root: str | os.PathLike | None = None) -> Path:
    return resolve_runs_root(runs_root) / SETTINGS_FILE


def saved_data_root(runs_root: str | os.PathLike | None = None) -> Path | None:
    """The dataset chosen last in the app, if it is still a folder the server allows; `None`
    when nothing usable was saved (no file, a damaged one, a folder gone or now outside)."""
    try:
        saved = (read_json(settings_path(runs_root), {}) or {}).get("data_root")
        path = check_allowed_path(saved) if isinstance(saved, str) and saved else None
        return path if path is not None and path.is_dir() else None
    except (FlowerError, OSError, AttributeError):
        return None


def save_data_root(path: str | os.PathLike, runs_root: str | os.PathLike | None = None) -> Path:
    """Remember `path` (resolved) as the dataset in use, for the next visit.

    Returns:
        The resolved path saved.

    Raises:
        FlowerError: one line when the file cannot be written (disk full, no permission); the
            old settings file is then left as it was.
    """
    resolved = check_allowed_path(path)
    target = settings_path(runs_root)
    with clear_write_errors():
        target.parent.mkdir(parents=True, exist_ok=True)
        write_json(target, {"data_root": str(resolved)})
    return resolved
