#!/usr/bin/env bash
# `make run`: the local services the function app needs, on the conventional loopback ports:
#   Azurite (blob 10000, queue 10001, table 10002; UseDevelopmentStorage=true), data kept in
#   .azurite/ between runs, and the local SignalR Service (`./devhost signalr`, port 8888, the
#   emulator connection string of local.settings.sample.json).
# With Azure Functions Core Tools installed, `func start` in another terminal then runs the app
# against them (copy local.settings.sample.json to local.settings.json first).
# Ctrl-C stops everything. (`devhost start` — the Functions host, IoT Hub device endpoint,
# dashboard and simulated devices without Core Tools — is not there yet.)
set -euo pipefail
cd "$(dirname "$0")/.."

for port in 10000 10001 10002 8888; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "make run: port $port on 127.0.0.1 is already in use; stop whatever listens there first" >&2
    exit 1
  fi
done

mkdir -p .azurite
pids=()
stop() {
  trap - INT TERM EXIT
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop INT TERM EXIT

node_modules/.bin/azurite --blobHost 127.0.0.1 --queueHost 127.0.0.1 --tableHost 127.0.0.1 \
  --location .azurite --disableTelemetry --silent &
pids+=($!)
./devhost signalr &
pids+=($!)

for port in 10000 10001 10002 8888; do
  for _ in $(seq 1 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.05
  done
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "make run: nothing listens on $port" >&2; exit 1; }
done

cat <<'TXT'

Enviromon local services are up:
  Azurite (UseDevelopmentStorage=true)   blob 127.0.0.1:10000  queue :10001  table :10002  (data in .azurite/)
  SignalR Service (emulator string)      http://localhost:8888   (see docs/signalr-service.md)

With Azure Functions Core Tools:  cp local.settings.sample.json local.settings.json && func start
Press Ctrl-C to stop.
TXT
wait -n "${pids[@]}"
echo "make run: a service exited; stopping the others" >&2
exit 1
