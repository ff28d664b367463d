#!/usr/bin/env bash
# MQTT device connections benchmark (docs/benchmarks.md, "MQTT"): 1,000 concurrent MQTT
# connections over TLS, each sending one QoS 1 message per second plus bursts; reports the
# sustained rate, PUBACK latency p50/p99, server CPU per message and RSS per idle connection.
#
# The server is tests/tools/mqtt_testhub, devhost's MQTT endpoint (src/devhost/mqtt), with
#   BENCH_BACKEND=iothub (default): the local IoT Hub as backend — every PUBACK waits for the
#       message's group-committed fsync in its partition log, as in `devhost start`;
#   BENCH_BACKEND=memory: an in-memory backend completing from another thread after
#       BENCH_ACK_DELAY_MS — the MQTT layer alone (TLS, framing, sessions, PUBACK path).
# Env: BENCH_CONNECTIONS (1000), BENCH_DURATION_S (30), BENCH_IDLE_S (5), BENCH_BURST_EVERY_S (10),
#      BENCH_BURST_DEVICES (50), BENCH_BURST_SIZE (20), BENCH_ACK_DELAY_MS (2), BENCH_OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${BENCH_CONNECTIONS:-1000}
BACKEND=${BENCH_BACKEND:-iothub}
make --no-print-directory build/release/tests/tools/mqtt_testhub >/dev/null
bench/build_tool mqtt_load
OUT=${BENCH_OUT:-$PWD/build/release/bench/mqtt.json}

WORK=$(mktemp -d)
HUB_PID=""
cleanup() {
  if [ -n "$HUB_PID" ]; then kill "$HUB_PID" 2>/dev/null || true; wait "$HUB_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# N devices: registered in the local IoT Hub (iothub) or handed to the in-memory backend in its
# environment (memory); the load tool reads "id key" lines from a private file either way.
devices=""
: >"$WORK/devices"
chmod 600 "$WORK/devices"
mkdir -m 700 "$WORK/data"
if [ "$BACKEND" = iothub ]; then
  build/release/bench/mqtt_load --make-devices "$N" "$WORK/data" "$WORK/devices"
else
  for i in $(seq -w 1 "$N"); do
    key=$(head -c 32 /dev/urandom | base64)
    echo "bench-$i $key" >>"$WORK/devices"
    devices+="bench-$i=$key;"
  done
fi

MQTT_TEST_DEVICES="$devices" build/release/tests/tools/mqtt_testhub --data "$WORK/data" --quiet 1 \
  --iothub "$([ "$BACKEND" = iothub ] && echo 1 || echo 0)" \
  --ack-delay-ms "${BENCH_ACK_DELAY_MS:-2}" >"$WORK/hub.out" 2>"$WORK/hub.err" </dev/null &
HUB_PID=$!
for _ in $(seq 1 200); do
  grep -q '"listening"' "$WORK/hub.out" 2>/dev/null && break
  sleep 0.05
done
PORT=$(sed -n 's/.*"listening","port":\([0-9]*\).*/\1/p' "$WORK/hub.out" | head -1)
[ -n "$PORT" ] || { echo "mqtt_testhub did not start:"; cat "$WORK/hub.err"; exit 1; }

build/release/bench/mqtt_load --port "$PORT" --ca "$WORK/data/ca.pem" --devices "$WORK/devices" \
  --connections "$N" --idle-s "${BENCH_IDLE_S:-5}" --duration-s "${BENCH_DURATION_S:-30}" \
  --burst-every-s "${BENCH_BURST_EVERY_S:-10}" --burst-devices "${BENCH_BURST_DEVICES:-50}" \
  --burst-size "${BENCH_BURST_SIZE:-20}" --server-pid "$HUB_PID" | tee "$OUT"
node -e '
  const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  const perConn = (r.serverRssKb.idle - r.serverRssKb.before) / r.connected;
  console.log(`backend ${process.argv[2]}: connections ${r.connected}/${r.connections} in ${r.connectSeconds} s; ` +
    `${r.ratePerSecond} msgs/s sustained for ${r.durationSeconds.toFixed(1)} s (${r.ackedDuringLoad} acknowledged); ` +
    `PUBACK p50 ${r.pubackMs.p50} ms, p99 ${r.pubackMs.p99} ms (steady ${r.steadyPubackMs.p50}/${r.steadyPubackMs.p99}, ` +
    `bursts ${r.burstPubackMs.p50}/${r.burstPubackMs.p99}); server CPU ${r.serverCpuUsPerMessage} µs/msg; ` +
    `RSS ${(r.serverRssKb.before / 1024).toFixed(1)} MiB before, ${(r.serverRssKb.idle / 1024).toFixed(1)} MiB idle ` +
    `(${perConn.toFixed(1)} KiB per idle connection), ${(r.serverRssKb.afterLoad / 1024).toFixed(1)} MiB after load`);
  if (r.connected !== r.connections || r.acked !== r.sent || r.disconnected) process.exit(1);
' "$OUT" "$BACKEND"
echo "results: $OUT"
