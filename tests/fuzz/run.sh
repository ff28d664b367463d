#!/usr/bin/env bash
# tests/fuzz/run.sh BUILD SECONDS [TARGET...] — run libFuzzer targets.
#
# BUILD is the fuzz build folder (build/fuzz, made by `make fuzz`); each target
# BUILD/tests/fuzz/fuzz_<name> first replays its committed corpus tests/fuzz/corpus/<name>/
# (seeds and every input that once crashed it), then mutates for SECONDS seconds. New inputs go
# to BUILD/corpus/<name>/ (kept between local runs, never committed as they are: see
# docs/reliability.md for minimising them into the committed corpus), a crashing input to
# BUILD/artifacts/<name>/. TARGETs are names without the fuzz_ prefix (default: all).
# FUZZ_JOBS=N runs N targets at a time (default 1; each fuzzer uses one core).
#
# Prints a table with one row per target (executions, edges covered, features, corpus size,
# outcome), also written to BUILD/summary.md. Exits 1 when any target found a crash, a leak, a
# timeout or a broken invariant; its log is BUILD/logs/<name>.log.
set -uo pipefail
cd "$(dirname "$0")/../.."

build=${1:?usage: tests/fuzz/run.sh BUILD SECONDS [TARGET...]}
secs=${2:?usage: tests/fuzz/run.sh BUILD SECONDS [TARGET...]}
shift 2
jobs=${FUZZ_JOBS:-1}

names=("$@")
if [ ${#names[@]} -eq 0 ]; then
  for b in "$build"/tests/fuzz/fuzz_*; do
    [ -x "$b" ] && [ "${b%.d}" = "$b" ] && names+=("$(basename "$b" | sed 's/^fuzz_//')")
  done
fi
if [ ${#names[@]} -eq 0 ]; then
  echo "fuzz: no targets in $build/tests/fuzz (run make fuzz)" >&2
  exit 2
fi
mkdir -p "$build/logs" "$build/dict"

# A dictionary file may start with "#include other.dict" lines (tests/fuzz/dict/).
expand_dict() {
  local line
  while IFS= read -r line; do
    case "$line" in
      '#include '*) expand_dict "tests/fuzz/dict/${line#\#include }" ;;
      *) printf '%s\n' "$line" ;;
    esac
  done <"$1"
}

# Run one target; leaves its table row in BUILD/logs/<name>.row and exits with its status.
run_one() {
  local name=$1
  local bin="$build/tests/fuzz/fuzz_$name" seeds="tests/fuzz/corpus/$name" work="$build/corpus/$name"
  local arts="$build/artifacts/$name" log="$build/logs/$name.log" row="$build/logs/$name.row"
  if [ ! -x "$bin" ]; then
    echo "| $name | | | | | | | FAILED: no target $bin |" >"$row"
    return 1
  fi
  mkdir -p "$work" "$arts"
  local args=(-max_total_time="$secs" -timeout=30 -rss_limit_mb=2048 -print_final_stats=1 -close_fd_mask=1
              -artifact_prefix="$arts/")
  if [ -f "tests/fuzz/dict/$name.dict" ]; then
    expand_dict "tests/fuzz/dict/$name.dict" >"$build/dict/$name.dict"
    args+=(-dict="$build/dict/$name.dict")
  fi
  local dirs=("$work")
  [ -d "$seeds" ] && dirs+=("$seeds")
  local start rc took execs rate last cov ft corp outcome
  start=$(date +%s)
  "$bin" "${args[@]}" "${dirs[@]}" >"$log" 2>&1
  rc=$?
  took=$(( $(date +%s) - start ))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  last=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -1)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9]*[a-zA-Z]*\).*/\1/p' <<<"$last")
  if [ $rc -eq 0 ]; then
    outcome=ok
  else
    outcome="FAILED (exit $rc): $(grep -m1 -E 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error|invariant failed' "$log" | cut -c1-120)"
  fi
  echo "| $name | $took | ${execs:-?} | ${rate:-?} | ${cov:-?} | ${ft:-?} | ${corp:-?} | $outcome |" >"$row"
  return $rc
}

running=0
for name in "${names[@]}"; do
  rm -f "$build/logs/$name.row"
  run_one "$name" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then wait -n; running=$((running - 1)); fi
done
wait

summary="$build/summary.md"
{
  echo "| target | seconds | executions | exec/s | edges | features | corpus | outcome |"
  echo "|---|---:|---:|---:|---:|---:|---:|---|"
  for name in "${names[@]}"; do cat "$build/logs/$name.row"; done
} >"$summary"
cat "$summary"
failed=0
for name in "${names[@]}"; do
  if grep -q FAILED "$build/logs/$name.row"; then
    failed=1
    echo "---- $build/logs/$name.log (last 40 lines)"
    tail -40 "$build/logs/$name.log"
    ls "$build/artifacts/$name" 2>/dev/null | sed "s|^|---- saved input: $build/artifacts/$name/|"
  fi
done
exit $failed
