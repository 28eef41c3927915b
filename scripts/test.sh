#!/usr/bin/env bash
# The test command (README and .ci/run): set up, lint, then the whole suite against real
# containers. With CI=true a missing Docker engine fails instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY=${PYTHON:-python3}
"$PY" -m ruff check chaoskit tests bench
exec "$PY" -m pytest -q -p no:cacheprovider --durations=15 "$@"
