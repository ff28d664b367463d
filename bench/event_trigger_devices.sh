#!/usr/bin/env bash
# EventTrigger with ever more devices (docs/benchmarks.md, "EventTrigger: 100,000 devices"):
# builds the release handler, then runs bench/event_trigger_devices.mjs (one Azurite; 1,000
# batches of 100 new devices; handler CPU per batch, last window vs the first window replayed
# side by side on a fresh handler, storage requests per batch, and peak RSS).
# Env: see bench/event_trigger_devices.mjs (BENCH_BATCHES, BENCH_BATCH, BENCH_PARTITIONS, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
make --no-print-directory build/release/handler >/dev/null
export HANDLER_BIN=${HANDLER_BIN:-$PWD/build/release/handler}
mkdir -p build/release/bench
export BENCH_OUT=${BENCH_OUT:-$PWD/build/release/bench/event_trigger_devices.json}
node bench/event_trigger_devices.mjs
echo "results: $BENCH_OUT"
