#!/usr/bin/env bash
# tests/fuzz/run.sh BUILD SECONDS [TARGET...] — run libFuzzer targets one after another.
#
# BUILD is the fuzz build folder (build/fuzz, made by `make fuzz`); each target
# BUILD/tests/fuzz/fuzz_<name> first replays its committed corpus tests/fuzz/corpus/<name>/
# (seeds and every input that once crashed it), then mutates for SECONDS seconds. New inputs go
# to BUILD/corpus/<name>/ (kept between local runs, never committed as is: see
# docs/reliability.md for minimising them into the committed corpus), a crashing input to
# BUILD/artifacts/<name>/. TARGETs are names without the fuzz_ prefix (default: all).
#
# Prints one line per target (executions, edges covered, features, corpus size, outcome) and
# writes the same table to BUILD/summary.md. Exits 1 when any target found a crash, a leak, a
# timeout or a broken invariant; its log is BUILD/logs/<name>.log.
set -uo pipefail
cd "$(dirname "$0")/../.."

build=${1:?usage: tests/fuzz/run.sh BUILD SECONDS [TARGET...]}
secs=${2:?usage: tests/fuzz/run.sh BUILD SECONDS [TARGET...]}
shift 2

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
summary="$build/summary.md"
{
  echo "| target | seconds | executions | exec/s | edges | features | corpus | outcome |"
  echo "|---|---:|---:|---:|---:|---:|---:|---|"
} >"$summary"

# A dictionary file may start with "#include other.dict" lines (tests/fuzz/dict/).
expand_dict() {
  local f=$1
  while IFS= read -r line; do
    case "$line" in
      '#include '*) expand_dict "tests/fuzz/dict/${line#\#include }" ;;
      *) printf '%s\n' "$line" ;;
    esac
  done <"$f"
}

failed=0
printf '%-22s %8s %12s %8s %7s %9s %8s  %s\n' target seconds executions exec/s edges features corpus outcome
for name in "${names[@]}"; do
  bin="$build/tests/fuzz/fuzz_$name"
  if [ ! -x "$bin" ]; then echo "fuzz: no target $bin" >&2; failed=1; continue; fi
  seeds="tests/fuzz/corpus/$name"
  work="$build/corpus/$name"
  arts="$build/artifacts/$name"
  log="$build/logs/$name.log"
  mkdir -p "$work" "$arts"
  args=(-max_total_time="$secs" -timeout=30 -rss_limit_mb=2048 -print_final_stats=1 -close_fd_mask=1
        -artifact_prefix="$arts/")
  if [ -f "tests/fuzz/dict/$name.dict" ]; then
    expand_dict "tests/fuzz/dict/$name.dict" >"$build/dict/$name.dict"
    args+=(-dict="$build/dict/$name.dict")
  fi
  dirs=("$work")
  [ -d "$seeds" ] && dirs+=("$seeds")
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
    failed=1
    outcome="FAILED (exit $rc): $(grep -m1 -E 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error|invariant failed' "$log" | cut -c1-120)"
  fi
  printf '%-22s %8s %12s %8s %7s %9s %8s  %s\n' "$name" "$took" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$outcome"
  echo "| $name | $took | ${execs:-?} | ${rate:-?} | ${cov:-?} | ${ft:-?} | ${corp:-?} | $outcome |" >>"$summary"
  if [ $rc -ne 0 ]; then
    echo "---- $log (last 40 lines)"
    tail -40 "$log"
    ls "$arts" 2>/dev/null | sed "s|^|---- saved input: $arts/|"
  fi
done
exit $failed
