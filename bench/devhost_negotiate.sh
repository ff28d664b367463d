#!/usr/bin/env bash
# devhost_negotiate.sh — what `devhost start` costs: /api/negotiate through devhost (front
# server, request mapping, the signalRConnectionInfo binding minting a token, the POST to the
# handler over a kept-alive connection, the reply mapping, one log line) side by side with the
# same Negotiate invocation POSTed straight at a second handler, in one run. Rounds alternate
# and the median of each is compared. Reports requests/s of both, their ratio (target >= 0.5),
# devhost's own CPU per request from /proc/<pid>/stat (target <= 30 us; the handler under it is
# a separate process and not counted) and p99 latencies; exits 1 if a request failed or a
# target is missed.
# Env: BENCH_SECONDS (5 per round), BENCH_ROUNDS (3), BENCH_CONNECTIONS (16), BENCH_THREADS (2),
#      BENCH_MIN_RATIO (0.5), BENCH_MAX_CPU_US (30), DEVHOST_BIN (./devhost), HANDLER_BIN (./handler).
set -euo pipefail
cd "$(dirname "$0")/.."
DEVHOST=${DEVHOST_BIN:-./devhost}
HANDLER=${HANDLER_BIN:-./handler}
SECS=${BENCH_SECONDS:-5}
ROUNDS=${BENCH_ROUNDS:-3}
CONNS=${BENCH_CONNECTIONS:-16}
THREADS=${BENCH_THREADS:-2}
MIN_RATIO=${BENCH_MIN_RATIO:-0.5}
MAX_CPU_US=${BENCH_MAX_CPU_US:-30}
command -v wrk >/dev/null || { echo "devhost_negotiate.sh: wrk is not installed (apt-get install wrk)" >&2; exit 2; }
for b in "$DEVHOST" "$HANDLER"; do [ -x "$b" ] || { echo "devhost_negotiate.sh: no binary at $b (run make)" >&2; exit 2; }; done
DEVHOST=$(realpath "$DEVHOST"); HANDLER=$(realpath "$HANDLER")

free_port() { node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
HPORT=$(free_port); DPORT=$(free_port); SPORT=$(free_port)
# The emulator's public well-known key: nothing secret here.
CONN="Endpoint=http://localhost;Port=$SPORT;AccessKey=ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ABCDEFGH;Version=1.0;"
WORK=$(mktemp -d)
HPID=""; DPID=""
cleanup() {
  [ -n "$DPID" ] && kill "$DPID" 2>/dev/null && wait "$DPID" 2>/dev/null
  [ -n "$HPID" ] && kill "$HPID" 2>/dev/null && wait "$HPID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

# A function app with the repository's host.json and Negotiate, run by devhost.
mkdir -p "$WORK/app"
cp host.json "$WORK/app/" && cp -r Negotiate "$WORK/app/" && ln -s "$HANDLER" "$WORK/app/handler"
cat >"$WORK/app/local.settings.json" <<JSON
{"IsEncrypted": false, "Values": {"FUNCTIONS_WORKER_RUNTIME": "custom", "AzureSignalRConnectionString": "$CONN"}}
JSON
"$DEVHOST" start --script-root "$WORK/app" --port "$DPORT" --data "$WORK/data" --no-mqtt >"$WORK/devhost.log" 2>&1 &
DPID=$!
FUNCTIONS_CUSTOMHANDLER_PORT=$HPORT AzureSignalRConnectionString="$CONN" "$HANDLER" >"$WORK/handler.log" 2>&1 &
HPID=$!
for _ in $(seq 1 400); do
  curl -fsS "http://127.0.0.1:$DPORT/admin/host/status" 2>/dev/null | grep -q '"state":"Running"' &&
    curl -fsS "http://127.0.0.1:$HPORT/" >/dev/null 2>&1 && break
  kill -0 "$DPID" 2>/dev/null || { echo "devhost failed to start:"; cat "$WORK/devhost.log"; exit 1; }
  sleep 0.05
done
# Sanity: both paths really mint a token before we time them.
A=$(curl -fsS -X POST "http://127.0.0.1:$DPORT/api/negotiate?negotiateVersion=1")
B=$(curl -fsS -X POST -H 'Content-Type: application/json' "http://127.0.0.1:$HPORT/Negotiate" \
  -d '{"Data":{"req":{"Method":"POST","Headers":{}}},"Metadata":{}}')
case "$A$B" in *accessToken*accessToken*) ;; *) echo "negotiate did not return tokens: $A / $B"; exit 1;; esac

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
run() { BENCH_PATH=$2 wrk -t"$THREADS" -c"$CONNS" -d"${SECS}s" -s bench/negotiate.lua "http://127.0.0.1:$1" | tail -n 1; }
echo "devhost: $DEVHOST, handler: $HANDLER; wrk -t$THREADS -c$CONNS -d${SECS}s x $ROUNDS alternating rounds, $(nproc) CPUs"
RESULTS=()
for r in $(seq 1 "$ROUNDS"); do
  H0=$(cpu_ticks "$HPID"); D=$(run "$HPORT" /Negotiate); H1=$(cpu_ticks "$HPID")
  C0=$(cpu_ticks "$DPID"); V=$(run "$DPORT" "/api/negotiate?negotiateVersion=1"); C1=$(cpu_ticks "$DPID")
  echo "round $r direct:  $D (handler CPU ticks $((H1 - H0)))"
  echo "round $r devhost: $V (devhost CPU ticks $((C1 - C0)))"
  RESULTS+=("{\"kind\":\"direct\",\"ticks\":$((H1 - H0)),\"r\":$D}" "{\"kind\":\"devhost\",\"ticks\":$((C1 - C0)),\"r\":$V}")
done
node -e '
const [minRatio, maxCpu, hz] = process.argv.slice(1, 4).map(Number);
const rows = process.argv.slice(4).map((s) => JSON.parse(s));
const median = (xs) => { const s = [...xs].sort((a, b) => a.r.rps - b.r.rps); return s[(s.length - 1) >> 1]; };
const d = median(rows.filter((x) => x.kind === "direct")), v = median(rows.filter((x) => x.kind === "devhost"));
const us = (x) => (x.ticks / hz) * 1e6 / x.r.requests;
const errors = rows.reduce((a, x) => a + x.r.errors, 0);
const ratio = v.r.rps / d.r.rps;
console.log(`median direct ${d.r.rps.toFixed(0)} req/s (p99 ${d.r.p99_ms.toFixed(2)} ms, handler CPU ${us(d).toFixed(1)} us/req); ` +
  `median through devhost ${v.r.rps.toFixed(0)} req/s (p99 ${v.r.p99_ms.toFixed(2)} ms)`);
console.log(`ratio devhost/direct: ${ratio.toFixed(2)} (target >= ${minRatio}); devhost CPU per request: ${us(v).toFixed(1)} us (target <= ${maxCpu})`);
if (errors) { console.log(`errors: ${errors}`); process.exit(1); }
if (ratio < minRatio || us(v) > maxCpu) process.exit(1);
' "$MIN_RATIO" "$MAX_CPU_US" "$(getconf CLK_TCK)" "${RESULTS[@]}"
