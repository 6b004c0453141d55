"""scripts/venv.sh, which scripts/app.sh and scripts/test.sh source, says what it installs."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _install(folder: Path) -> str:
    """Source venv.sh in `folder` as app.sh does; pip reads no index, so nothing is downloaded."""
    env = {**os.environ, "PIP_NO_INDEX": "1"}
    env.pop("FLOWER_VENV", None)  # the folder's own .venv, even inside a run that set another
    done = subprocess.run(
        ["bash", "-c", "REQUIREMENTS=requirements-dev.txt; source scripts/venv.sh"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_install_says_each_step_and_what_it_installs(tmp_path):
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "venv.sh", tmp_path / "scripts")
    # A requirements file naming another, as requirements-dev.txt does; pip is already installed.
    (tmp_path / "requirements.txt").write_text("# the app\npip\n")
    (tmp_path / "requirements-dev.txt").write_text("-r requirements.txt\n")
    (tmp_path / "requirements-nodeps.txt").write_text("pip\n")
    # A virtual environment that sees this Python's pip, made without downloading anything.
    subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", ".venv"],
        cwd=tmp_path,
        check=True,
    )
    said = _install(tmp_path)
    assert "==> Updating pip in .venv" in said
    [installing] = [line for line in said.splitlines() if line.startswith("==> Installing")]
    assert installing.startswith("==> Installing requirements-dev.txt into .venv")
    assert installing.endswith(": pip")  # the packages named, through `-r requirements.txt`
    assert "Requirement already satisfied: pip" in said  # pip's own lines are shown
    assert "==> Adding requirements-nodeps.txt" in said
    assert "==> Installed" in said
    assert _install(tmp_path) == ""  # nothing changed: nothing installed, nothing said
