#!/usr/bin/env bash
# negotiate.sh — Negotiate throughput straight at the handler, side by side with the
# handler's cheapest route (the readiness probe GET /) as the ceiling, in one run.
# Prints both summaries, the Negotiate/probe requests-per-second ratio (target >= 0.8) and
# Negotiate's p99 latency; exits 1 if any request failed or the ratio is below BENCH_MIN_RATIO.
# Env: HANDLER_BIN (default ./handler), BENCH_SECONDS (5 per round), BENCH_ROUNDS (3),
#      BENCH_CONNECTIONS (16), BENCH_THREADS (2), BENCH_MIN_RATIO (0.8).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${HANDLER_BIN:-./handler}
SECS=${BENCH_SECONDS:-5}
CONNS=${BENCH_CONNECTIONS:-16}
THREADS=${BENCH_THREADS:-2}
MIN_RATIO=${BENCH_MIN_RATIO:-0.8}
ROUNDS=${BENCH_ROUNDS:-3}
command -v wrk >/dev/null || { echo "negotiate.sh: wrk is not installed (apt-get install wrk)" >&2; exit 2; }
[ -x "$BIN" ] || { echo "negotiate.sh: no handler binary at $BIN (run make)" >&2; exit 2; }

PORT=$(node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
LOG=$(mktemp)
# The emulator's public well-known key: nothing secret here.
FUNCTIONS_CUSTOMHANDLER_PORT=$PORT \
AzureSignalRConnectionString='Endpoint=http://localhost;Port=8888;AccessKey=ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ABCDEFGH;Version=1.0;' \
  "$BIN" >"$LOG" 2>&1 &
PID=$!
trap 'kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; rm -f "$LOG"' EXIT
for _ in $(seq 1 200); do
  curl -fsS "http://127.0.0.1:$PORT/" >/dev/null 2>&1 && break
  kill -0 "$PID" 2>/dev/null || { echo "handler failed to start:"; cat "$LOG"; exit 1; }
  sleep 0.05
done
# Sanity: the invocation really mints a token before we time it.
BODY=$(curl -fsS -X POST -H 'Content-Type: application/json' "http://127.0.0.1:$PORT/Negotiate" \
  -d '{"Data":{"req":{"Method":"POST","Headers":{}}},"Metadata":{}}')
case "$BODY" in *accessToken*) ;; *) echo "Negotiate did not return a token: $BODY"; exit 1;; esac

run() { BENCH_PATH=$1 wrk -t"$THREADS" -c"$CONNS" -d"${SECS}s" -s bench/negotiate.lua "http://127.0.0.1:$PORT" | tail -n 1; }
echo "handler: $BIN, wrk -t$THREADS -c$CONNS -d${SECS}s x $ROUNDS alternating rounds, $(nproc) CPUs"
# Alternate probe and Negotiate rounds so that load from other processes on a shared machine
# hits both alike; the median round of each is compared.
RESULTS=()
for r in $(seq 1 "$ROUNDS"); do
  P=$(run /); N=$(run /Negotiate)
  echo "round $r probe:     $P"
  echo "round $r negotiate: $N"
  RESULTS+=("$P" "$N")
done
node -e '
const min = Number(process.argv[1]);
const rows = process.argv.slice(2).map((s) => JSON.parse(s));
const median = (xs) => { const s = [...xs].sort((a, b) => a.rps - b.rps); return s[(s.length - 1) >> 1]; };
const p = median(rows.filter((r) => r.path === "/")), n = median(rows.filter((r) => r.path !== "/"));
const errors = rows.reduce((a, r) => a + r.errors, 0);
const ratio = n.rps / p.rps;
console.log(`median probe ${p.rps.toFixed(0)} req/s (p99 ${p.p99_ms.toFixed(2)} ms); median negotiate ${n.rps.toFixed(0)} req/s (p99 ${n.p99_ms.toFixed(2)} ms)`);
console.log(`ratio negotiate/probe: ${ratio.toFixed(2)} (target >= ${min})`);
if (errors) { console.log(`errors: ${errors}`); process.exit(1); }
if (ratio < min) process.exit(1);
' "$MIN_RATIO" "${RESULTS[@]}"
