#!/usr/bin/env bash
# devhost start end to end (docs/benchmarks.md, "devhost start: devices → DeviceState → SignalR"):
# builds the release devhost and handler and the C load tools (bench/http_load, bench/mqtt_load),
# then runs bench/devhost_e2e.mjs (one Azurite; the EventTrigger-only benchmark in the same run).
# BENCH_TRANSPORT=http (default) or mqtt; other env: see the .mjs.
set -euo pipefail
cd "$(dirname "$0")/.."
make --no-print-directory build/release/handler build/release/devhost >/dev/null
bench/build_tool http_load mqtt_load
export HANDLER_BIN=${HANDLER_BIN:-$PWD/build/release/handler}
export DEVHOST_BIN=${DEVHOST_BIN:-$PWD/build/release/devhost}
mkdir -p build/release/bench
export BENCH_OUT=${BENCH_OUT:-$PWD/build/release/bench/devhost_e2e${BENCH_TRANSPORT:+_$BENCH_TRANSPORT}.json}
node bench/devhost_e2e.mjs
echo "results: $BENCH_OUT"
