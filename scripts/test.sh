#!/usr/bin/env bash
# Install what the tests need into the project's .venv, then run the tests.
#   bash scripts/test.sh            every test (what CI runs), with Ray installed for the cluster tests
#   bash scripts/test.sh --quick    the quick tier: no browser, no real data, no slow training (needs no Ray)
# Other arguments go to pytest, e.g. `bash scripts/test.sh --quick tests/test_config.py -x`.
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0
args=()
for arg in "$@"; do
  if [ "$arg" = --quick ]; then quick=1; else args+=("$arg"); fi
done
REQUIREMENTS=requirements-dev.txt
source scripts/venv.sh
if [ "$quick" = 0 ]; then
  # The full suite's cluster tests need Ray (requirements-cluster.txt); the quick tier runs without it.
  REQUIREMENTS=requirements-cluster.txt
  source scripts/venv.sh
fi
if [ "$quick" = 1 ]; then
  args=(-m "not slow and not e2e and not real_data" ${args[@]+"${args[@]}"})
else
  # The full suite names its 25 slowest tests, so a test that grows is seen in every CI log.
  args=(--durations=25 ${args[@]+"${args[@]}"})
fi
if [ "$quick" = 0 ] && [ "$(uname)" = Darwin ]; then
  # macOS: the browser tests drive Playwright's own Chromium (downloaded once, from the internet).
  "$PY" -m playwright install chromium
elif [ "$quick" = 0 ] && ! command -v chromium >/dev/null 2>&1; then
  # Linux: they drive Debian's chromium (Playwright's own browser download needs the internet).
  as_root apt-get update -qq && as_root apt-get install -y -qq chromium >/dev/null
fi
# Real-data tests use the photos and MobileNet weights beside the project when they exist.
if [ -d ../shared/data/flowers ]; then export FLOWER_DATA="${FLOWER_DATA:-$(cd ../shared/data/flowers && pwd)}"; fi
if [ -d ../shared/weights ]; then export FLOWER_WEIGHTS_DIR="${FLOWER_WEIGHTS_DIR:-$(cd ../shared/weights && pwd)}"; fi
"$PY" -m ruff check .
"$PY" -m ruff format --check .
"$PY" -m pytest ${args[@]+"${args[@]}"}
