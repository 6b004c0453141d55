"""Size limits on what people upload, checked in code as well as by the Streamlit server.

The server refuses a single file over `server.maxUploadSize` (`.streamlit/config.toml`), but only
per file. The app checks every upload again here, before decoding anything: each photo against a
per-photo limit, and the photos sent together against a total, so one person's batch of huge
photos cannot set a shared server decoding and explaining gigabytes of pixels.
"""

from __future__ import annotations

from collections.abc import Iterable

from flower_core.errors import FlowerError

MAX_PHOTO_MB = 50
_MB = 1024**2


def _mb(size: int) -> str:
    return f"{size / _MB:,.1f} MB"


def check_upload(name: str, size: int, max_mb: float) -> None:
    """Refuse one uploaded file over `max_mb` megabytes (MiB, as Streamlit counts them).

    Raises:
        FlowerError: one line naming the file, its size and the limit.
    """
    if size > max_mb * _MB:
        raise FlowerError(f"{name} is {_mb(size)}, over the limit of {max_mb:g} MB per file")


def check_total(sizes: Iterable[int], max_mb: float) -> None:
    """Refuse files sent together whose sizes add up to more than `max_mb` megabytes.

    Raises:
        FlowerError: one line with the total and the limit.
    """
    sizes = list(sizes)
    total = sum(sizes)
    if total > max_mb * _MB:
        raise FlowerError(
            f"{len(sizes)} files of {_mb(total)} in all, over the limit of {max_mb:g} MB at once; "
            "upload fewer at a time"
        )
