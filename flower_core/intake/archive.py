"""Unpack an uploaded or downloaded archive of class folders (.zip, .tar, .tar.gz, .tgz), safely,
into a new folder.

An archive comes from outside, so nothing in it is trusted: every member name is checked before
anything is written (no absolute paths, no "..", no links or devices), the member count and the
unpacked size are capped (checked against the declared sizes up front and against the bytes
actually written, so a lying header cannot fill the disk), and everything is unpacked into a
private temp folder that is renamed into place only when all went well. Only photo files (the
extensions dataset discovery accepts) and folders are unpacked: anything else, a weights file
a form could then point at included, is left out and reported through `on_skip`. A zip and a
tar go through the same checks (`extract_archive` tells them apart by their bytes); a tar's
headers are read one at a time, so a compressed bomb is refused at its first oversized member,
before the rest of it is decompressed.
"""

from __future__ import annotations

import gzip
import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from flower_core.data.images import is_candidate_image
from flower_core.errors import FlowerError

MAX_FILES = 20_000
MAX_BYTES = 2 * 1024**3
# What `extract_archive` accepts, as upload forms list them.
ARCHIVE_TYPES = ("zip", "tar", "tar.gz", "tgz")
_CHUNK = 1024 * 1024
_IGNORED_PARTS = ("__MACOSX",)
# What reading a corrupt or truncated (compressed) tar raises.
_BAD_TAR = (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error)
Opener = Callable[[], BinaryIO]
OnSkip = Callable[[str], None] | None


def _safe_parts(name: str) -> tuple[str, ...] | None:
    """The path parts of a member name, or `None` for names to skip; raises on unsafe names."""
    name = name.replace("\\", "/")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise FlowerError(f"archive refused: absolute path inside it. Received: {name!r}")
    parts = tuple(p for p in PurePosixPath(name).parts if p not in ("", "."))
    if ".." in parts:
        raise FlowerError(f"archive refused: '..' in a path inside it. Received: {name!r}")
    if not parts or any(p in _IGNORED_PARTS for p in parts):
        return None
    return parts


def _zip_members(archive: zipfile.ZipFile) -> Iterator[tuple[str, bool, int, Opener]]:
    for info in archive.infolist():
        kind = stat.S_IFMT(info.external_attr >> 16)
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise FlowerError(f"archive refused: link or special file inside it. Received: {info.filename!r}")
        yield info.filename, info.is_dir(), info.file_size, lambda i=info: archive.open(i)


def _tar_members(archive: tarfile.TarFile) -> Iterator[tuple[str, bool, int, Opener]]:
    for info in archive:  # one header at a time: `_plan` stops at the first one over a limit
        if not (info.isfile() or info.isdir()):
            raise FlowerError(f"archive refused: link or special file inside it. Received: {info.name!r}")
        yield info.name, info.isdir(), info.size, lambda i=info: archive.extractfile(i)


def _plan(
    members, max_files: int, max_bytes: int, on_skip: OnSkip
) -> list[tuple[tuple[str, ...], bool, Opener]]:
    """Check every member before writing anything; returns (parts, is_dir, opener) to write."""
    plan, total, left_out = [], 0, 0
    for name, is_dir, size, opener in members:
        parts = _safe_parts(name)
        if parts is None or not (is_dir or is_candidate_image(PurePosixPath(*parts))):
            if not is_dir:
                left_out += 1
                if on_skip:
                    on_skip(name)
            continue
        plan.append((parts, is_dir, opener))
        total += 0 if is_dir else size
        if len(plan) > max_files:
            raise FlowerError(f"archive refused: more than {max_files:,} files in it")
        if total > max_bytes:
            raise FlowerError(f"archive refused: it unpacks to more than {max_bytes / 1e6:,.0f} MB")
    if not plan and not left_out:
        raise FlowerError("archive is empty: expected one folder per class with photos inside")
    return plan


def _write(plan, target: Path, max_bytes: int, progress) -> None:
    written = 0
    for done, (parts, is_dir, opener) in enumerate(plan, 1):
        path = target.joinpath(*parts)
        if is_dir:
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        with opener() as source, open(path, "wb") as sink:
            while chunk := source.read(_CHUNK):
                written += len(chunk)
                if written > max_bytes:
                    raise FlowerError(f"archive refused: it unpacks to more than {max_bytes / 1e6:,.0f} MB")
                sink.write(chunk)
        if progress:
            progress(done, len(plan))


def dataset_root_in(folder: Path) -> Path:
    """The folder holding the class folders: `folder`, or its only sub-folder if that is all."""
    entries = [e for e in Path(folder).iterdir() if not e.name.startswith(".")]
    folders = [e for e in entries if e.is_dir()]
    if len(folders) == 1 and len([e for e in entries if e.is_file()]) <= 2:
        inner = [e for e in folders[0].iterdir() if e.is_dir() and not e.name.startswith(".")]
        if len(inner) >= 2:
            return folders[0]
    return Path(folder)


def _unpack(members, out: Path, max_files: int, max_bytes: int, progress, on_skip) -> Path:
    out = Path(out)
    if out.exists():
        raise FlowerError(f"folder already exists; choose a new name. Received: out={out}")
    out.parent.mkdir(parents=True, exist_ok=True)
    plan = _plan(members, max_files, max_bytes, on_skip)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".partial"))
    try:
        _write(plan, staging, max_bytes, progress)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return dataset_root_in(out)


def extract_zip(
    source: str | os.PathLike | BinaryIO,
    out: str | os.PathLike,
    *,
    max_files: int = MAX_FILES,
    max_bytes: int = MAX_BYTES,
    progress: Callable[[int, int], None] | None = None,
    on_skip: OnSkip = None,
) -> Path:
    """Unpack a .zip of class folders into the new folder `out`.

    Args:
        source: the archive's path or an open binary file (an upload).
        out: the folder to create; it must not exist yet.
        max_files: the most members accepted. Defaults to `MAX_FILES`.
        max_bytes: the most unpacked bytes accepted. Defaults to `MAX_BYTES`.
        progress: called as `progress(done, total)` per member. Defaults to `None`.
        on_skip: called with the name of each file left out (not a photo, or `__MACOSX`).
            Defaults to `None`.

    Returns:
        The dataset root: `out`, or its single top folder when the archive wraps one.

    Raises:
        FlowerError: not a zip, an unsafe member, over a limit, or `out` exists.

    Example:
        >>> root = extract_zip("flowers.zip", "data/uploads/flowers")
    """
    try:
        with zipfile.ZipFile(source) as archive:
            return _unpack(_zip_members(archive), Path(out), max_files, max_bytes, progress, on_skip)
    except zipfile.BadZipFile:
        raise FlowerError("not a valid .zip file; upload a zip of one folder per class") from None


def _open_tar(source: str | os.PathLike | BinaryIO) -> tarfile.TarFile:
    if hasattr(source, "read"):
        return tarfile.open(fileobj=source, mode="r:*")
    return tarfile.open(source, mode="r:*")


def extract_tar(
    source: str | os.PathLike | BinaryIO,
    out: str | os.PathLike,
    *,
    max_files: int = MAX_FILES,
    max_bytes: int = MAX_BYTES,
    progress: Callable[[int, int], None] | None = None,
    on_skip: OnSkip = None,
) -> Path:
    """Unpack a .tar, .tar.gz or .tgz of class folders into the new folder `out`, as `extract_zip` does."""
    try:
        with _open_tar(source) as archive:
            return _unpack(_tar_members(archive), Path(out), max_files, max_bytes, progress, on_skip)
    except _BAD_TAR as error:
        raise FlowerError(f"not a valid tar archive: {error}") from None


def _is_zip(source: str | os.PathLike | BinaryIO) -> bool:
    try:
        return zipfile.is_zipfile(source)
    finally:
        if hasattr(source, "seek"):
            source.seek(0)


def _is_tar(source: str | os.PathLike | BinaryIO) -> bool:
    try:
        return tarfile.is_tarfile(source)
    except _BAD_TAR:
        return False
    finally:
        if hasattr(source, "seek"):
            source.seek(0)


def extract_archive(
    source: str | os.PathLike | BinaryIO,
    out: str | os.PathLike,
    *,
    max_files: int = MAX_FILES,
    max_bytes: int = MAX_BYTES,
    progress: Callable[[int, int], None] | None = None,
    on_skip: OnSkip = None,
) -> Path:
    """Unpack a .zip, .tar, .tar.gz or .tgz of class folders into the new folder `out`.

    The kind is read from the archive's bytes, not its name; both kinds get the same checks
    (see the module docstring). Args, returns and raises as `extract_zip`.

    Example:
        >>> root = extract_archive("flower_photos.tgz", "data/uploads/flowers")
    """
    kwargs = dict(max_files=max_files, max_bytes=max_bytes, progress=progress, on_skip=on_skip)
    if _is_zip(source):
        return extract_zip(source, out, **kwargs)
    if _is_tar(source):
        return extract_tar(source, out, **kwargs)
    raise FlowerError(f"not a valid {archive_kinds()} file; upload an archive of one folder per class")


def archive_kinds() -> str:
    """`.zip, .tar, .tar.gz or .tgz`: the kinds accepted, for messages."""
    return ", ".join(f".{t}" for t in ARCHIVE_TYPES[:-1]) + f" or .{ARCHIVE_TYPES[-1]}"


def archive_stem(name: str) -> str:
    """`flowers` for `flowers.tar.gz`, `flowers.tgz` or `flowers.zip`: a name for what it unpacks to."""
    for kind in sorted(ARCHIVE_TYPES, key=len, reverse=True):
        if name.lower().endswith(f".{kind}"):
            return name[: -len(kind) - 1]
    return name


def declared_size(source: BinaryIO, limit: int = MAX_BYTES) -> int:
    """The unpacked size an archive's headers declare, counted up to just over `limit` (its
    bytes are checked again as they are written); 0 when it is no archive (unpacking says so)."""
    try:
        if _is_zip(source):
            with zipfile.ZipFile(source) as archive:
                return sum(info.file_size for info in archive.infolist())
        total = 0
        with _open_tar(source) as archive:
            for count, info in enumerate(archive, 1):
                total += info.size
                if total > limit or count > MAX_FILES:
                    break
        return total
    except (zipfile.BadZipFile, *_BAD_TAR):
        return 0
    finally:
        source.seek(0)
