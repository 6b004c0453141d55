#!/usr/bin/env bash
# Install everything the tests need on a fresh Debian machine, then run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q -r requirements-dev.txt
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null
  else sudo apt-get update -qq && sudo apt-get install -y -qq chromium >/dev/null; fi
fi
# Real-data tests use the photos and MobileNet weights beside the project when they exist.
if [ -d ../shared/data/flowers ]; then export FLOWER_DATA="${FLOWER_DATA:-$(cd ../shared/data/flowers && pwd)}"; fi
if [ -d ../shared/weights ]; then export FLOWER_WEIGHTS_DIR="${FLOWER_WEIGHTS_DIR:-$(cd ../shared/weights && pwd)}"; fi
python3 -m ruff check .
python3 -m pytest "$@"
