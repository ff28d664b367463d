#!/usr/bin/env bash
# `make run`: the whole local stack on this machine, no Azure account needed (README, "Try it").
# The Makefile has already run `make deps` and built ./handler, ./devhost, ./simulator and the
# dashboard's vendor/ folder. This script:
#   1. creates local.settings.json from local.settings.sample.json when there is none (never
#      overwrites one) and checks, before starting anything, that every port it needs is free;
#   2. starts Azurite (blob, queue, table; data kept in $DATA/azurite) when the app's storage is
#      UseDevelopmentStorage=true;
#   3. starts `devhost start`: the Functions host with ./handler, the dashboard at /, the local
#      IoT Hub (HTTP device API on the same port, MQTT over TLS) and the local SignalR Service;
#      with FUNCTIONS_HOST=func, Core Tools' `func start` and `devhost signalr` instead;
#   4. starts ./simulator with $DEVICES devices, registered with `devhost device add`;
#   5. prints what runs where, streams the logs (also kept in $DATA/logs/), and on Ctrl-C
#      (SIGINT), SIGTERM or SIGHUP stops everything it started, in order: simulator, host,
#      Azurite. A second Ctrl-C kills what is left at once.
# Each child runs in a session of its own, so that a Ctrl-C reaches this script only and the
# children stop in that order instead of all at once (Azurite must outlive devhost's last
# writes); each also gets SIGTERM from the kernel should this script die without cleaning up
# (SIGKILL), so that nothing is left behind even then.
#
# Settings (make variables or environment):
#   DEVICES=3            simulated devices (0: no simulator)
#   TRANSPORT=mqtt       the simulator's transport: mqtt or http
#   INTERVAL=2           seconds between one device's messages
#   PORT                 devhost's port (default: Host.LocalHttpPort of local.settings.json, else 7071)
#   MQTT_PORT=8883       the local IoT Hub's MQTT port
#   SIGNALR_PORT         the local SignalR Service's port (default: the connection string's, 8888)
#   BLOB_PORT=10000 QUEUE_PORT=10001 TABLE_PORT=10002   Azurite's ports
#   DATA=.devhost        devhost's data folder; Azurite's data and the logs go under it
#   FUNCTIONS_HOST=devhost   or `func` to run Azure Functions Core Tools' `func start`
set -euo pipefail
cd "$(dirname "$0")/.."

DEVICES=${DEVICES:-3}
TRANSPORT=${TRANSPORT:-mqtt}
INTERVAL=${INTERVAL:-2}
MQTT_PORT=${MQTT_PORT:-8883}
BLOB_PORT=${BLOB_PORT:-10000}
QUEUE_PORT=${QUEUE_PORT:-10001}
TABLE_PORT=${TABLE_PORT:-10002}
DATA=${DATA:-.devhost}
FUNCTIONS_HOST=${FUNCTIONS_HOST:-devhost}
LOGS=$DATA/logs
AZURITE_ACCOUNT_KEY='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='

say() { printf 'make run: %s\n' "$*"; }
die() { printf 'make run: %s\n' "$*" >&2; exit 1; }
is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }
is_port() { is_uint "$1" && [ "$1" -ge 1 ] && [ "$1" -le 65535 ]; }

# ---- settings ---------------------------------------------------------------------------------
is_uint "$DEVICES" || die "DEVICES must be a number of devices (0 for none), not '$DEVICES'"
case "$TRANSPORT" in mqtt|http) ;; *) die "TRANSPORT must be mqtt or http, not '$TRANSPORT'" ;; esac
case "$FUNCTIONS_HOST" in
  devhost) ;;
  func) command -v func >/dev/null 2>&1 ||
          die "FUNCTIONS_HOST=func needs Azure Functions Core Tools' 'func' on PATH (without it, leave FUNCTIONS_HOST unset: devhost runs the app)" ;;
  *) die "FUNCTIONS_HOST must be devhost or func, not '$FUNCTIONS_HOST'" ;;
esac
for v in MQTT_PORT BLOB_PORT QUEUE_PORT TABLE_PORT; do
  is_port "${!v}" || die "$v must be a port number (1-65535), not '${!v}'"
done
for v in PORT SIGNALR_PORT; do
  [ -z "${!v:-}" ] || is_port "${!v}" || die "$v must be a port number (1-65535), not '${!v}'"
done

if [ ! -e local.settings.json ]; then
  cp -n local.settings.sample.json local.settings.json
  say "created local.settings.json from local.settings.sample.json (edit it to change settings; make run never overwrites it)"
fi

# What local.settings.json says about ports and services, one value a line: the HTTP port, whether
# storage is the local emulator, whether the SignalR connection string names this machine, and
# its port. Environment variables win over Values, as in devhost and Core Tools.
settings=$(node -e '
  const fs = require("fs");
  let ls;
  try { ls = JSON.parse(fs.readFileSync("local.settings.json", "utf8")); }
  catch (e) { console.error("make run: local.settings.json: " + e.message); process.exit(1); }
  const v = (k) => process.env[k] ?? (ls.Values || {})[k] ?? "";
  const storage = v("StorageConnectionString") || v("AzureWebJobsStorage");
  const sr = v("AzureSignalRConnectionString");
  const ep = /(?:^|;)\s*Endpoint=([^;]*)/i.exec(sr), port = /(?:^|;)\s*Port=(\d+)/i.exec(sr);
  let local = false, srPort = "";
  if (ep) {
    try {
      const u = new URL(ep[1].trim());
      local = ["localhost", "127.0.0.1", "[::1]"].includes(u.hostname);
      srPort = port ? port[1] : (u.port || (u.protocol === "https:" ? "443" : "80"));
    } catch { /* devhost names a malformed string */ }
  }
  console.log((ls.Host && ls.Host.LocalHttpPort) || 7071);
  console.log(/^\s*UseDevelopmentStorage=true\s*;?\s*$/i.test(storage) ? "dev" : "other");
  console.log(local ? "local" : "other");
  console.log(srPort);
') || exit 1
{ read -r ls_port; read -r storage_kind; read -r signalr_kind; read -r ls_signalr_port; } <<<"$settings"
PORT=${PORT:-$ls_port}
is_port "$PORT" || die "local.settings.json: Host.LocalHttpPort must be a port number, not '$PORT'"

# A port given on the command line goes to the app through the settings devhost reads from its
# environment (they win over local.settings.json's Values).
if [ "$signalr_kind" = local ]; then
  if [ -n "${SIGNALR_PORT:-}" ] && [ "$SIGNALR_PORT" != "$ls_signalr_port" ]; then
    export AzureSignalRConnectionString="Endpoint=http://localhost;Port=$SIGNALR_PORT;AccessKey=ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ABCDEFGH;Version=1.0;"
  fi
  SIGNALR_PORT=${SIGNALR_PORT:-$ls_signalr_port}
elif [ -n "${SIGNALR_PORT:-}" ]; then
  say "SIGNALR_PORT ignored: AzureSignalRConnectionString names a SignalR Service elsewhere"
  SIGNALR_PORT=""
fi
if [ "$storage_kind" = dev ] && [ "$BLOB_PORT/$QUEUE_PORT/$TABLE_PORT" != 10000/10001/10002 ]; then
  conn="DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=$AZURITE_ACCOUNT_KEY;BlobEndpoint=http://127.0.0.1:$BLOB_PORT/devstoreaccount1;QueueEndpoint=http://127.0.0.1:$QUEUE_PORT/devstoreaccount1;TableEndpoint=http://127.0.0.1:$TABLE_PORT/devstoreaccount1;"
  export AzureWebJobsStorage="$conn" StorageConnectionString="$conn"
fi

# ---- ports ------------------------------------------------------------------------------------
# Every port this run will listen on, with the part that needs it and the setting that moves it.
ports=("$PORT" "devhost (functions, dashboard, IoT Hub HTTP)" PORT)
if [ "$FUNCTIONS_HOST" = devhost ]; then ports+=("$MQTT_PORT" "the local IoT Hub's MQTT endpoint" MQTT_PORT); fi
if [ "$signalr_kind" = local ]; then ports+=("$SIGNALR_PORT" "the local SignalR Service" SIGNALR_PORT); fi
if [ "$storage_kind" = dev ]; then
  ports+=("$BLOB_PORT" "Azurite's blob service" BLOB_PORT "$QUEUE_PORT" "Azurite's queue service" QUEUE_PORT
          "$TABLE_PORT" "Azurite's table service" TABLE_PORT)
fi
port_list=()
for ((i = 0; i < ${#ports[@]}; i += 3)); do port_list+=("${ports[i]}"); done
# Bind each port on 127.0.0.1 (as the services will) to see whether it is free; prints the busy ones.
busy=$(node -e '
  const net = require("net");
  const ports = process.argv.slice(1).map(Number);
  Promise.all(ports.map((p) => new Promise((res) => {
    const s = net.createServer();
    s.once("error", (e) => res(e.code === "EADDRINUSE" || e.code === "EACCES" ? p : null));
    s.listen({ port: p, host: "127.0.0.1", exclusive: true }, () => s.close(() => res(null)));
  }))).then((r) => console.log(r.filter((p) => p !== null).join(" ")));
' "${port_list[@]}")
if [ -n "$busy" ]; then
  for ((i = 0; i < ${#ports[@]}; i += 3)); do
    p=${ports[i]}
    [[ " $busy " == *" $p "* ]] || continue
    who=""
    if command -v ss >/dev/null 2>&1; then
      who=$(ss -Hltnp "sport = :$p" 2>/dev/null | grep -o 'users:(("[^"]*",pid=[0-9]*' | head -1 | sed 's/users:(("\([^"]*\)",pid=\([0-9]*\)/ by \1 (pid \2)/' || true)
    fi
    printf 'make run: port %s on 127.0.0.1, for %s, is already in use%s.\n' "$p" "${ports[i+1]}" "$who" >&2
    printf '          Stop what listens there (an earlier make run?) or choose another port: make run %s=<port>\n' "${ports[i+2]}" >&2
  done
  exit 1
fi

# ---- children ---------------------------------------------------------------------------------
mkdir -p "$DATA" "$LOGS"
chmod 700 "$DATA"
names=() pids=() loggers=()
spawn_pid=""
# spawn NAME CMD...: run CMD in a session of its own (parent-death signal SIGTERM) with its output
# (stdout and stderr) in $LOGS/NAME.log (this run's), and show that file on this terminal with
# NAME in front of each line. The child writes to the file, never to a pipe, so nothing that
# happens to the display (a Ctrl-C reaching it, a closed terminal) can make the child fail.
# The display (tail | sed) ignores SIGINT and SIGHUP and ends by itself once the child has
# exited and its last lines are shown. Sets spawn_pid.
spawn() {
  local name=$1 log="$LOGS/$1.log" fd
  shift
  : >"$log"
  setsid setpriv --pdeathsig TERM "$@" >>"$log" 2>&1 </dev/null &
  spawn_pid=$!
  names+=("$name") pids+=("$spawn_pid")
  exec {fd}> >(trap '' INT HUP; exec sed -u "s/^/$(printf '%-9s| ' "$name")/")
  loggers+=($!)
  (trap '' INT HUP; exec tail -n +1 -f --pid="$spawn_pid" "$log") 1>&"$fd" 2>/dev/null &
  loggers+=($!)
  exec {fd}>&-
}
alive() { kill -0 "$1" 2>/dev/null; }

force=0
stopping=0
# Stop one child: send SIG, wait up to SECS for it to exit, then SIGKILL (at once after a second
# Ctrl-C).
stop_one() {
  local name=$1 pid=$2 sig=$3 secs=$4 t=0
  alive "$pid" || return 0
  kill -s "$sig" "$pid" 2>/dev/null || true
  while alive "$pid" && [ "$force" = 0 ] && [ "$t" -lt $((secs * 10)) ]; do sleep 0.1; t=$((t + 1)); done
  if alive "$pid"; then
    say "$name did not stop after ${secs} s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}
stop_all() {
  local code=${1:-0} i
  [ "$stopping" = 1 ] && return 0
  stopping=1
  trap 'force=1; say "second interrupt: killing what is left"' INT TERM HUP
  if [ ${#pids[@]} -gt 0 ]; then
    local order=()
    for ((i = ${#names[@]} - 1; i >= 0; i--)); do order+=("${names[i]}"); done
    say "stopping ${order[*]}"
  fi
  # Reverse start order: the simulator, then the host, then the services they write to.
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    case "${names[i]}" in
      simulator) stop_one "${names[i]}" "${pids[i]}" INT 10 ;;
      devhost|func|signalr) stop_one "${names[i]}" "${pids[i]}" TERM 15 ;;
      *) stop_one "${names[i]}" "${pids[i]}" TERM 10 ;;
    esac
  done
  # The displays end once their child has exited (tail looks once a second).
  for p in "${loggers[@]}"; do
    for _ in $(seq 1 30); do
      if ! alive "$p" || [ "$force" = 1 ]; then break; fi
      sleep 0.1
    done
    alive "$p" && kill "$p" 2>/dev/null
    wait "$p" 2>/dev/null || true
  done
  [ ${#pids[@]} -gt 0 ] && say "stopped; data kept in $DATA/, logs in $LOGS/"
  exit "$code"
}
trap 'stop_all 0' INT TERM HUP
trap 'stop_all $?' EXIT

# wait_ready NAME PID SECS CHECK...: poll CHECK every $every seconds (default 0.1) until it
# succeeds. Dies when the child exits or SECS pass; with soft=1, returns 1 after SECS instead.
wait_ready() {
  local name=$1 pid=$2 secs=$3 deadline=$((SECONDS + $3)) rc
  shift 3
  until "$@"; do
    if ! alive "$pid"; then
      wait "$pid" && rc=0 || rc=$?
      die "$name exited (status $rc) while starting; its log: $LOGS/$name.log"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      [ "${soft:-0}" = 1 ] && return 1
      die "$name is not ready after $secs s; its log: $LOGS/$name.log"
    fi
    sleep "${every:-0.1}"
  done
}
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
all_listening() { local p; for p in "$@"; do listening "$p" || return 1; done; }
host_running() {
  curl -fsS --max-time 2 "http://127.0.0.1:$PORT/admin/host/status" 2>/dev/null | grep -q '"state":"Running"'
}
# devices_reporting N SINCE_MS: GetDeviceState has a row for each of sim-1..sim-N seen since SINCE_MS.
devices_reporting() {
  curl -fsS --max-time 5 "http://127.0.0.1:$PORT/api/getdevicestate?broadcast=false" 2>/dev/null |
    node -e '
      const [n, since] = process.argv.slice(1).map(Number);
      let s = ""; process.stdin.on("data", (d) => s += d).on("end", () => {
        const rows = JSON.parse(s), seen = new Set();
        for (const r of rows) if (Date.parse(r.lastSeen) >= since) seen.add(r.deviceId);
        for (let i = 1; i <= n; i++) if (!seen.has("sim-" + i)) process.exit(1);
      });' "$1" "$2"
}
clock() { date +%s.%N; }
took() { awk -v a="$1" -v b="$(clock)" 'BEGIN { printf "%.1f s", b - a }'; }

steps=2
[ "$storage_kind" = dev ] && steps=$((steps + 1))
[ "$FUNCTIONS_HOST" = func ] && [ "$signalr_kind" = local ] && steps=$((steps + 1))
[ "$DEVICES" -gt 0 ] && [ "$FUNCTIONS_HOST" = devhost ] && steps=$((steps + 1))
step=0
progress() { step=$((step + 1)); printf 'make run: [%d/%d] %s\n' "$step" "$steps" "$*"; }
progress "ports free: ${port_list[*]}"

if [ "$storage_kind" = dev ]; then
  t0=$(clock)
  mkdir -p "$DATA/azurite"
  spawn azurite node_modules/.bin/azurite --blobHost 127.0.0.1 --blobPort "$BLOB_PORT" \
    --queueHost 127.0.0.1 --queuePort "$QUEUE_PORT" --tableHost 127.0.0.1 --tablePort "$TABLE_PORT" \
    --location "$DATA/azurite" --disableTelemetry --silent
  wait_ready azurite "$spawn_pid" 30 all_listening "$BLOB_PORT" "$QUEUE_PORT" "$TABLE_PORT"
  progress "Azurite (storage) ready on $BLOB_PORT/$QUEUE_PORT/$TABLE_PORT in $(took "$t0")"
fi

t0=$(clock)
if [ "$FUNCTIONS_HOST" = devhost ]; then
  spawn devhost ./devhost start --data "$DATA" --port "$PORT" --mqtt-port "$MQTT_PORT"
  wait_ready devhost "$spawn_pid" 90 host_running
  wait_ready devhost "$spawn_pid" 10 listening "$MQTT_PORT"
  progress "devhost start (functions, dashboard, IoT Hub, SignalR) ready in $(took "$t0")"
else
  if [ "$signalr_kind" = local ]; then
    spawn signalr ./devhost signalr --port "$SIGNALR_PORT"
    wait_ready signalr "$spawn_pid" 10 listening "$SIGNALR_PORT"
    progress "local SignalR Service (devhost signalr) ready on $SIGNALR_PORT"
    t0=$(clock)
  fi
  spawn func func start --port "$PORT"
  wait_ready func "$spawn_pid" 120 host_running
  progress "func start ready in $(took "$t0")"
fi

sim_line="none (DEVICES=0)"
if [ "$DEVICES" -gt 0 ] && [ "$FUNCTIONS_HOST" = devhost ]; then
  t0=$(clock)
  if [ "$TRANSPORT" = mqtt ]; then endpoint="mqtts://localhost:$MQTT_PORT"; else endpoint="http://localhost:$PORT"; fi
  spawn simulator ./simulator --devices "$DEVICES" --data "$DATA" --transport "$TRANSPORT" \
    --endpoint "$endpoint" --interval "$INTERVAL"
  # Started once every device's telemetry has gone through the pipeline into DeviceState.
  since_ms=$(( $(date +%s%3N) - 1000 ))
  if soft=1 every=0.5 wait_ready simulator "$spawn_pid" 60 devices_reporting "$DEVICES" "$since_ms"; then
    progress "simulator: $DEVICES devices registered, their telemetry in DeviceState in $(took "$t0")"
  else
    progress "simulator started, but not every device has reached DeviceState after 60 s (see $LOGS/)"
  fi
  sim_line="$DEVICES devices (sim-1 .. sim-$DEVICES) over $TRANSPORT, one message every $INTERVAL s each"
elif [ "$DEVICES" -gt 0 ]; then
  sim_line="none: func start has no local IoT Hub (see README, \"Core Tools\")"
fi

if [ "$signalr_kind" = local ]; then
  signalr_line="http://localhost:$SIGNALR_PORT (local, $([ "$FUNCTIONS_HOST" = devhost ] && echo "in devhost" || echo "devhost signalr"))"
else
  signalr_line="the service AzureSignalRConnectionString names"
fi
if [ "$storage_kind" = dev ]; then
  storage_line="Azurite, blob $BLOB_PORT, queue $QUEUE_PORT, table $TABLE_PORT (data in $DATA/azurite/)"
else
  storage_line="the account StorageConnectionString names (Azurite not started)"
fi
if [ "$FUNCTIONS_HOST" = devhost ]; then
  banner=$(cat <<TXT

  Enviromon is running. Open the dashboard:  http://localhost:$PORT/

  Dashboard          http://localhost:$PORT/  (live device table and charts)
  Functions          http://localhost:$PORT/api/negotiate  /api/getdevicestate  /api/SendSignalrMessage
  IoT Hub (local)    HTTP  POST http://localhost:$PORT/devices/{id}/messages/events
                     MQTT  mqtts://localhost:$MQTT_PORT (TLS; CA $DATA/ca.pem)
                     add a device: ./devhost device add NAME --data $DATA
TXT
)
else
  # Core Tools serves no static files: the page comes from any static server on an origin that
  # Host.CORS allows (the sample allows localhost:5500), pointed at the app with ?api=.
  banner=$(cat <<TXT

  Enviromon is running (func start).

  Functions          http://localhost:$PORT/api/negotiate  /api/getdevicestate  /api/SendSignalrMessage
  Dashboard          func start serves no files: serve dashboard/ from an origin in Host.CORS, e.g.
                     (cd dashboard && python3 -m http.server 5500), then open
                     http://localhost:5500/?api=http://localhost:$PORT
TXT
)
fi
banner+=$'\n'$(cat <<TXT
  SignalR Service    $signalr_line
  Storage            $storage_line
  Simulator          $sim_line
  Logs               $LOGS/

  Ctrl-C stops everything.

TXT
)
# One write, so that no log line lands inside it.
printf '%s\n\n' "$banner"

# Until Ctrl-C: the host or storage exiting ends the run; the simulator ending does not.
while :; do
  live=()
  for ((i = 0; i < ${#pids[@]}; i++)); do alive "${pids[i]}" && live+=("${pids[i]}"); done
  [ ${#live[@]} -gt 0 ] || break
  wait -n "${live[@]}" && rc=0 || rc=$?
  [ "$stopping" = 1 ] && break
  for ((i = 0; i < ${#pids[@]}; i++)); do
    alive "${pids[i]}" && continue
    [ "${done_[i]:-}" = 1 ] && continue
    done_[i]=1
    wait "${pids[i]}" 2>/dev/null && rc=0 || rc=$?
    if [ "${names[i]}" = simulator ]; then
      say "the simulator exited (status $rc); the rest keeps running (Ctrl-C stops it)"
    else
      say "${names[i]} exited (status $rc); stopping the rest (its log: $LOGS/${names[i]}.log)"
      stop_all 1
    fi
  done
done
