#!/usr/bin/env bash
# Make sure a Docker engine answers, and that debootstrap (for the offline sandbox image) is present.
# As root on Debian/Ubuntu it installs docker.io and starts dockerd in the background; anywhere else it
# prints one line saying what to do and fails. Idempotent: a running engine costs one `docker info`.
set -euo pipefail

say() { echo "[setup] $*" >&2; }
die() { echo "error: $*" >&2; exit 1; }
is_root_debian() { [ "$(id -u)" = 0 ] && [ -f /etc/debian_version ]; }
apt_updated=""
apt_install() {
  if [ -z "$apt_updated" ]; then apt-get update -qq >/dev/null; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

if ! command -v debootstrap >/dev/null 2>&1 && ! docker image inspect "${SANDBOX_IMAGE:-rcp-sandbox:py3}" >/dev/null 2>&1; then
  if is_root_debian; then say "installing debootstrap (builds the sandbox image offline)"; apt_install debootstrap; fi
fi

if docker info >/dev/null 2>&1; then exit 0; fi

if ! command -v dockerd >/dev/null 2>&1; then
  is_root_debian || die "no Docker engine: install Docker (https://docs.docker.com/engine/install/) and start it, then re-run"
  say "installing docker.io (Docker engine) with apt-get"
  apt_install docker.io
fi

if ! pgrep -x dockerd >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || die "Docker is installed but not running: start it with 'sudo systemctl start docker' (or 'sudo dockerd &'), then re-run"
  say "starting dockerd in the background (log: /var/log/rcp-dockerd.log)"
  # setsid: the daemon must outlive this make run (CI runs the tests after this script returns).
  setsid nohup dockerd >/var/log/rcp-dockerd.log 2>&1 < /dev/null &
fi

for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then say "Docker engine is up"; exit 0; fi
  sleep 1
done
die "dockerd did not answer within 60 s; see /var/log/rcp-dockerd.log (and 'docker info' for permissions)"
