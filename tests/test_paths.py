"""FLOWER_ALLOWED_ROOTS: a dataset path typed into the app cannot reach outside the allowed folders,
whether by symlink, by "..", or by a sibling whose name merely starts like an allowed one."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flower_core.data.dataset import list_candidates, scan_dataset
from flower_core.errors import FlowerError
from flower_core.paths import allowed_roots, check_allowed_path

ROOT = Path(__file__).resolve().parents[1]


def _dataset(folder: Path, classes=("daisy", "rose")) -> Path:
    """A two-class folder of tiny real photos."""
    from PIL import Image

    for name in classes:
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(2):
            Image.new("RGB", (8, 8), (40 * i, 90, 160)).save(folder / name / f"{i}.png")
    return folder


@pytest.fixture
def tree(tmp_path, monkeypatch):
    """`data/flowers` (allowed), with `data/flowers-evil` beside it and `secret` outside."""
    allowed = _dataset(tmp_path / "data" / "flowers")
    _dataset(tmp_path / "data" / "flowers-evil")
    _dataset(tmp_path / "secret")
    monkeypatch.setenv("FLOWER_ALLOWED_ROOTS", str(allowed))
    return tmp_path


def test_unset_variable_allows_any_folder_and_resolves_it(tmp_path, monkeypatch):
    monkeypatch.delenv("FLOWER_ALLOWED_ROOTS", raising=False)
    assert allowed_roots() is None
    assert check_allowed_path(tmp_path / "a" / ".." / "b") == (tmp_path / "b").resolve()
    monkeypatch.setenv("FLOWER_ALLOWED_ROOTS", "")
    assert allowed_roots() is None


def test_allowed_nested_path_is_returned_resolved(tree):
    nested = tree / "data" / "flowers" / "daisy" / ".." / "rose"
    assert check_allowed_path(nested) == (tree / "data" / "flowers" / "rose").resolve()
    assert check_allowed_path(tree / "data" / "flowers") == (tree / "data" / "flowers").resolve()
    classes, _ = list_candidates(tree / "data" / "flowers")
    assert classes == ["daisy", "rose"]


@pytest.mark.parametrize("escape", ["dotdot", "symlink", "sibling_prefix", "outside", "root_itself"])
def test_paths_outside_the_allowed_roots_are_refused_in_one_line(tree, escape):
    flowers = tree / "data" / "flowers"
    if escape == "symlink":
        (flowers / "link").symlink_to(tree / "secret", target_is_directory=True)
    path = {
        "dotdot": flowers / ".." / ".." / "secret",
        "symlink": flowers / "link",
        "sibling_prefix": tree / "data" / "flowers-evil",
        "outside": tree / "secret",
        "root_itself": Path("/"),
    }[escape]
    with pytest.raises(FlowerError) as caught:
        check_allowed_path(path)
    message = str(caught.value)
    assert "\n" not in message and str(flowers.resolve()) in message and "Received:" in message
    with pytest.raises(FlowerError, match="outside the allowed folders"):
        list_candidates(path)


def test_links_inside_an_allowed_dataset_cannot_pull_in_outside_files(tree):
    flowers = tree / "data" / "flowers"
    (flowers / "tulip").symlink_to(tree / "secret" / "daisy", target_is_directory=True)
    (flowers / "rose" / "stolen.png").symlink_to(tree / "secret" / "rose" / "0.png")
    classes, candidates = list_candidates(flowers)
    assert classes == ["daisy", "rose"]
    assert candidates["rose"] == ["rose/0.png", "rose/1.png"]
    assert len(scan_dataset(flowers).files) == 4


def test_several_roots_and_odd_inputs(tree, monkeypatch):
    monkeypatch.setenv(
        "FLOWER_ALLOWED_ROOTS", os.pathsep.join([str(tree / "data" / "flowers"), "", str(tree / "secret")])
    )
    assert len(allowed_roots()) == 2
    assert check_allowed_path(tree / "secret" / "daisy").name == "daisy"
    loop = tree / "data" / "flowers" / "loop"
    loop.symlink_to(loop)
    for bad in (loop, "data/\0flowers", tree / "data" / "flowers-evil"):
        with pytest.raises(FlowerError):
            check_allowed_path(bad)


def test_every_entry_point_is_protected(tree, tmp_path):
    """The CLI (eda and train) and the app's background jobs all refuse an escaping path."""
    from flower_core.config import make_config
    from flower_core.training.jobs import submit

    escape = str(tree / "data" / "flowers" / ".." / ".." / "secret")
    config = make_config("base", backbone="mobilenet", weights="none", image_size=32, epochs=1)
    with pytest.raises(FlowerError, match="outside the allowed folders"):
        submit(config, escape, tmp_path / "runs")
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())
    for command in (
        ["eda", "--data", escape, "--json"],
        ["train", "--data", escape, "--runs", str(tmp_path / "runs"), "--epochs", "1"],
    ):
        result = subprocess.run(
            [sys.executable, "-m", "flower_core", *command],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            env=dict(os.environ),
        )
        assert result.returncode == 2, result.stderr
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith("error: dataset folder is outside the allowed folders")
    eda = subprocess.run(
        [sys.executable, "-m", "flower_core", "eda", "--data", str(tree / "data" / "flowers"), "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ),
    )
    assert eda.returncode == 0, eda.stderr
    assert json.loads(eda.stdout.strip().splitlines()[-1])


def test_a_weights_file_outside_the_allowed_roots_is_refused_before_a_run(tree, tmp_path):
    """A weights path typed into the Train form cannot probe or read files outside."""
    from flower_core.config import make_config
    from flower_core.models.backbones import ensure_weights
    from flower_core.training.jobs import submit

    outside = tree / "secret" / "weights.h5"
    outside.write_bytes(b"not really weights")
    with pytest.raises(FlowerError, match="^weights file is outside the allowed folders"):
        ensure_weights("mobilenet", str(outside), 32)
    config = make_config("base", backbone="mobilenet", weights=str(outside), image_size=32, epochs=1)
    with pytest.raises(FlowerError, match="weights file is outside"):
        submit(config, tree / "data" / "flowers", tmp_path / "runs")
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())
    with pytest.raises(FlowerError, match="^weights file not found"):
        ensure_weights("mobilenet", str(tree / "data" / "flowers" / "missing.h5"), 32)


def test_evaluating_a_run_on_a_folder_outside_the_allowed_roots_is_refused(tree, monkeypatch):
    from flower_core.evaluation.evaluate import folder_files

    with pytest.raises(FlowerError, match="outside the allowed folders"):
        folder_files(tree / "data" / "flowers" / ".." / ".." / "secret", ["daisy", "rose"])
    (tree / "data" / "flowers" / "rose" / "stolen.png").symlink_to(tree / "secret" / "rose" / "0.png")
    files, ignored = folder_files(tree / "data" / "flowers", ["rose", "tulip"])
    assert files == ["rose/0.png", "rose/1.png"] and ignored == ["daisy"]
