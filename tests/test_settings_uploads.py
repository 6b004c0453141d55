"""Nothing lost, nothing doubled: the app's settings file is replaced whole (a full disk keeps the
old one), each upload unpacks into its own folder even when three people upload the same name
at once, a refused upload leaves nothing behind, and all uploads together stay under a quota."""

import errno
import io
import os
import signal
import subprocess
import sys
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from flower_core.errors import FlowerError
from flower_core.intake.uploads import (
    QUOTA_LOCK,
    UPLOAD_QUOTA_ENV,
    unpack_upload,
    upload_quota_mb,
    uploaded_bytes,
)
from flower_core.store.settings import SETTINGS_FILE, save_data_root, saved_data_root

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
MB = 1024**2
PHOTO = {"daisy/a.png": "daisy/daisy_0000.jpg", "rose/b.png": "rose/rose_0000.jpg"}


def _zip(members: dict[str, bytes]) -> io.BytesIO:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    buffer.seek(0)
    return buffer


def _entries(home: Path) -> list[str]:
    """What the uploads folder shows, its quota lock aside."""
    return sorted(p.name for p in (home / "uploads").iterdir() if p.name != QUOTA_LOCK)


def _dataset_zip(synthetic: Path) -> io.BytesIO:
    return _zip({f"flowers/{name}": (synthetic / source).read_bytes() for name, source in PHOTO.items()})


def _full_disk_for(monkeypatch, name: str) -> None:
    real = os.fsync

    def fsync(fd):
        if name in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def test_settings_file_is_replaced_whole_and_a_full_disk_keeps_the_old_one(tmp_path, monkeypatch):
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir(), second.mkdir()
    assert saved_data_root() is None
    assert save_data_root(first) == first.resolve() and saved_data_root() == first.resolve()
    settings = Path(os.environ["FLOWER_RUNS"]) / SETTINGS_FILE
    before = settings.read_bytes()
    _full_disk_for(monkeypatch, SETTINGS_FILE)
    with pytest.raises(FlowerError) as caught:
        save_data_root(second)
    assert str(caught.value).startswith("no space left on device while writing")
    assert "\n" not in str(caught.value)
    assert settings.read_bytes() == before and saved_data_root() == first.resolve()
    assert sorted(p.name for p in settings.parent.iterdir()) == [SETTINGS_FILE]


@pytest.mark.parametrize("content", [b"", b"{", b"[1]", b'{"data_root": 5}', b'{"data_root": "/nope"}'])
def test_a_damaged_or_stale_settings_file_is_ignored(content):
    settings = Path(os.environ["FLOWER_RUNS"]) / SETTINGS_FILE
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_bytes(content)
    assert saved_data_root() is None


def test_a_saved_dataset_now_outside_the_allowed_folders_is_not_used(tmp_path, monkeypatch):
    (tmp_path / "old").mkdir()
    save_data_root(tmp_path / "old")
    monkeypatch.setenv("FLOWER_ALLOWED_ROOTS", str(tmp_path / "allowed"))
    assert saved_data_root() is None


@pytest.mark.slow
def test_choosing_a_dataset_on_a_full_disk_keeps_the_settings_and_says_why(
    synthetic_dataset, tmp_path, monkeypatch
):
    import streamlit as st

    monkeypatch.setenv("FLOWER_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setattr("ui.home.is_online", lambda: False)
    st.cache_data.clear()
    (tmp_path / "old").mkdir()
    save_data_root(tmp_path / "old")
    settings = Path(os.environ["FLOWER_RUNS"]) / SETTINGS_FILE
    before = settings.read_bytes()
    at = AppTest.from_file(APP, default_timeout=120).run()
    _full_disk_for(monkeypatch, SETTINGS_FILE)
    at.text_input(key="home_path").set_value(str(synthetic_dataset))
    at.button(key="home_use_path").click().run()
    assert not at.exception, [e.message for e in at.exception]
    errors = " ".join(e.value for e in at.error)
    assert "no space left on device" in errors and "\n" not in errors
    assert settings.read_bytes() == before


def test_three_people_uploading_the_same_name_at_once_all_succeed(synthetic_dataset, tmp_path):
    roots, failures = [], []
    barrier = threading.Barrier(3)

    def upload():
        barrier.wait()
        try:
            roots.append(unpack_upload(_dataset_zip(synthetic_dataset), "my flowers", tmp_path))
        except Exception as error:  # noqa: BLE001 - the test reports any failure
            failures.append(error)

    threads = [threading.Thread(target=upload) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert sorted(r.parent.name for r in roots) == ["my-flowers", "my-flowers-2", "my-flowers-3"]
    assert all(sorted(p.name for p in r.iterdir()) == ["daisy", "rose"] for r in roots)


REFUSED = {
    "one_class": (
        {"flowers/daisy/a.png": "daisy/daisy_0000.jpg", "flowers/daisy/b.png": "daisy/daisy_0001.jpg"},
        "at least two class folders",
    ),
    "only_nested_zips": ({"a.zip": None, "b/c.zip": None}, "at least two class folders"),
    "unsafe": ({"../evil.png": "daisy/daisy_0000.jpg"}, "'..'"),
    "not_a_zip": (None, "not a valid .zip"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_a_refused_upload_leaves_nothing_behind(synthetic_dataset, tmp_path, case):
    members, reason = REFUSED[case]
    if members is None:
        source = io.BytesIO(b"not a zip")
    else:
        source = _zip(
            {
                name: (synthetic_dataset / photo).read_bytes() if photo else _zip({}).getvalue()
                for name, photo in members.items()
            }
        )
    with pytest.raises(FlowerError, match=reason):
        unpack_upload(source, "refused", tmp_path)
    assert _entries(tmp_path) == []


def test_uploads_together_stay_under_the_quota(synthetic_dataset, tmp_path, monkeypatch):
    first = unpack_upload(_dataset_zip(synthetic_dataset), "first", tmp_path)
    used = sum(p.stat().st_size for p in first.rglob("*") if p.is_file())
    monkeypatch.setenv(UPLOAD_QUOTA_ENV, str(1.5 * used / 1024**2))
    with pytest.raises(FlowerError, match=rf"over the quota of .* \({UPLOAD_QUOTA_ENV}\)") as caught:
        unpack_upload(_dataset_zip(synthetic_dataset), "second", tmp_path)
    assert "\n" not in str(caught.value)
    assert _entries(tmp_path) == ["first"]
    monkeypatch.setenv(UPLOAD_QUOTA_ENV, str(3 * used / 1024**2))
    assert unpack_upload(_dataset_zip(synthetic_dataset), "second", tmp_path).is_dir()


def _bigger_zip(synthetic: Path) -> io.BytesIO:
    """Ten photos in two classes, so one photo is a small part of the upload."""
    return _zip(
        {
            f"flowers/{name}/{i}.png": (synthetic / name / f"{name}_{i:04d}.jpg").read_bytes()
            for name in ("daisy", "rose")
            for i in range(5)
        }
    )


def _unpacked_size(source: io.BytesIO) -> int:
    with zipfile.ZipFile(source) as archive:
        size = sum(info.file_size for info in archive.infolist())
    source.seek(0)
    return size


def test_uploads_at_once_stay_under_the_quota_together(synthetic_dataset, tmp_path, monkeypatch):
    size = _unpacked_size(_bigger_zip(synthetic_dataset))
    quota = 2.5 * size
    monkeypatch.setenv(UPLOAD_QUOTA_ENV, str(quota / MB))
    # An upload that passed the quota check waits after its first photo until the three have each
    # passed it or been refused: every check sees the others started and none finished.
    turn = threading.Condition()
    started, refused, roots = [], [], []

    def wait_for_the_others(done, _total):
        with turn:
            if done == 1:
                started.append(done)
                turn.notify_all()
            assert turn.wait_for(lambda: len(started) + len(refused) == 3, timeout=120)

    def upload(name):
        try:
            roots.append(unpack_upload(_bigger_zip(synthetic_dataset), name, tmp_path, wait_for_the_others))
        except FlowerError as error:
            with turn:
                refused.append(str(error))
                turn.notify_all()

    threads = [threading.Thread(target=upload, args=(f"upload {i}",)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(roots) == 2 and len(refused) == 1 and "over the quota" in refused[0]
    assert uploaded_bytes(tmp_path / "uploads") <= quota
    assert sorted(_entries(tmp_path)) == sorted(r.parent.name for r in roots)


KILLED_MID_UPLOAD = """
import io, os, signal, sys
from flower_core.intake.uploads import unpack_upload
source = io.BytesIO(sys.stdin.buffer.read())
unpack_upload(source, "killed", sys.argv[1], lambda done, total: os.kill(os.getpid(), signal.SIGKILL))
"""


def test_an_upload_killed_while_unpacking_gives_its_room_back(synthetic_dataset, tmp_path, monkeypatch):
    source = _bigger_zip(synthetic_dataset)
    monkeypatch.setenv(UPLOAD_QUOTA_ENV, str(1.5 * _unpacked_size(source) / MB))
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_MID_UPLOAD, str(tmp_path)], input=source.getvalue(), cwd=ROOT
    )
    assert killed.returncode == -signal.SIGKILL
    root = unpack_upload(_bigger_zip(synthetic_dataset), "after", tmp_path)
    assert _entries(tmp_path) == [root.parent.name]


@pytest.mark.parametrize("value", ["lots", "0", "-5", "inf", "nan"])
def test_a_bad_quota_setting_is_one_line(monkeypatch, value):
    monkeypatch.setenv(UPLOAD_QUOTA_ENV, value)
    with pytest.raises(FlowerError, match=f"{UPLOAD_QUOTA_ENV} must be a positive number of MB"):
        upload_quota_mb()


def _tgz(members: dict[str, bytes]) -> io.BytesIO:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    return buffer


def test_a_tgz_upload_is_unpacked_under_the_same_quota(synthetic_dataset, tmp_path, monkeypatch):
    photos = {f"flowers/{name}": (synthetic_dataset / source).read_bytes() for name, source in PHOTO.items()}
    root = unpack_upload(_tgz(photos), "flower_photos", tmp_path)
    assert sorted(p.name for p in root.iterdir()) == ["daisy", "rose"]
    # A compressed bomb: megabytes of zeros in a few kilobytes, counted at its declared size.
    monkeypatch.setenv(UPLOAD_QUOTA_ENV, "1")
    bomb = _tgz(photos | {"flowers/daisy/zeros.jpg": bytes(4 * MB)})
    assert len(bomb.getvalue()) < 64 * 1024
    with pytest.raises(FlowerError, match="over the quota"):
        unpack_upload(bomb, "bomb", tmp_path)
    assert _entries(tmp_path) == ["flower_photos"]
