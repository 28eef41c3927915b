#!/usr/bin/env bash
# Everything chaoskit and its tests need on a fresh Debian machine: system packages, a running
# Docker engine, the Python package, and the local base image (debootstrap when no registry).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[setup] %s\n' "$*" >&2; }

pkgs=()
command -v debootstrap >/dev/null || pkgs+=(debootstrap)
command -v socat >/dev/null || pkgs+=(socat)
command -v iptables >/dev/null || pkgs+=(iptables)
command -v ip >/dev/null || pkgs+=(iproute2)
command -v nsenter >/dev/null || pkgs+=(util-linux)
command -v chromium >/dev/null || pkgs+=(chromium)
command -v psql >/dev/null || pkgs+=(postgresql-client)
if ! command -v docker >/dev/null; then pkgs+=(docker.io); fi
if ! command -v docker-compose >/dev/null && ! docker compose version >/dev/null 2>&1; then pkgs+=(docker-compose); fi
if [ ${#pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    log "apt-get install ${pkgs[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
  else
    log "missing system packages (install as root): ${pkgs[*]}"
  fi
fi

if ! docker info >/dev/null 2>&1; then
  if command -v dockerd >/dev/null && [ "$(id -u)" = 0 ]; then
    log "starting dockerd"
    (nohup dockerd >/tmp/chaoskit-dockerd.log 2>&1 &)
    for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  fi
fi
if ! docker info >/dev/null 2>&1; then
  log "no Docker engine reachable"
  if [ "${CI:-}" = "true" ]; then exit 1; fi
fi

PY=${PYTHON:-python3}
log "pip install -e .[test]"
"$PY" -m pip install -q --disable-pip-version-check -e '.[test]' 2>&1 | grep -v -E "WARNING: Running pip as|dependency conflicts|requires .* but you have|^$" >&2 || true

if docker info >/dev/null 2>&1; then
  "$PY" -m chaoskit images
fi
