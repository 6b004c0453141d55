"""Planted group files: `groups --delete` and `--show` trust nothing a `group.json` says. A group
id is a plain name, every run it lists must lie inside the runs folder, and a malformed file is
one line (exit 2), with nothing deleted."""

import json
from pathlib import Path

import pytest

from flower_core.cli import main
from flower_core.groups.group import GROUP_FILE
from flower_core.store.runs import GROUPS_DIR


def _record(group_id: str, runs: list[str]) -> dict:
    return {
        "id": group_id,
        "kind": "study",
        "created": "2026-01-01T00:00:00+00:00",
        "data_root": "/nowhere",
        "info": {},
        "runs": runs,
    }


def _victim(folder: Path) -> Path:
    """A folder that looks like a finished run, so only a check on where it lies can spare it."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "precious.txt").write_text("keep me")
    return folder


def _plant(folder: Path, record) -> None:
    folder.mkdir(parents=True)
    (folder / GROUP_FILE).write_text(record if isinstance(record, str) else json.dumps(record))


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def test_a_group_id_that_walks_out_of_the_runs_folder_deletes_nothing(tmp_path, capsys):
    runs = tmp_path / "runs"
    (runs / GROUPS_DIR).mkdir(parents=True)
    victim = _victim(tmp_path / "victim")
    _plant(tmp_path / "decoy", _record("decoy", ["../victim"]))
    assert main(["groups", "--runs", str(runs), "--delete", "../../decoy"]) == 2
    assert "../../decoy" in _one_line_error(capsys)
    assert (victim / "precious.txt").read_text() == "keep me"
    assert (tmp_path / "decoy" / GROUP_FILE).is_file()


def _planted_inside(tmp_path: Path, how: str) -> Path:
    """A group inside the runs folder whose file leads outside it, in one of several ways."""
    runs = tmp_path / "runs"
    victim = _victim(tmp_path / "victim")
    if how == "dotdot_run":
        _plant(runs / GROUPS_DIR / "decoy", _record("decoy", ["../victim"]))
    elif how == "absolute_run":
        _plant(runs / GROUPS_DIR / "decoy", _record("decoy", [str(victim)]))
    elif how == "linked_run":
        _plant(runs / GROUPS_DIR / "decoy", _record("decoy", ["linked"]))
        (runs / "linked").symlink_to(victim)
    else:  # the groups folder itself is a link to a folder outside
        runs.mkdir()
        outside = tmp_path / "victim" / "groups"
        _plant(outside / "decoy", _record("decoy", []))
        (runs / GROUPS_DIR).symlink_to(outside)
    return runs


@pytest.mark.parametrize("how", ["dotdot_run", "absolute_run", "linked_run", "linked_groups_folder"])
def test_a_planted_group_file_cannot_delete_outside_the_runs_folder(tmp_path, capsys, how):
    runs = _planted_inside(tmp_path, how)
    before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "victim").rglob("*"))
    assert main(["groups", "--runs", str(runs), "--delete", "decoy"]) == 2
    assert "outside" in _one_line_error(capsys)
    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "victim").rglob("*")) == before
    assert (tmp_path / "victim" / "precious.txt").read_text() == "keep me"
    assert (runs / GROUPS_DIR / "decoy" / GROUP_FILE).is_file()


MALFORMED = {
    "not_json": "{not json",
    "not_an_object": "[1, 2]",
    "missing_keys": {"id": "g"},
    "runs_not_a_list": {**_record("g", []), "runs": "abc"},
    "a_run_not_a_name": {**_record("g", []), "runs": [7]},
    "kind_not_a_string": {**_record("g", []), "kind": 3},
    "info_not_an_object": {**_record("g", []), "info": []},
    "sweep_without_grid": {**_record("g", []), "kind": "sweep"},
    "id_of_another_folder": _record("other", []),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_group_file_is_one_line_and_hidden_from_the_list(tmp_path, capsys, case):
    runs = tmp_path / "runs"
    _plant(runs / GROUPS_DIR / "g", MALFORMED[case])
    for action in ("--show", "--delete", "--cancel"):
        assert main(["groups", "--runs", str(runs), action, "g"]) == 2
        assert str(runs / GROUPS_DIR / "g" / GROUP_FILE) in _one_line_error(capsys)
    assert main(["groups", "--runs", str(runs)]) == 0
    assert capsys.readouterr().out.strip() == "no studies or sweeps yet"
    assert (runs / GROUPS_DIR / "g" / GROUP_FILE).is_file()


@pytest.mark.parametrize("owner", [None, "study-other"])
def test_a_planted_group_file_cannot_claim_another_groups_runs(tmp_path, capsys, owner):
    runs = tmp_path / "runs"
    victim = _victim(runs / "run-of-another")
    (victim / "config.json").write_text(json.dumps({"group": owner} if owner else {}))
    _plant(runs / GROUPS_DIR / "decoy", _record("decoy", ["run-of-another"]))
    for action in ("--delete", "--cancel", "--show"):
        assert main(["groups", "--runs", str(runs), action, "decoy"]) == 2
        assert "not a run of 'decoy'" in _one_line_error(capsys)
    assert (victim / "precious.txt").read_text() == "keep me"
