#!/usr/bin/env bash
# `make bench`: run every benchmark script in bench/ (each documents itself; results and how to
# read them are in docs/benchmarks.md). Continues after a failing script and exits non-zero
# if any failed. BENCH_ONLY=substr runs only the scripts whose name contains substr.
set -uo pipefail
cd "$(dirname "$0")/.."
failed=()
for s in bench/*.sh; do
  [ "$s" = bench/run.sh ] && continue
  [ -n "${BENCH_ONLY:-}" ] && [[ "$s" != *"$BENCH_ONLY"* ]] && continue
  echo "== $s"
  if ! "$s"; then failed+=("$s"); fi
done
if [ ${#failed[@]} -gt 0 ]; then echo "FAILED: ${failed[*]}"; exit 1; fi
echo "all benchmarks ran"
