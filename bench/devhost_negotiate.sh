#!/usr/bin/env bash
# devhost_negotiate.sh — what `devhost start` costs: /api/negotiate through devhost (front
# server, request mapping, the signalRConnectionInfo binding minting a token, the POST to the
# handler over a kept-alive connection, the reply mapping, one log line) side by side with the
# same Negotiate invocation POSTed straight at a second handler, in one run. Rounds alternate
# and the median of each is compared. Reports requests/s of both, their ratio (target >= 0.5),
# devhost's own CPU per request from /proc/<pid>/stat (target <= 30 us; the handler under it is
# a separate process and not counted) and the kernel's part of it, devhost's CPU divided by the
# handler's (steadier than either on a shared machine), p99 latencies and the load average;
# exits 1 if a request failed or a target is missed. With DEVHOST_BASE_BIN (another build of devhost, e.g. before a change)
# that devhost runs too, on its own port, and joins every round, so that before and after are
# measured in the same minutes; the targets apply to DEVHOST_BIN.
# Env: BENCH_SECONDS (5 per round), BENCH_ROUNDS (3), BENCH_CONNECTIONS (16), BENCH_THREADS (2),
#      BENCH_MIN_RATIO (0.5), BENCH_MAX_CPU_US (30), DEVHOST_BIN (./devhost), HANDLER_BIN (./handler),
#      DEVHOST_BASE_BIN (none).
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
BASE=${DEVHOST_BASE_BIN:-}
for b in "$DEVHOST" "$HANDLER" $BASE; do [ -x "$b" ] || { echo "devhost_negotiate.sh: no binary at $b (run make)" >&2; exit 2; }; done
DEVHOST=$(realpath "$DEVHOST"); HANDLER=$(realpath "$HANDLER"); [ -z "$BASE" ] || BASE=$(realpath "$BASE")

free_port() { node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
HPORT=$(free_port); DPORT=$(free_port); SPORT=$(free_port); BPORT=$(free_port)
# The emulator's public well-known key: nothing secret here.
CONN="Endpoint=http://localhost;Port=$SPORT;AccessKey=ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ABCDEFGH;Version=1.0;"
WORK=$(mktemp -d)
HPID=""; DPID=""; BPID=""
cleanup() {
  [ -n "$BPID" ] && kill "$BPID" 2>/dev/null && wait "$BPID" 2>/dev/null
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
running() { curl -fsS "http://127.0.0.1:$1/admin/host/status" 2>/dev/null | grep -q '"state":"Running"'; }
if [ -n "$BASE" ]; then
  # The baseline serves a copy of the app and uses the first devhost's SignalR Service, so it
  # starts once that one runs (both would otherwise try to start the service on its port).
  for _ in $(seq 1 400); do
    running "$DPORT" && break
    kill -0 "$DPID" 2>/dev/null || { echo "devhost failed to start:"; cat "$WORK/devhost.log"; exit 1; }
    sleep 0.05
  done
  cp -r "$WORK/app" "$WORK/app-base"
  "$BASE" start --script-root "$WORK/app-base" --port "$BPORT" --data "$WORK/data-base" --no-mqtt >"$WORK/base.log" 2>&1 &
  BPID=$!
fi
for _ in $(seq 1 400); do
  running "$DPORT" && { [ -z "$BASE" ] || running "$BPORT"; } &&
    curl -fsS "http://127.0.0.1:$HPORT/" >/dev/null 2>&1 && break
  kill -0 "$DPID" 2>/dev/null || { echo "devhost failed to start:"; cat "$WORK/devhost.log"; exit 1; }
  [ -z "$BASE" ] || kill -0 "$BPID" 2>/dev/null || { echo "the baseline devhost failed to start:"; cat "$WORK/base.log"; exit 1; }
  sleep 0.05
done
# Sanity: both paths really mint a token before we time them.
A=$(curl -fsS -X POST "http://127.0.0.1:$DPORT/api/negotiate?negotiateVersion=1")
B=$(curl -fsS -X POST -H 'Content-Type: application/json' "http://127.0.0.1:$HPORT/Negotiate" \
  -d '{"Data":{"req":{"Method":"POST","Headers":{}}},"Metadata":{}}')
case "$A$B" in *accessToken*accessToken*) ;; *) echo "negotiate did not return tokens: $A / $B"; exit 1;; esac
if [ -n "$BASE" ]; then
  C=$(curl -fsS -X POST "http://127.0.0.1:$BPORT/api/negotiate?negotiateVersion=1")
  case "$C" in *accessToken*) ;; *) echo "the baseline's negotiate did not return a token: $C"; exit 1;; esac
fi

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
sys_ticks() { awk '{print $15}' "/proc/$1/stat"; }
run() { BENCH_PATH=$2 wrk -t"$THREADS" -c"$CONNS" -d"${SECS}s" -s bench/negotiate.lua "http://127.0.0.1:$1" | tail -n 1; }
echo "devhost: $DEVHOST${BASE:+, baseline: $BASE}, handler: $HANDLER; wrk -t$THREADS -c$CONNS -d${SECS}s x $ROUNDS alternating rounds, $(nproc) CPUs"
LOAD0=$(cut -d' ' -f1 /proc/loadavg)
RESULTS=()
through() { # kind port pid
  local c0 c1 s0 s1 v
  c0=$(cpu_ticks "$3"); s0=$(sys_ticks "$3"); v=$(run "$2" "/api/negotiate?negotiateVersion=1")
  c1=$(cpu_ticks "$3"); s1=$(sys_ticks "$3")
  echo "round $r $1: $v ($1 CPU ticks $((c1 - c0)), of them kernel $((s1 - s0)))"
  RESULTS+=("{\"kind\":\"$1\",\"ticks\":$((c1 - c0)),\"sys\":$((s1 - s0)),\"r\":$v}")
}
for r in $(seq 1 "$ROUNDS"); do
  H0=$(cpu_ticks "$HPID"); S0=$(sys_ticks "$HPID"); D=$(run "$HPORT" /Negotiate)
  H1=$(cpu_ticks "$HPID"); S1=$(sys_ticks "$HPID")
  echo "round $r direct:  $D (handler CPU ticks $((H1 - H0)), of them kernel $((S1 - S0)))"
  RESULTS+=("{\"kind\":\"direct\",\"ticks\":$((H1 - H0)),\"sys\":$((S1 - S0)),\"r\":$D}")
  # With a baseline, the two devhosts take turns going first.
  if [ -n "$BASE" ] && [ $((r % 2)) = 0 ]; then through baseline "$BPORT" "$BPID"; fi
  through devhost "$DPORT" "$DPID"
  if [ -n "$BASE" ] && [ $((r % 2)) = 1 ]; then through baseline "$BPORT" "$BPID"; fi
done
echo "load average (1 min): $LOAD0 at the start, $(cut -d' ' -f1 /proc/loadavg) at the end"
node -e '
const [minRatio, maxCpu, hz] = process.argv.slice(1, 4).map(Number);
const rows = process.argv.slice(4).map((s) => JSON.parse(s));
const median = (xs) => { const s = [...xs].sort((a, b) => a.r.rps - b.r.rps); return s[(s.length - 1) >> 1]; };
const us = (x) => (x.ticks / hz) * 1e6 / x.r.requests;
const kus = (x) => (x.sys / hz) * 1e6 / x.r.requests;
const d = median(rows.filter((x) => x.kind === "direct"));
const errors = rows.reduce((a, x) => a + x.r.errors, 0);
console.log(`median direct ${d.r.rps.toFixed(0)} req/s (p99 ${d.r.p99_ms.toFixed(2)} ms, handler CPU ${us(d).toFixed(1)} us/req, kernel ${kus(d).toFixed(1)})`);
let met = false;
for (const kind of ["baseline", "devhost"]) {
  const mine = rows.filter((x) => x.kind === kind);
  if (!mine.length) continue;
  const v = median(mine), ratio = v.r.rps / d.r.rps, self = kind === "devhost";
  console.log(`median through ${self ? "devhost" : "the baseline devhost"} ${v.r.rps.toFixed(0)} req/s (p99 ` +
    `${v.r.p99_ms.toFixed(2)} ms): ratio to direct ${ratio.toFixed(2)}${self ? ` (target >= ${minRatio})` : ""}; ` +
    `CPU per request ${us(v).toFixed(1)} us${self ? ` (target <= ${maxCpu})` : ""} (kernel ${kus(v).toFixed(1)}), ` +
    `${(us(v) / us(d)).toFixed(2)}x the handler CPU`);
  if (self) met = ratio >= minRatio && us(v) <= maxCpu;
}
if (errors) { console.log(`errors: ${errors}`); process.exit(1); }
if (!met) process.exit(1);
' "$MIN_RATIO" "$MAX_CPU_US" "$(getconf CLK_TCK)" "${RESULTS[@]}"
