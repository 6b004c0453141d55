"""Real archives written to disk for the tests of uploads: a .zip or a tar, with a link if asked."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path


def write_archive(path: Path, members: dict[str, bytes], symlink: str | None = None) -> Path:
    """A real archive on disk: a .zip, or a tar compressed as its name says (.tar.gz, .tgz, .tar)."""
    if path.suffix == ".zip":
        with zipfile.ZipFile(path, "w") as archive:
            for name, data in members.items():
                archive.writestr(name, data)
        return path
    with tarfile.open(path, "w:gz" if path.suffix in (".gz", ".tgz") else "w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        if symlink:
            info = tarfile.TarInfo(symlink)
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            archive.addfile(info)
    return path
