#!/usr/bin/env bash
# devhost start end to end (docs/benchmarks.md, "devhost start: devices → DeviceState → SignalR"):
# builds the release devhost and handler, then runs bench/devhost_e2e.mjs (one Azurite; wrk
# for the throughput step; the EventTrigger-only benchmark in the same run). Env: see the .mjs.
set -euo pipefail
cd "$(dirname "$0")/.."
make --no-print-directory build/release/handler build/release/devhost >/dev/null
export HANDLER_BIN=${HANDLER_BIN:-$PWD/build/release/handler}
export DEVHOST_BIN=${DEVHOST_BIN:-$PWD/build/release/devhost}
mkdir -p build/release/bench
export BENCH_OUT=${BENCH_OUT:-$PWD/build/release/bench/devhost_e2e.json}
node bench/devhost_e2e.mjs
echo "results: $BENCH_OUT"
