#!/usr/bin/env bash
# The main job (README): set up, bring the reference ledger stack up, and run the Phase 7
# gauntlet against it — soak (SOAK_DURATION, default 5m), the 12 chaos scenarios, the audit.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY=${PYTHON:-python3}
"$PY" -m chaoskit up compose/ledger
exec "$PY" -m chaoskit gauntlet experiments/gauntlet/phase7.yaml --soak-duration "${SOAK_DURATION:-5m}" "$@"
