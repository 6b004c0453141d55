"""Fixing a dataset with nothing lost (`flower_core.data.dataset.fixes` and `python -m flower_core fix`):
moves, excludes, keeps and class changes undo back to the byte-identical dataset; fixes at once
from threads and processes lose nothing; paths outside the dataset are one-line refusals."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from flower_core.data import fixes
from flower_core.data.dataset import scan_dataset
from flower_core.errors import FlowerError

BOOKKEEPING = {fixes.JOURNAL_FILE, fixes.LOCK_FILE}


@pytest.fixture
def data(synthetic_dataset, tmp_path) -> Path:
    root = tmp_path / "flowers"
    shutil.copytree(synthetic_dataset, root)
    return root


def hashes(root: Path) -> dict[str, str]:
    """Every file of the dataset (hidden folders included) by its SHA-256, but the journal's own."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file() and p.name not in BOOKKEEPING
    }


def photos(root: Path, name: str) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in (root / name).iterdir())


def undo_all(root: Path) -> int:
    undone = 0
    while True:
        try:
            fixes.undo(root)
        except FlowerError as error:
            assert "nothing to undo" in str(error)
            return undone
        undone += 1


def test_moves_excludes_and_class_changes_undo_to_the_byte_identical_dataset(data):
    before = hashes(data)
    daisy, rose = photos(data, "daisy"), photos(data, "rose")
    moved = fixes.move_photo(data, daisy[0], "rose")
    assert moved["from"] == daisy[0] and moved["to"] == f"rose/{Path(daisy[0]).name}"
    excluded = fixes.exclude_photo(data, str(data / rose[0]))  # a path to the file works too
    fixes.keep_photo(data, rose[1])
    fixes.add_class(data, "lily")
    fixes.move_photo(data, daisy[1], "lily")
    fixes.rename_class(data, "lily", "lilies")
    fixes.remove_class(data, "tulip")
    # the same name moved twice into one class gets a free name, never overwriting
    shutil.copy(data / rose[2], data / "daisy" / Path(rose[2]).name)
    fixes.move_photo(data, f"daisy/{Path(rose[2]).name}", "rose")
    assert (data / "rose" / f"{Path(rose[2]).stem}-2.jpg").is_file()

    dataset = scan_dataset(data)
    assert dataset.class_names == ["daisy", "dandelion", "lilies", "rose", "sunflower"]
    assert rose[0] not in dataset.files and (data / excluded["to"]).is_file()
    assert excluded["to"].startswith(f"{fixes.EXCLUDED_DIR}/")
    assert fixes.reviewed(data) >= {rose[1], moved["to"]}

    assert undo_all(data) == 8
    os.remove(data / "daisy" / Path(rose[2]).name)  # the copy made by hand above, not a fix
    assert hashes(data) == before
    assert not (data / fixes.EXCLUDED_DIR).exists()
    entries = fixes.journal(data)
    assert len(entries) == 16 and all({"when", "action", "from", "to"} <= set(e) for e in entries)
    assert fixes.standing(entries) == []


def test_fixes_from_threads_at_once_lose_no_action_and_undo_each_once(data):
    before = hashes(data)
    daisy = photos(data, "daisy")[:12]
    barrier = threading.Barrier(len(daisy))

    def move(rel):
        barrier.wait()
        fixes.move_photo(data, rel, "rose")

    threads = [threading.Thread(target=move, args=(rel,)) for rel in daisy]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(fixes.standing(fixes.journal(data))) == len(daisy)
    assert not any((data / rel).exists() for rel in daisy)

    undo_barrier = threading.Barrier(len(daisy) + 2)
    failures = []

    def undo():
        undo_barrier.wait()
        try:
            fixes.undo(data)
        except FlowerError as error:
            failures.append(str(error))

    threads = [threading.Thread(target=undo) for _ in range(len(daisy) + 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(failures) == 2 and all("nothing to undo" in f for f in failures)
    assert hashes(data) == before


@pytest.mark.slow
def test_fixes_from_processes_at_once_lose_no_action(data):
    before = hashes(data)
    tulips = photos(data, "tulip")[:6]
    commands = [
        [sys.executable, "-m", "flower_core", "fix", "--data", str(data), "--exclude", rel, "--json"]
        for rel in tulips
    ]
    running = [
        subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in commands
    ]
    outputs = [process.communicate(timeout=120) for process in running]
    assert [p.returncode for p in running] == [0] * len(tulips), outputs
    done = sorted(json.loads(out.strip().splitlines()[-1])["done"]["from"] for out, _ in outputs)
    assert done == tulips
    assert len(fixes.standing(fixes.journal(data))) == len(tulips)
    undo = [sys.executable, "-m", "flower_core", "fix", "--data", str(data), "--undo"]
    running = [subprocess.Popen(undo, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in tulips]
    assert [p.wait(timeout=120) for p in running] == [0] * len(tulips)
    assert hashes(data) == before


@pytest.mark.parametrize(
    "photo",
    [
        "../outside.jpg",
        "/etc/passwd",
        "daisy",
        "daisy/missing.jpg",
        ".excluded/daisy/x.jpg",
        "daisy/../../x.jpg",
    ],
)
def test_a_photo_outside_the_class_folders_is_one_line_and_changes_nothing(data, photo):
    (data.parent / "outside.jpg").write_bytes(b"not touched")
    before = hashes(data)
    with pytest.raises(FlowerError, match="not a photo of the dataset's class folders") as error:
        fixes.exclude_photo(data, photo)
    assert "\n" not in str(error.value)
    assert hashes(data) == before and fixes.journal(data) == []
    assert (data.parent / "outside.jpg").read_bytes() == b"not touched"


def test_outside_the_allowed_roots_every_fix_gets_the_one_refusal(data, tmp_path, monkeypatch):
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    monkeypatch.setenv("FLOWER_ALLOWED_ROOTS", str(allowed))
    for fix in (lambda: fixes.exclude_photo(data, "daisy/x.jpg"), lambda: fixes.undo(data)):
        with pytest.raises(FlowerError, match="outside the allowed folders"):
            fix()
    monkeypatch.setenv("FLOWER_ALLOWED_ROOTS", str(data))
    with pytest.raises(FlowerError, match="outside the allowed folders"):
        fixes.exclude_photo(data, str(tmp_path / "elsewhere" / "x.jpg"))


@pytest.mark.parametrize("name", ["", ".hidden", "a/b", "..", "x" * 101])
def test_bad_class_names_are_refused(data, name):
    with pytest.raises(FlowerError, match="class name must be"):
        fixes.add_class(data, name)


def test_wrong_classes_and_undo_over_a_hand_made_change_are_refused(data):
    daisy = photos(data, "daisy")
    with pytest.raises(FlowerError, match="no class 'lily'.*choose one of: daisy"):
        fixes.move_photo(data, daisy[0], "lily")
    with pytest.raises(FlowerError, match="in daisy already"):
        fixes.move_photo(data, daisy[0], "daisy")
    with pytest.raises(FlowerError, match="exists already"):
        fixes.rename_class(data, "daisy", "rose")
    with pytest.raises(FlowerError, match="nothing to undo"):
        fixes.undo(data)
    moved = fixes.move_photo(data, daisy[0], "rose")
    os.rename(data / moved["to"], data / "tulip" / "by_hand.jpg")
    with pytest.raises(FlowerError, match="is no longer in"):
        fixes.undo(data)
    assert len(fixes.standing(fixes.journal(data))) == 1


def test_fix_command_moves_and_undoes_with_one_line_errors(data):
    daisy = photos(data, "daisy")

    def fix(*args):
        command = [sys.executable, "-m", "flower_core", "fix", "--data", str(data), *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=120)

    done = fix("--move", daisy[0], "--to", "rose", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["done"]["to"] == f"rose/{Path(daisy[0]).name}"
    refused = fix("--move", daisy[1])
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "need --to" in refused.stderr
    undone = fix("--undo")
    assert undone.returncode == 0 and "undone: move" in undone.stdout
    assert (data / daisy[0]).is_file()
