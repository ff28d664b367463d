#!/usr/bin/env bash
# signalr_fanout.sh — `make bench` entry for the local SignalR Service fan-out benchmark
# (bench/signalr_fanout.mjs: 1,000 WebSocket and 1,000 SSE clients side by side, broadcasts at
# rising rates; --clients 5000 for thousands). See
# docs/benchmarks.md, "SignalR".
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x "${DEVHOST_BIN:-build/release/devhost}" ] || { echo "signalr_fanout.sh: no devhost binary (run make)" >&2; exit 2; }
exec node bench/signalr_fanout.mjs "$@"
