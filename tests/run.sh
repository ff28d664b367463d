#!/usr/bin/env bash
# Runs every Enviromon test against the binaries of one build directory:
#   1. C unit tests (tests/unit/test_*.c, cmocka) — no services needed;
#   2. starts a private Azurite (table service, in memory, free port), then runs
#      C integration tests (tests/integration/test_*.c) and Node tests (tests/js/*.test.mjs),
#      which start ./handler (and later ./devhost) themselves on free ports;
#   3. stops Azurite. Any failure makes the script exit non-zero.
# Usage: tests/run.sh BUILD_DIR   (e.g. build/release or build/asan)
# Env: VALGRIND=1 runs C binaries under valgrind (leaks are errors; room for the slow-drip
#      tests' thousand connection threads, above valgrind's default of 500);
#      TEST_FILTER=substr runs only tests whose file name contains substr.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:?usage: tests/run.sh BUILD_DIR}
export ENVIROMON_BUILD="$BUILD"
export HANDLER_BIN="$PWD/$BUILD/handler"
[ -x "$BUILD/devhost" ] && export DEVHOST_BIN="$PWD/$BUILD/devhost"
[ -x "$BUILD/simulator" ] && export SIMULATOR_BIN="$PWD/$BUILD/simulator"
export ENVIROMON_TEST_TOOLS="$PWD/$BUILD/tests/tools"
VG_DIR=""
if [ "${VALGRIND:-}" = 1 ]; then
  # Each process's report goes to a file of its own: the Node tests start devhost, the handler
  # and the simulator under the wrapper and do not look at valgrind's exit code, so the files are
  # what tells; with -q valgrind writes only errors and warnings, and any error fails the run.
  VG_DIR=$(mktemp -d)
  export ENVIROMON_WRAPPER="valgrind -q --log-file=$VG_DIR/%p.log --max-threads=4000 --leak-check=full --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect --error-exitcode=99"
fi
WRAP=${ENVIROMON_WRAPPER:-}
filter=${TEST_FILTER:-}

failed=()
passed=0
run_c() {  # run one cmocka binary
  local bin=$1
  [ -n "$filter" ] && [[ "$bin" != *"$filter"* ]] && return 0
  echo "== $bin"
  if $WRAP "$bin"; then passed=$((passed + 1)); else failed+=("$bin"); fi
}

for t in "$BUILD"/tests/unit/test_*; do [ -x "$t" ] && run_c "$t"; done

# --- services -------------------------------------------------------------------------
AZ_PID=""
AZ_DIR=$(mktemp -d)
cleanup() {
  if [ -n "$AZ_PID" ]; then kill "$AZ_PID" 2>/dev/null; wait "$AZ_PID" 2>/dev/null; fi
  rm -rf "$AZ_DIR"
  [ -n "$VG_DIR" ] && rm -rf "$VG_DIR"
}
trap cleanup EXIT
free_port() { node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
AZ_PORT=$(free_port)
node_modules/.bin/azurite-table --tableHost 127.0.0.1 --tablePort "$AZ_PORT" --inMemoryPersistence \
  --disableTelemetry --silent >"$AZ_DIR/azurite.log" 2>&1 &
AZ_PID=$!
for _ in $(seq 1 200); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$AZ_PORT") 2>/dev/null; then break; fi
  if ! kill -0 "$AZ_PID" 2>/dev/null; then echo "Azurite failed to start:"; cat "$AZ_DIR/azurite.log"; exit 1; fi
  sleep 0.05
done
export AZURITE_TABLE_PORT=$AZ_PORT
export AZURITE_TABLE_URL="http://127.0.0.1:$AZ_PORT/devstoreaccount1"
export TEST_STORAGE_CONNECTION="DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;TableEndpoint=$AZURITE_TABLE_URL;"
echo "== Azurite table service on 127.0.0.1:$AZ_PORT"

for t in "$BUILD"/tests/integration/test_*; do [ -x "$t" ] && run_c "$t"; done

js=()
for f in tests/js/*.test.mjs; do
  [ -f "$f" ] || continue
  [ -n "$filter" ] && [[ "$f" != *"$filter"* ]] && continue
  js+=("$f")
done
if [ ${#js[@]} -gt 0 ]; then
  echo "== node --test (${#js[@]} files)"
  # 5 min a test file; under valgrind everything runs 10-50 times slower, so 20 min
  timeout_ms=300000
  [ -n "$VG_DIR" ] && timeout_ms=1200000
  if node --test --test-concurrency=1 --test-timeout=$timeout_ms "${js[@]}"; then passed=$((passed + 1)); else failed+=("node tests"); fi
fi

if [ -n "$VG_DIR" ]; then
  # Errors and leaks are "==pid==" lines; "--pid--" lines are valgrind's own warnings (such as
  # pidfd_open, syscall 434, which this valgrind does not know: devhost falls back to polling).
  reports=$(grep -l -E '^==[0-9]+==' "$VG_DIR"/*.log 2>/dev/null | sort)
  for f in $reports; do
    echo "== valgrind report of process $(basename "$f" .log):"
    head -n 200 "$f"
  done
  [ -n "$reports" ] && failed+=("valgrind reports ($(echo "$reports" | wc -l) processes)")
  warned=$(grep -h -o -E 'WARNING: .*' "$VG_DIR"/*.log 2>/dev/null | sort | uniq -c)
  [ -n "$warned" ] && printf '== valgrind warnings (not errors), times seen:\n%s\n' "$warned"
fi

echo
if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED: ${failed[*]}"
  exit 1
fi
echo "all test suites passed ($passed)"
