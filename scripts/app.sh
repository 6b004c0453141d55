#!/usr/bin/env bash
# Install the app into the project's .venv (first time, or when requirements.txt changed), then open it.
# Extra arguments go to `streamlit run`, e.g. `bash scripts/app.sh --server.port 8502`.
set -euo pipefail
cd "$(dirname "$0")/.."
REQUIREMENTS=requirements.txt
source scripts/venv.sh
exec "$PY" -m streamlit run app.py "$@"
