"""Download the public TensorFlow `flower_photos` archive and unpack it as a dataset folder.

The archive (about 220 MB, 3670 photos in five class folders) is streamed to a temp file next
to the destination with a progress callback, then unpacked with the same checks as an upload
(`flower_core.intake.archive`). Offline, every step fails fast with one clear message.
"""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

from flower_core.errors import FlowerError
from flower_core.intake.archive import archive_kinds, extract_tar

FLOWER_PHOTOS_URL = "https://storage.googleapis.com/download.tensorflow.org/example_images/flower_photos.tgz"
FLOWER_PHOTOS_BYTES = 228_813_984
_CHUNK = 256 * 1024
Progress = Callable[[int, int | None], None]


def is_online(url: str = FLOWER_PHOTOS_URL, timeout: float = 1.5) -> bool:
    """True when the host of `url` answers a TCP connection within `timeout` seconds.

    Name resolution runs in a thread, so a hanging DNS lookup also counts against `timeout`.
    """
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    result: list[bool] = []

    def probe():
        try:
            with socket.create_connection((parsed.hostname, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


def offline_message(url: str = FLOWER_PHOTOS_URL) -> str:
    """Why the download is unavailable, and what to do instead."""
    return (
        f"no internet connection: cannot reach {urlparse(url).hostname}. Download "
        f"{url} on another machine and upload it (uploads take {archive_kinds()}), or use a local "
        "folder or the synthetic set"
    )


def download_file(url: str, dest: Path, progress: Progress | None = None, timeout: float = 30.0):
    """Stream `url` to the file `dest`, calling `progress(bytes_done, bytes_total_or_None)`."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(dest, "wb") as sink:
            total = int(response.headers.get("Content-Length") or 0) or None
            done = 0
            while chunk := response.read(_CHUNK):
                sink.write(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise FlowerError(f"download of {url} failed: {reason}") from None


def download_flower_photos(
    out: str | os.PathLike, *, url: str = FLOWER_PHOTOS_URL, progress: Progress | None = None
) -> Path:
    """Download and unpack `flower_photos` into the new folder `out`.

    Args:
        out: the folder to create; it must not exist yet.
        url: the archive to fetch. Defaults to `FLOWER_PHOTOS_URL`.
        progress: called as `progress(bytes_done, bytes_total)` while downloading.
            Defaults to `None`.

    Returns:
        The dataset root (the `flower_photos` folder with one sub-folder per class).

    Raises:
        FlowerError: offline, the download failed, or the archive is unsafe or invalid.

    Example:
        >>> root = download_flower_photos("data/flower_photos")
    """
    out = Path(out)
    if out.exists():
        raise FlowerError(f"folder already exists; choose a new name. Received: out={out}")
    if not is_online(url):
        raise FlowerError(offline_message(url))
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=".flower_photos.", suffix=".tgz")
    os.close(fd)
    try:
        download_file(url, Path(tmp), progress)
        return extract_tar(tmp, out)
    finally:
        Path(tmp).unlink(missing_ok=True)
