#!/usr/bin/env bash
# dashboard.sh — `make bench` entry for the dashboard benchmark (bench/dashboard.mjs: the page
# in Debian's Chromium with 200 devices x 10 messages/s against idle, side by side; then how
# long new devices take from their first message over devhost's IoT Hub endpoint to the page,
# against the 2 s target). See docs/benchmarks.md, "Dashboard".
set -euo pipefail
cd "$(dirname "$0")/.."
make --no-print-directory build/release/devhost build/release/handler dashboard/vendor/signalr.min.js \
  dashboard/vendor/uPlot.iife.min.js dashboard/vendor/uPlot.min.css >/dev/null
export DEVHOST_BIN=${DEVHOST_BIN:-$PWD/build/release/devhost}
export HANDLER_BIN=${HANDLER_BIN:-$PWD/build/release/handler}
exec node bench/dashboard.mjs "$@"
