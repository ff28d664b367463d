#!/usr/bin/env bash
# EventTrigger benchmark (docs/benchmarks.md, "EventTrigger"): builds the release handler and
# bench/event_trigger_tool, then runs bench/event_trigger.mjs (one Azurite, figures (a)/(b)/(c)).
# Env: see bench/event_trigger.mjs (BENCH_EVENTS, BENCH_A_EVENTS, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
make --no-print-directory build/release/handler build/release/libenviromon.a >/dev/null
mkdir -p build/release/bench
# shellcheck disable=SC2046
cc -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Wall -Wextra -Werror -Wshadow \
   -Wstrict-prototypes -Wmissing-prototypes -O2 -g -Isrc $(pkg-config --cflags libcjson) \
   -o build/release/bench/event_trigger_tool bench/event_trigger_tool.c build/release/libenviromon.a \
   $(pkg-config --libs libmicrohttpd libcjson libcurl openssl) -lpthread -lm
export HANDLER_BIN=${HANDLER_BIN:-$PWD/build/release/handler}
export BENCH_OUT=${BENCH_OUT:-$PWD/build/release/bench/event_trigger.json}
node bench/event_trigger.mjs
echo "results: $BENCH_OUT"
