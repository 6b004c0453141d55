"""Size limits on what people upload, checked in code as well as by the Streamlit server, and
where uploaded datasets are unpacked.

The server refuses a single file over `server.maxUploadSize` (`.streamlit/config.toml`), but only
per file. The app checks every upload again here, before decoding anything: each photo against a
per-photo limit, and the photos sent together against a total, so one person's batch of huge
photos cannot set a shared server decoding and explaining gigabytes of pixels. Uploaded archives
(.zip, .tar, .tar.gz, .tgz) are unpacked each into its own folder, all of them together under a
quota.

Several people may upload at once, in threads of one server or in several servers, so checking
the quota and reserving room is one step under a file lock (`QUOTA_LOCK`): an upload being
unpacked counts for all the bytes its archive declares (and may write no more), in a hidden folder
`.<name>.upload/` whose `reserved` file its process holds locked; the room of a process that
died there is given back at the next upload.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, TextIO

from flower_core.data.dataset import list_candidates
from flower_core.data.images import is_candidate_image
from flower_core.errors import FlowerError
from flower_core.intake.archive import MAX_BYTES, declared_size, extract_archive
from flower_core.paths import check_allowed_path

MAX_PHOTO_MB = 50
UPLOADS_DIR = "uploads"
# In the uploads folder: held while the quota is measured and room reserved or given back.
QUOTA_LOCK = ".quota.lock"
# `.<name>.upload/` beside `<name>`: an upload being unpacked, its room in `reserved`.
_UNPACKING, _RESERVED = ".upload", "reserved"
UPLOAD_QUOTA_ENV = "FLOWER_UPLOAD_QUOTA_MB"
# All uploaded datasets together (`FLOWER_UPLOAD_QUOTA_MB`): five archives of the largest size each.
DEFAULT_UPLOAD_QUOTA_MB = 10 * 1024
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


def upload_quota_mb() -> float:
    """The most megabytes all uploaded datasets together may take (`FLOWER_UPLOAD_QUOTA_MB`).

    Raises:
        FlowerError: the variable is set but is not a positive number.
    """
    value = os.environ.get(UPLOAD_QUOTA_ENV, "").strip()
    if not value:
        return DEFAULT_UPLOAD_QUOTA_MB
    try:
        quota = float(value)
    except ValueError:
        quota = -1.0
    if not 0 < quota < float("inf"):
        raise FlowerError(f"{UPLOAD_QUOTA_ENV} must be a positive number of MB. Received: {value!r}")
    return quota


def uploaded_bytes(uploads: str | os.PathLike) -> int:
    """Bytes taken by the files under the uploads folder (links are not followed)."""
    total = 0
    for folder, _, files in os.walk(uploads):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                continue
    return total


@contextmanager
def _quota_lock(uploads: Path) -> Iterator[None]:
    """One upload at a time measures the quota and reserves or gives back room."""
    uploads.mkdir(parents=True, exist_ok=True)
    with open(uploads / QUOTA_LOCK, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield  # closing the file releases the lock


def _reserved_bytes(unpacking: Path) -> int | None:
    """The room an upload being unpacked in `unpacking` reserved, or `None` once its process
    is gone (its `reserved` file is no longer locked)."""
    try:
        with open(unpacking / _RESERVED) as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return int(handle.read())
    except (OSError, ValueError):
        pass
    return None


def _committed_bytes(uploads: Path) -> int:
    """Bytes on disk plus the room reserved by uploads still unpacking; the leftovers of an
    upload whose process died are removed. Called under `_quota_lock`."""
    room = 0
    for unpacking in uploads.glob(f".*{_UNPACKING}"):
        reserved = _reserved_bytes(unpacking)
        if reserved is None:
            shutil.rmtree(unpacking, ignore_errors=True)
            _remove_if_empty(uploads / unpacking.name[1 : -len(_UNPACKING)])
        else:
            room += max(0, reserved - uploaded_bytes(unpacking))
    return uploaded_bytes(uploads) + room


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass


def _reserve(uploads: Path, name: str) -> Path:
    """A new, empty folder under `uploads` named after `name`: made with `mkdir`, which only one
    of several people uploading the same name at once can win; the others get `name-2`, ..."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "dataset"
    for n in range(1, 10_000):
        candidate = uploads / (stem if n == 1 else f"{stem}-{n}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise FlowerError(f"no free folder name for {stem!r} in {uploads}; choose another name")


def _hold_room(folder: Path, size: int) -> tuple[Path, TextIO]:
    """The hidden folder where `folder`'s upload is unpacked, and its `reserved` file holding
    `size`, locked for as long as the returned file stays open."""
    unpacking = folder.parent / f".{folder.name}{_UNPACKING}"
    unpacking.mkdir()
    handle = open(unpacking / _RESERVED, "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.write(str(size))
        handle.flush()
    except BaseException:
        handle.close()
        shutil.rmtree(unpacking, ignore_errors=True)
        raise
    return unpacking, handle


def unpack_upload(
    source: BinaryIO,
    name: str,
    home: str | os.PathLike,
    progress: Callable[[int, int], None] | None = None,
    on_skip: Callable[[str], None] | None = None,
) -> Path:
    """Unpack an uploaded archive of class folders (.zip, .tar, .tar.gz or .tgz, with the same
    checks: `archive.extract_archive`) into its own new folder `home/uploads/<name>`.

    Each upload gets a folder of its own, even when several people upload the same name at
    once; the uploads together stay under `upload_quota_mb()`; and an upload that is refused
    (unsafe, over a limit, not a dataset of two classes or more) leaves nothing behind.

    Args:
        source: the uploaded archive, an open binary file.
        name: the name the person gave the new dataset (made safe here).
        home: the folder new datasets go to (`settings.data_home()`).
        progress: called as `progress(done, total)` per member. Defaults to `None`.
        on_skip: called with the name of each file left out (only photos are unpacked).
            Defaults to `None`.

    Returns:
        The new dataset's root folder.

    Raises:
        FlowerError: one line saying why the upload was refused.
    """
    uploads = Path(home) / UPLOADS_DIR
    quota = upload_quota_mb() * _MB
    declared = declared_size(source)
    with _quota_lock(uploads):
        used = _committed_bytes(uploads)
        if used + declared > quota:
            raise FlowerError(
                f"the uploads would take {_mb(used + declared)}, over the quota of {_mb(quota)} for "
                f"all uploaded datasets ({_mb(used)} in use); delete old uploads in {uploads} or ask "
                f"the server's admin ({UPLOAD_QUOTA_ENV})"
            )
        folder = _reserve(uploads, name)
        try:
            unpacking, held = _hold_room(folder, declared)
        except BaseException:
            folder.rmdir()
            raise
    try:
        # It may write no more than the room it reserved.
        unpacked = extract_archive(
            source,
            unpacking / "data",
            max_bytes=min(MAX_BYTES, declared),
            progress=progress,
            on_skip=on_skip,
        )
        with _quota_lock(uploads):
            os.replace(unpacking / "data", folder)
            shutil.rmtree(unpacking)
        root = folder / unpacked.relative_to(unpacking / "data")
        list_candidates(root)
    except BaseException:
        with _quota_lock(uploads):
            shutil.rmtree(unpacking, ignore_errors=True)
            shutil.rmtree(folder, ignore_errors=True)
        raise
    finally:
        held.close()
    return root


def new_dataset(home: str | os.PathLike, name: str) -> Path:
    """A new, empty dataset folder `home/uploads/<name>` (made safe; `name-2`, ... when taken),
    to fill class by class from the browser (`add_photos`)."""
    uploads = Path(home) / UPLOADS_DIR
    with _quota_lock(uploads):
        return _reserve(uploads, name)


def _app_dataset(root: str | os.PathLike, home: str | os.PathLike) -> tuple[Path, Path]:
    """The resolved dataset and uploads folders, if the dataset is one the app made (in the
    uploads folder, under the quota): photos are added to no other folder."""
    uploads = check_allowed_path(Path(home) / UPLOADS_DIR)
    resolved = check_allowed_path(root)
    if resolved.parent != uploads or not resolved.is_dir():
        raise FlowerError(
            f"photos can be added only to a dataset made in the app (a folder in {uploads}); make a new "
            f"dataset or a quick subset first. Received: {root}"
        )
    return resolved, uploads


def add_photos(
    root: str | os.PathLike,
    class_name: str,
    photos: list[tuple[str, bytes]],
    home: str | os.PathLike,
    max_mb: float = MAX_PHOTO_MB,
    on_skip: Callable[[str], None] | None = None,
) -> list[str]:
    """Write uploaded or captured photos into one class of a dataset the app made, each
    checked as every upload is: a photo file by its name, under `max_mb` alone and all together,
    decodable, and the uploads' quota; the addition is journaled (`fixes`), so undo takes it out.

    Args:
        root: the dataset, a folder in `home/uploads`.
        class_name: one of its classes.
        photos: `(file name, bytes)` pairs.
        home: the folder new datasets go to (`settings.data_home()`).
        max_mb: the limit per photo and for the photos together. Defaults to `MAX_PHOTO_MB`.
        on_skip: called with each name left out (not a photo, or not decodable). Defaults to `None`.

    Returns:
        The dataset-relative paths written.

    Raises:
        FlowerError: one line; nothing is written then.
    """
    from flower_core.data import fixes
    from flower_core.data.images import load_image

    root, uploads = _app_dataset(root, home)
    folder = root / fixes.check_class_name(class_name)
    if not folder.is_dir():
        raise FlowerError(f"no class {class_name!r} in {root}; add the class first")
    kept = []
    for name, data in photos:
        check_upload(name, len(data), max_mb)
        try:
            ok = is_candidate_image(Path(name)) and load_image(data, draft_size=64) is not None
        except FlowerError:
            ok = False
        if ok:
            kept.append((name, data))
        elif on_skip:
            on_skip(name)
    check_total((len(data) for _, data in kept), max_mb)
    quota = upload_quota_mb() * _MB
    written = []
    with _quota_lock(uploads):
        used, size = _committed_bytes(uploads), sum(len(data) for _, data in kept)
        if used + size > quota:
            raise FlowerError(
                f"the photos would take the uploads to {_mb(used + size)}, over the quota of {_mb(quota)}; "
                f"delete old uploads in {uploads} or ask the server's admin ({UPLOAD_QUOTA_ENV})"
            )
        for name, data in kept:
            target = _free_name(folder, name)
            target.write_bytes(data)
            written.append(target.relative_to(root).as_posix())
    if written:
        fixes.record_added(root, written)
    return written


def _free_name(folder: Path, name: str) -> Path:
    """A new file in `folder` named after `name` (made safe), never overwriting."""
    path = Path(name)
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", path.stem).strip("-.") or "photo"
    candidate, n = folder / f"{stem}{path.suffix.lower()}", 2
    while os.path.lexists(candidate):
        candidate, n = folder / f"{stem}-{n}{path.suffix.lower()}", n + 1
    return candidate


def add_archive(
    root: str | os.PathLike,
    class_name: str,
    source: BinaryIO,
    home: str | os.PathLike,
    max_mb: float = MAX_PHOTO_MB,
    on_skip: Callable[[str], None] | None = None,
) -> list[str]:
    """The photos of an uploaded .zip, .tar, .tar.gz or .tgz, whatever its folders, added to one
    class (`add_photos`).

    The archive is unpacked first with the archive's checks (`archive.extract_archive`: no
    traversal, links or devices, photo files only) into a scratch folder that is removed after,
    and may unpack to no more than `max_mb`, the limit the photos together have anyway: a bomb is
    refused from its declared sizes before anything is written, and a lying header at the first
    byte over.

    Raises:
        FlowerError: one line (not an archive, unsafe, over a limit or the quota); nothing is
            added then.
    """
    import tempfile

    root, uploads = _app_dataset(root, home)
    scratch = Path(tempfile.mkdtemp(dir=uploads, prefix=".archive-"))
    try:
        extract_archive(
            source, scratch / "data", max_bytes=int(min(MAX_BYTES, max_mb * _MB)), on_skip=on_skip
        )
        photos = [(p.name, p.read_bytes()) for p in sorted((scratch / "data").rglob("*")) if p.is_file()]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return add_photos(root, class_name, photos, home, max_mb, on_skip)


def quick_subset(
    source: str | os.PathLike, per_class: int, seed: int, home: str | os.PathLike, name: str
) -> Path:
    """A new dataset of `per_class` photos of each class of `source`, drawn with `seed`, as links
    to the photos (nothing copied; links take no room in the quota).

    Raises:
        FlowerError: `per_class` below 1, or `source` not a dataset.
    """
    import random

    if per_class < 1:
        raise FlowerError(f"a quick subset needs at least 1 photo per class. Received: per_class={per_class}")
    class_names, candidates = list_candidates(source)
    resolved = check_allowed_path(source)
    folder = new_dataset(home, name)
    for class_name in class_names:
        files = list(candidates[class_name])
        random.Random(f"{seed}:{class_name}").shuffle(files)
        (folder / class_name).mkdir()
        for rel in sorted(files[:per_class]):
            os.symlink((resolved / rel).resolve(), _free_name(folder / class_name, Path(rel).name))
    return folder
