#!/usr/bin/env bash
# Installs what Enviromon needs to build and test, and nothing when it is all there.
# Debian packages via apt-get (as root, or with sudo); npm packages via `npm ci` from the
# committed package-lock.json files. Idempotent and quiet when nothing is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  build-essential pkg-config
  libmicrohttpd-dev libcjson-dev libcurl4-openssl-dev libssl-dev libcmocka-dev
  nodejs valgrind wrk curl ca-certificates procps
  util-linux                           # setpriv: tests tie the servers they start to themselves (PR_SET_PDEATHSIG)
  libmosquitto-dev mosquitto-clients   # simulator's MQTT client; mosquitto_pub as an independent peer
  chromium                             # dashboard tests (driven by playwright-core)
  clang libclang-rt-14-dev             # libFuzzer targets (make fuzz)
  zip unzip debootstrap openssl git    # make package / make check-package (test CA, git's .funcignore reading)
)
# Debian's nodejs ships npm as a separate package; a nodesource nodejs already bundles it.
if ! command -v npm >/dev/null 2>&1; then APT_PACKAGES+=(npm); fi
if [ -n "${EXTRA_APT_PACKAGES:-}" ]; then read -r -a extra <<<"$EXTRA_APT_PACKAGES"; APT_PACKAGES+=("${extra[@]}"); fi

missing=()
for p in "${APT_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# npm trees: the root one (Azurite, @azure/data-tables, ...) and any self-contained tool
# folder with its own lock file (kept apart where packages must not be hoisted together).
for lock in package-lock.json tests/*/package-lock.json dashboard/package-lock.json; do
  [ -f "$lock" ] || continue
  dir=$(dirname "$lock")
  stamp="$dir/node_modules/.enviromon-lock.sha256"
  want=$(sha256sum "$lock" | cut -d' ' -f1)
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "deps: npm ci in $dir"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    echo "$want" > "$stamp"
  fi
done
