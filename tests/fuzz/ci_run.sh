#!/usr/bin/env bash
# One harness as a ctest test (tests/fuzz/CMakeLists.txt): replay the committed corpus, then
# fuzz for a few seconds with a fixed seed. New inputs go to a fresh directory in the build
# tree, never into the repository's corpus; a crash or violated property fails the test and
# leaves the input in <work>/artifacts/. Long runs: scripts/fuzz.sh (docs/fuzzing.md).
#   ci_run.sh <harness binary> <seed corpus dir> <work dir> <seconds>
set -euo pipefail
bin="$1" seeds="$2" work="$3" seconds="$4"
rm -rf "$work/corpus"
mkdir -p "$work/corpus" "$work/artifacts"
exec "$bin" -seed=1 -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 -timeout=25 \
  -print_final_stats=1 -artifact_prefix="$work/artifacts/" "$work/corpus" "$seeds"
