#!/usr/bin/env bash
# Sourced by scripts/app.sh and scripts/test.sh: make the project's .venv (PEP 668 leaves a stock
# Debian/Ubuntu python3 read-only) and install REQUIREMENTS into it when they changed.
# Sets PY to the virtual environment's python.
set -euo pipefail
VENV="${FLOWER_VENV:-.venv}"
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
  if ! "$BASE" -m venv "$VENV" 2>/dev/null; then
    # Debian and Ubuntu ship venv's pip bootstrap in a separate package, one per Python version.
    rm -rf "$VENV"
    package=python3-venv
    if [ "$BASE" != python3 ]; then package="$BASE-venv"; fi
    as_root apt-get update -qq && as_root apt-get install -y -qq "$package" >/dev/null
    "$BASE" -m venv "$VENV"
  fi
fi
PY="$VENV/bin/python"
stamp="$VENV/.installed-$(cat requirements*.txt | "$PY" -c 'import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest()[:16])')-$REQUIREMENTS"
if [ ! -f "$stamp" ]; then
  "$PY" -m pip install -q --upgrade pip
  "$PY" -m pip install -q -r "$REQUIREMENTS"
  "$PY" -m pip install -q --no-deps -r requirements-nodeps.txt
  touch "$stamp"
fi
