"""Safe unpacking of uploaded archives, and the offline behaviour of the flower_photos download."""

import gzip
import io
import socket
import stat
import tarfile
import time
import zipfile

import pytest

from flower_core.errors import FlowerError
from flower_core.intake import download
from flower_core.intake.archive import MAX_BYTES, declared_size, extract_archive, extract_tar, extract_zip
from tests.archives import write_archive


def _zip(members: dict[str, bytes], links: tuple[str, ...] = ()) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        for name in links:
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, "/etc/passwd")
    return buffer.getvalue()


CLASSES = {"daisy/a.jpg": b"x" * 10, "rose/b.jpg": b"y" * 10}


def test_extracts_class_folders_into_a_new_folder(tmp_path):
    root = extract_zip(io.BytesIO(_zip(CLASSES)), tmp_path / "up")
    assert root == tmp_path / "up"
    assert (root / "daisy" / "a.jpg").read_bytes() == b"x" * 10
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_single_wrapping_folder_becomes_the_root(tmp_path):
    wrapped = {f"flowers/{k}": v for k, v in CLASSES.items()} | {"__MACOSX/._x": b""}
    root = extract_zip(io.BytesIO(_zip(wrapped)), tmp_path / "up")
    assert root == tmp_path / "up" / "flowers"
    assert not (tmp_path / "up" / "__MACOSX").exists()


def test_only_photo_files_are_unpacked(tmp_path):
    # A checkpoint in an upload could be named by the Train form's weights path: never kept.
    members = CLASSES | {"daisy/weights.pth": b"pickle", "rose/run.sh": b"#!/bin/sh", "notes.txt": b"hi"}
    root = extract_zip(io.BytesIO(_zip(members)), tmp_path / "up")
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) == [
        "daisy/a.jpg",
        "rose/b.jpg",
    ]


def test_members_left_out_are_reported_with_the_other_skipped_entries(tmp_path):
    members = CLASSES | {"daisy/weights.pth": b"pickle", "__MACOSX/daisy/._a.jpg": b""}
    left_out = []
    extract_zip(io.BytesIO(_zip(members)), tmp_path / "up", on_skip=left_out.append)
    assert left_out == ["daisy/weights.pth", "__MACOSX/daisy/._a.jpg"]


@pytest.mark.parametrize(
    "members, links, reason",
    [
        ({"/etc/evil.jpg": b"x"}, (), "absolute path"),
        ({"daisy/../../evil.jpg": b"x"}, (), "'..'"),
        ({"C:/evil.jpg": b"x"}, (), "absolute path"),
        (CLASSES, ("daisy/link.jpg",), "link"),
        ({}, (), "empty"),
    ],
)
def test_unsafe_archives_are_refused_and_leave_nothing(tmp_path, members, links, reason):
    with pytest.raises(FlowerError, match=reason):
        extract_zip(io.BytesIO(_zip(members, links)), tmp_path / "up")
    assert list(tmp_path.iterdir()) == []


def test_file_count_and_size_limits(tmp_path):
    with pytest.raises(FlowerError, match="more than 1 files"):
        extract_zip(io.BytesIO(_zip(CLASSES)), tmp_path / "a", max_files=1)
    with pytest.raises(FlowerError, match="unpacks to more than"):
        extract_zip(io.BytesIO(_zip(CLASSES)), tmp_path / "b", max_bytes=15)
    assert list(tmp_path.iterdir()) == []


def test_existing_folder_and_bad_zip_are_one_line_errors(tmp_path):
    (tmp_path / "up").mkdir()
    with pytest.raises(FlowerError, match="already exists"):
        extract_zip(io.BytesIO(_zip(CLASSES)), tmp_path / "up")
    with pytest.raises(FlowerError, match="not a valid .zip"):
        extract_zip(io.BytesIO(b"not a zip"), tmp_path / "new")


def test_tar_extraction_and_link_refusal(tmp_path):
    write_archive(
        tmp_path / "ok.tgz",
        {f"flower_photos/{k}": v for k, v in CLASSES.items()} | {"flower_photos/LICENSE.txt": b"cc"},
    )
    assert extract_tar(tmp_path / "ok.tgz", tmp_path / "ok") == tmp_path / "ok" / "flower_photos"
    write_archive(tmp_path / "bad.tgz", CLASSES, symlink="daisy/evil.jpg")
    with pytest.raises(FlowerError, match="link"):
        extract_tar(tmp_path / "bad.tgz", tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def _tar(members: dict[str, bytes], *, compress: str = "", links: dict[str, tuple[bytes, str]] | None = None):
    """An in-memory tar of `members`, plus `links` as name -> (tar type, target)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=f"w:{compress}") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for name, (kind, target) in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, target
            archive.addfile(info)
    buffer.seek(0)
    return buffer


@pytest.mark.parametrize("compress", ["", "gz"])
def test_a_tar_upload_unpacks_like_a_zip(tmp_path, compress):
    members = {f"flowers/{k}": v for k, v in CLASSES.items()} | {"flowers/daisy/weights.pth": b"pickle"}
    left_out = []
    root = extract_archive(_tar(members, compress=compress), tmp_path / "up", on_skip=left_out.append)
    assert root == tmp_path / "up" / "flowers"
    assert (root / "rose" / "b.jpg").read_bytes() == b"y" * 10
    assert left_out == ["flowers/daisy/weights.pth"]


@pytest.mark.parametrize(
    "members, links, reason",
    [
        ({"/etc/evil.jpg": b"x"}, {}, "absolute path"),
        ({"daisy/../../evil.jpg": b"x"}, {}, "'..'"),
        (CLASSES, {"daisy/link.jpg": (tarfile.SYMTYPE, "/etc/passwd")}, "link"),
        (CLASSES, {"daisy/hard.jpg": (tarfile.LNKTYPE, "/etc/passwd")}, "link"),
        (CLASSES, {"daisy/fifo.jpg": (tarfile.FIFOTYPE, "")}, "special file"),
        ({}, {}, "empty"),
    ],
)
def test_unsafe_tars_are_refused_and_leave_nothing(tmp_path, members, links, reason):
    with pytest.raises(FlowerError, match=reason):
        extract_archive(_tar(members, compress="gz", links=links), tmp_path / "up")
    assert list(tmp_path.iterdir()) == []


def _tar_bomb(declared: int) -> io.BytesIO:
    """A .tar.gz whose first member's header declares `declared` bytes, then a class of photos:
    the member's data is left out, as if it were gigabytes of zeros compressed to nothing."""
    info = tarfile.TarInfo("daisy/huge.jpg")
    info.size = declared
    return io.BytesIO(gzip.compress(info.tobuf() + b"\0" * 1024))


def test_a_tar_bomb_is_refused_at_its_first_oversized_header(tmp_path):
    # Read lazily, the bomb is refused for its size before its data would be decompressed.
    with pytest.raises(FlowerError, match="unpacks to more than"):
        extract_archive(_tar_bomb(3 * 1024**3), tmp_path / "up")
    assert declared_size(_tar_bomb(3 * 1024**3)) > MAX_BYTES
    with pytest.raises(FlowerError, match="more than 1 files"):
        extract_archive(_tar(CLASSES, compress="gz"), tmp_path / "a", max_files=1)
    assert list(tmp_path.iterdir()) == []


def test_a_tar_whose_data_runs_short_is_one_line(tmp_path):
    truncated = _tar(CLASSES, compress="gz").getvalue()[:-30]
    with pytest.raises(FlowerError, match="not a valid tar archive") as caught:
        extract_archive(io.BytesIO(truncated), tmp_path / "up")
    assert "\n" not in str(caught.value)
    with pytest.raises(FlowerError, match=r"not a valid \.zip, \.tar, \.tar\.gz or \.tgz file"):
        extract_archive(io.BytesIO(b"neither a zip nor a tar"), tmp_path / "new")
    assert list(tmp_path.iterdir()) == []


def test_offline_download_says_why(tmp_path, monkeypatch):
    monkeypatch.setattr(download, "is_online", lambda url=None: False)
    with pytest.raises(FlowerError, match=r"no internet connection.*uploads take .*\.tgz") as caught:
        download.download_flower_photos(tmp_path / "fp")
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "fp").exists()


@pytest.fixture
def silent_port():
    """A local port that never answers: its listen queue is full, so new connections hang."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    waiting = [socket.socket() for _ in range(3)]
    for client in waiting:
        client.setblocking(False)
        client.connect_ex(("127.0.0.1", port))
    time.sleep(0.05)
    yield port
    for sock in (*waiting, server):
        sock.close()


def test_is_online_is_quick_for_an_unreachable_host(silent_port):
    """A host that never answers costs `timeout` seconds, not the OS's minutes of retries."""
    started = time.monotonic()
    assert download.is_online(f"http://127.0.0.1:{silent_port}/", timeout=0.5) is False
    elapsed = time.monotonic() - started
    assert 0.4 <= elapsed < 1.0, f"{elapsed:.2f} s"
    started = time.monotonic()
    assert download.is_online("http://127.0.0.1:9/", timeout=0.5) is False  # refused at once
    assert time.monotonic() - started < 0.5


def test_download_streams_with_progress_and_extracts(tmp_path, monkeypatch):
    write_archive(tmp_path / "fp.tgz", {f"flower_photos/{k}": v for k, v in CLASSES.items()})
    monkeypatch.setattr(download, "is_online", lambda url=None: True)
    seen = []
    root = download.download_flower_photos(
        tmp_path / "data" / "fp",
        url=(tmp_path / "fp.tgz").as_uri(),
        progress=lambda d, t: seen.append(d),
    )
    assert root.name == "flower_photos" and (root / "rose" / "b.jpg").is_file()
    assert seen and seen[-1] == (tmp_path / "fp.tgz").stat().st_size
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["fp"]
