#!/usr/bin/env bash
# Runs every test: the release build's suite, then the same suite built with clang under ASan +
# UBSan, where each libFuzzer harness of tests/fuzz also replays its corpus and fuzzes briefly
# (ctest tests fuzz.<harness>). Warnings are errors here, as in CI.
#
# Build flags are chosen for CI's 2 cores and 30 minutes: the release build is -O2 without debug
# info (a third less compile time than RelWithDebInfo; -O3 would trip GCC 12's false -Wrestrict
# on std::string under -Werror); the sanitizer build is clang at -O0 with line tables only (half
# of GCC's compile time under ASan, same test run time).
set -euo pipefail
cd "$(dirname "$0")/.."
jobs="${TRIALMESH_JOBS:-2}"

# The benchmark programs of tools/bench (no test uses them; ~2 min of CI's compile time) are
# left to the README's first command, which builds everything.
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release "-DCMAKE_CXX_FLAGS_RELEASE=-O2 -DNDEBUG" \
  "-DCMAKE_C_FLAGS_RELEASE=-O2 -DNDEBUG" -DTRIALMESH_WERROR=ON -DTRIALMESH_BUILD_BENCH=OFF
cmake --build build -j"$jobs"
ctest --test-dir build -j"$jobs" --output-on-failure --timeout 300

cmake -S . -B build-asan -G Ninja -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_BUILD_TYPE=Sanitize "-DCMAKE_CXX_FLAGS_SANITIZE=-O0 -gline-tables-only" \
  "-DCMAKE_C_FLAGS_SANITIZE=-O0 -gline-tables-only" -DTRIALMESH_WERROR=ON \
  -DTRIALMESH_SANITIZE=ON -DTRIALMESH_FUZZ=ON -DTRIALMESH_BUILD_BENCH=OFF
cmake --build build-asan -j"$jobs"
# scripts/lsan.supp: fontconfig's process-lifetime caches (cairo text in --plot), not ours.
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
  LSAN_OPTIONS="suppressions=$PWD/scripts/lsan.supp" \
  ctest --test-dir build-asan -j"$jobs" --output-on-failure --timeout 600
