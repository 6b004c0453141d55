#!/usr/bin/env bash
# Install the app into the project's .venv (first time, or when requirements.txt changed), then open it.
# Extra arguments go to `streamlit run`, e.g. `bash scripts/app.sh --server.port 8502`.
set -euo pipefail
cd "$(dirname "$0")/.."
REQUIREMENTS=requirements.txt
source scripts/venv.sh
# glibc gives threads that allocate at once their own malloc arenas (up to 8 per core) and keeps
# what each arena freed; the sessions' threads and TensorFlow's then hold memory nobody uses.
# Two arenas cut the server's memory after many sessions (docs/OPERATIONS.md, "Memory and CPU").
# A value already set is kept.
export MALLOC_ARENA_MAX="${MALLOC_ARENA_MAX:-2}"
echo "==> Starting the app (streamlit run app.py $*)"
exec "$PY" -m streamlit run app.py "$@"
