#!/usr/bin/env bash
# Sourced by scripts/app.sh and scripts/test.sh: make the project's .venv (PEP 668 leaves a stock
# Debian/Ubuntu python3 read-only) and install REQUIREMENTS into it when they changed.
# Sets PY to the virtual environment's python.
set -euo pipefail
VENV="${FLOWER_VENV:-.venv}"
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
if [ ! -x "$VENV/bin/python" ]; then
  if ! python3 -m venv "$VENV" 2>/dev/null; then
    # Debian and Ubuntu ship venv's pip bootstrap in a separate package.
    rm -rf "$VENV"
    as_root apt-get update -qq && as_root apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv "$VENV"
  fi
fi
PY="$VENV/bin/python"
stamp="$VENV/.installed-$(cat requirements*.txt | "$PY" -c 'import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest()[:16])')-$REQUIREMENTS"
if [ ! -f "$stamp" ]; then
  "$PY" -m pip install -q --upgrade pip
  "$PY" -m pip install -q -r "$REQUIREMENTS"
  touch "$stamp"
fi
