#!/usr/bin/env bash
# Build chaoskit's own image (Dockerfile.chaoskit) in two steps, because pip inside
# `docker build` cannot reach PyPI on our machines:
#   1. host: wheels for chaoskit + its dependencies into build/chaoskit-image/wheels
#      (pip download on the host; --offline repacks what this Python has installed instead);
#   2. docker build with a small context (wheels + experiments), installing with --no-index.
# Usage: scripts/build-chaoskit-image.sh [--offline] [TAG]     (TAG default chaoskit/chaoskit:dev)
# Then for kind: kind load docker-image chaoskit/chaoskit:dev
set -euo pipefail
cd "$(dirname "$0")/.."
offline=()
if [ "${1:-}" = "--offline" ]; then offline=(--from-installed); shift; fi
tag="${1:-chaoskit/chaoskit:dev}"
ctx=build/chaoskit-image
rm -rf "$ctx"
mkdir -p "$ctx/wheels"
python3 scripts/chaoskit_wheelhouse.py "$ctx/wheels" "${offline[@]}"
# experiments keep their relative paths: manifests/experiments/*.yaml use ../../compose/ledger/
mkdir -p "$ctx/experiments" "$ctx/manifests/experiments" "$ctx/compose/ledger"
if [ -d experiments ]; then cp -r experiments/. "$ctx/experiments/"; fi
cp manifests/experiments/*.yaml "$ctx/manifests/experiments/"
for f in workload.yml invariants.sql schema.sql; do
  if [ -f "compose/ledger/$f" ]; then cp "compose/ledger/$f" "$ctx/compose/ledger/"; fi
done
docker build -f Dockerfile.chaoskit -t "$tag" "$ctx"
docker run --rm "$tag" --version
