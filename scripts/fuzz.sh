#!/usr/bin/env bash
# Builds the libFuzzer harnesses of tests/fuzz (clang, ASan + UBSan, build dir build-fuzz) and
# runs each on its committed corpus (docs/fuzzing.md). Prints executions and coverage per
# harness; exits non-zero if a harness crashes or a property fails (the input is saved as
# build-fuzz/artifacts/<harness>/crash-*).
#
#   scripts/fuzz.sh                      # every harness 15 s (about 3 min in all; CI's ctest runs 10 s)
#   scripts/fuzz.sh --seconds 3600       # long run: an hour each
#   scripts/fuzz.sh --runs 10000000 query_text csv   # 10M executions of two harnesses
#   scripts/fuzz.sh --replay             # only re-run the corpus (regression check, seconds)
#
# Options: --seconds N (per harness), --runs N (per harness; overrides --seconds),
# --replay, --jobs N (parallel libFuzzer workers per harness, default 1), --build-dir DIR.
# Inputs found that add coverage go to build-fuzz/corpus/<harness> (not the repository); copy
# the interesting ones into tests/fuzz/corpus/<harness>/ to keep them.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="$ROOT/build-fuzz"
SECONDS_EACH=15
RUNS=""
REPLAY=0
JOBS=1
HARNESSES=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --seconds) SECONDS_EACH="$2"; shift 2 ;;
    --runs) RUNS="$2"; shift 2 ;;
    --replay) REPLAY=1; shift ;;
    --jobs) JOBS="$2"; shift 2 ;;
    --build-dir) BUILD="$2"; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    -*) echo "fuzz.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) HARNESSES+=("$1"); shift ;;
  esac
done

command -v clang++ >/dev/null || { echo "fuzz.sh: clang++ not found (apt-get install clang)" >&2; exit 2; }
if [[ ! -f "$BUILD/build.ninja" ]]; then
  LAUNCHER=()
  command -v ccache >/dev/null && LAUNCHER=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
  cmake -S "$ROOT" -B "$BUILD" -G Ninja -DTRIALMESH_FUZZ=ON -DTRIALMESH_FUZZ_ONLY=ON \
    -DCMAKE_BUILD_TYPE=Fuzz "-DCMAKE_CXX_FLAGS_FUZZ=-O1 -gline-tables-only" \
    "-DCMAKE_C_FLAGS_FUZZ=-O1 -gline-tables-only" \
    -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ "${LAUNCHER[@]}" >/dev/null
fi
ninja -C "$BUILD" -j2 fuzzers

if [[ ${#HARNESSES[@]} -eq 0 ]]; then
  for f in "$ROOT"/tests/fuzz/fuzz_*.cc; do
    n="$(basename "$f" .cc)"; HARNESSES+=("${n#fuzz_}")
  done
fi

status=0
printf '%-16s %12s %8s %8s %s\n' harness execs cov features result
for h in "${HARNESSES[@]}"; do
  bin="$BUILD/bin/fuzz_$h"
  seeds="$ROOT/tests/fuzz/corpus/$h"
  [[ -x "$bin" ]] || { echo "fuzz.sh: no harness $h ($bin)" >&2; exit 2; }
  [[ -d "$seeds" ]] || { echo "fuzz.sh: no corpus $seeds" >&2; exit 2; }
  work="$BUILD/corpus/$h"; art="$BUILD/artifacts/$h"; log="$BUILD/logs/$h.log"
  mkdir -p "$work" "$art" "$(dirname "$log")"
  args=(-artifact_prefix="$art/" -print_final_stats=1 -max_len=65536 -rss_limit_mb=2048 -timeout=25)
  if [[ $REPLAY -eq 1 ]]; then
    args+=(-runs=0)
    dirs=("$seeds")
  else
    if [[ -n "$RUNS" ]]; then args+=(-runs="$RUNS"); else args+=(-max_total_time="$SECONDS_EACH"); fi
    [[ "$JOBS" -gt 1 ]] && args+=(-fork="$JOBS")
    dirs=("$work" "$seeds")
  fi
  if "$bin" "${args[@]}" "${dirs[@]}" >"$log" 2>&1; then result=ok; else result="FAILED (see $log)"; status=1; fi
  execs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || true)"
  cov="$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || true)"
  ft="$(grep -o 'ft: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || true)"
  printf '%-16s %12s %8s %8s %s\n' "$h" "${execs:-?}" "${cov:-?}" "${ft:-?}" "$result"
  if [[ $status -ne 0 && "$result" != ok ]]; then grep -m5 -E 'ERROR|property violated|SUMMARY' "$log" || true; fi
done
exit $status
