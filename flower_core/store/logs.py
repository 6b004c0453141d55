"""Python logging for maintainers: each run's `run.log` (what the worker logged for it), and the
server's log on its console. Users see one-line errors; the log keeps what happened and the
traceback behind each."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Every module logs under this name (`logging.getLogger(__name__)` in `flower_core.*`).
ROOT_LOGGER = "flower_core"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def log_to_stderr(level: int = logging.INFO) -> None:
    """Send `flower_core`'s log to stderr (the Streamlit server's console), once per process
    however often it is called."""
    logger = logging.getLogger(ROOT_LOGGER)
    if not any(getattr(handler, "flower_stderr", False) for handler in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        handler.flower_stderr = True
        logger.addHandler(handler)
    logger.setLevel(min(logger.getEffectiveLevel(), level))


@contextmanager
def log_to_file(path: Path, level: int = logging.INFO) -> Iterator[None]:
    """Append `flower_core`'s log to `path` while the block runs (a training's `run.log`). The
    file is opened on the first record; a full disk loses log lines, never the training."""
    logger = logging.getLogger(ROOT_LOGGER)
    handler = logging.FileHandler(path, encoding="utf-8", delay=True)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(min(logger.getEffectiveLevel(), level))
    try:
        yield
    finally:
        logger.removeHandler(handler)
        handler.close()
        logger.setLevel(previous)
