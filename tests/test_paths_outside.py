"""With FLOWER_ALLOWED_ROOTS set, a path outside the roots tells nothing about what lies there:
every way a path comes in (dataset folder, its cache stamp, a weights file typed into the Train
form) gets one identical refusal whether the outside path exists, is missing, is unreadable, is
a /proc entry or is reached by a link, and nothing outside is stat-ed, listed or opened first."""

import getpass
import os
import threading
from pathlib import Path

import pytest

from flower_core.data.dataset import folder_stamp, list_candidates
from flower_core.errors import FlowerError
from flower_core.models import backbones
from flower_core.paths import check_allowed_path, outside_message

OUTSIDE_KINDS = [
    "existing_file",
    "existing_folder",
    "missing",
    "unreadable_folder",
    "etc_shadow",
    "etc_shadowx",
    "proc_1_cwd",
    "proc_1_exe",
    "proc_missing_pid",
    "proc_self_cwd",
    "proc_self_exe",
    "proc_self_fd",
    "link_to_folder",
    "link_to_missing",
    "link_to_proc",
    "dotdot_through_link",
]


@pytest.fixture
def roots(tmp_path, monkeypatch):
    """An allowed folder holding a two-class dataset, and a `secret` folder beside it."""
    from PIL import Image

    allowed = tmp_path / "allowed"
    for name in ("daisy", "rose"):
        (allowed / "flowers" / name).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(allowed / "flowers" / name / "0.png")
    secret = tmp_path / "secret"
    (secret / "locked").mkdir(parents=True)
    (secret / "weights.h5").write_bytes(b"not weights")
    (secret / "locked").chmod(0)
    monkeypatch.setenv("FLOWER_ALLOWED_ROOTS", str(allowed))
    yield allowed, secret
    (secret / "locked").chmod(0o700)


def _outside(kind: str, allowed: Path, secret: Path) -> str:
    links = {
        "link_to_folder": secret,
        "link_to_missing": secret / "nothing",
        "link_to_proc": Path("/proc/1/cwd"),
        "dotdot_through_link": secret / "locked",
    }
    if kind in links:
        (allowed / kind).symlink_to(links[kind])
        return str(allowed / kind / ".." / "x") if kind == "dotdot_through_link" else str(allowed / kind)
    return {
        "existing_file": str(secret / "weights.h5"),
        "existing_folder": str(secret),
        "missing": str(secret / "nothing"),
        "unreadable_folder": str(secret / "locked" / "x"),
        "etc_shadow": "/etc/shadow",
        "etc_shadowx": "/etc/shadowx",
        "proc_1_cwd": "/proc/1/cwd",
        "proc_1_exe": "/proc/1/exe",
        "proc_missing_pid": "/proc/999999/cwd",
        "proc_self_cwd": "/proc/self/cwd",
        "proc_self_exe": "/proc/self/exe",
        "proc_self_fd": "/proc/self/fd/0",
    }[kind]


@pytest.fixture
def touched(monkeypatch):
    """Every path the code under test stats, lists, reads a link of or opens (recorded, then
    passed on to the real call). Only this thread's calls: the code under test runs here, and
    threads an earlier test left running (in the full suite) stat their own files."""
    seen = []
    test_thread = threading.get_ident()

    def spy(name):
        real = getattr(os, name)

        def call(path, *args, **kwargs):
            if threading.get_ident() == test_thread:
                seen.append(os.fspath(path) if isinstance(path, (str, os.PathLike)) else path)
            return real(path, *args, **kwargs)

        monkeypatch.setattr(os, name, call)

    for name in ("stat", "lstat", "readlink", "scandir", "listdir", "open"):
        spy(name)
    return seen


def _refusal(call, path: str) -> str:
    with pytest.raises(FlowerError) as caught:
        call(path)
    return str(caught.value)


@pytest.mark.parametrize("kind", OUTSIDE_KINDS)
def test_every_outside_path_gets_the_same_refusal_and_nothing_outside_is_touched(roots, touched, kind):
    allowed, secret = roots
    path = _outside(kind, allowed, secret)
    touched.clear()
    messages = {
        "check": _refusal(check_allowed_path, path),
        "stamp": _refusal(folder_stamp, path),
        "dataset": _refusal(list_candidates, path),
    }
    weights = _refusal(lambda p: backbones.ensure_weights("mobilenet", p, 64), path)
    assert set(messages.values()) == {outside_message(path)}
    assert weights == outside_message(path, "weights file")
    assert "resolves to" not in weights and "\n" not in weights
    above = [str(p) for p in allowed.parents]
    outside = [
        p
        for p in touched
        if not (str(p) == str(allowed) or str(p).startswith(f"{allowed}/") or str(p) in above)
    ]
    assert outside == []


def test_refusals_differ_only_by_the_path_typed(roots):
    allowed, secret = roots
    shapes = {
        _refusal(check_allowed_path, p).replace(p, "PATH")
        for p in (_outside(kind, allowed, secret) for kind in OUTSIDE_KINDS)
    }
    assert len(shapes) == 1


@pytest.mark.parametrize("roots_set", [True, False])
def test_a_nul_byte_in_a_path_is_a_one_line_refusal(roots, monkeypatch, roots_set):
    allowed, _ = roots
    if not roots_set:
        monkeypatch.delenv("FLOWER_ALLOWED_ROOTS")
    path = f"{allowed}/flowers\x00/x"
    for call in (check_allowed_path, folder_stamp, list_candidates):
        message = _refusal(call, path)
        assert (
            message == outside_message(path) if roots_set else "null byte" in message and "\n" not in message
        )


def test_paths_inside_still_resolve_through_links_and_dotdot(roots):
    allowed, _ = roots
    (allowed / "alias").symlink_to(allowed / "flowers")
    assert check_allowed_path(allowed / "alias" / "daisy" / "..") == (allowed / "flowers").resolve()
    assert folder_stamp(allowed / "alias") == folder_stamp(allowed / "flowers") != "missing"
    assert folder_stamp(allowed / "none") == "missing"


def test_a_root_written_as_a_link_allows_paths_written_through_it(tmp_path, monkeypatch):
    real = tmp_path / "real"
    (real / "flowers").mkdir(parents=True)
    (tmp_path / "alias").symlink_to(real)
    monkeypatch.setenv("FLOWER_ALLOWED_ROOTS", str(tmp_path / "alias"))
    assert check_allowed_path(tmp_path / "alias" / "flowers") == real.resolve() / "flowers"
    assert check_allowed_path(real / "flowers") == real.resolve() / "flowers"


@pytest.mark.parametrize("roots_set", [True, False])
def test_unknown_user_home_is_a_one_line_error(roots, monkeypatch, roots_set):
    if not roots_set:
        monkeypatch.delenv("FLOWER_ALLOWED_ROOTS")
    for call in (check_allowed_path, folder_stamp, list_candidates):
        message = _refusal(call, "~nosuchuser/flowers")
        assert "\n" not in message and "~nosuchuser" in message


def test_with_roots_set_a_home_path_tells_no_account_name_apart(roots):
    _, secret = roots
    paths = ["~nosuchuser/x", "~root/x", f"~{getpass.getuser()}/x", "~/x", str(secret / "x")]
    for call in (check_allowed_path, folder_stamp, list_candidates):
        assert {_refusal(call, p).replace(p, "PATH") for p in paths} == {outside_message("PATH")}
    weights = {
        _refusal(lambda q: backbones.ensure_weights("mobilenet", q, 64), p).replace(p, "PATH") for p in paths
    }
    assert weights == {outside_message("PATH", "weights file")}


def test_train_form_weights_field_gives_the_same_refusal_for_existing_and_missing_files(roots):
    from ui.live import start

    allowed, secret = roots
    data = allowed / "flowers"
    for path in ("/etc/shadow", "/etc/shadowx", "/proc/1/exe", str(secret / "weights.h5")):
        values = {"backbone": "mobilenet", "weights": path, "image_size": 64}
        message = _refusal(lambda _, v=values: start(v, "base", data), path)
        assert message == outside_message(path, "weights file")


@pytest.mark.slow
def test_the_dataset_chooser_shows_one_line_for_outside_and_unknown_user_paths(roots, tmp_path, monkeypatch):
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    allowed, _ = roots
    monkeypatch.setenv("FLOWER_DATA", str(allowed / "flowers"))
    monkeypatch.setenv("FLOWER_DATA_HOME", str(allowed))
    monkeypatch.setattr("ui.home.is_online", lambda: False)
    st.cache_data.clear()
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=120).run()
    shown = {}
    for path in ("/proc/self/cwd", "/proc/1/cwd", "/proc/999999/cwd", "~nosuchuser/flowers"):
        at.text_input(key="home_path").set_value(path)
        at.button(key="home_use_path").click().run()
        assert not at.exception, [e.message for e in at.exception]
        [error] = [e.value for e in at.error]
        assert "\n" not in error and "resolves to" not in error
        shown[path] = error.replace(path, "PATH")
    assert len(set(shown.values())) == 1
