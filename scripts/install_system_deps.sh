#!/usr/bin/env bash
# System packages: libraries for MuJoCo's offscreen EGL rendering in software (Mesa), and
# PostgreSQL's server binaries for the fleet service's tests and benchmarks (no cluster is
# created or started here: serve/fleet/postgres.py runs private ones), and Chromium for the fleet
# dashboard's browser test (driven by Playwright; never `playwright install`). Idempotent: installs
# only what is missing, and only when running as root with apt available.
set -euo pipefail
pkgs=(libegl1 libegl-mesa0 libgl1-mesa-dri libgles2 libglvnd0 postgresql chromium)
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "missing system packages: ${missing[*]} (install them with apt-get as root)" >&2
  exit 1
fi
echo "installing system packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
