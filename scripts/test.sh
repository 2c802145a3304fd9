#!/usr/bin/env bash
# Runs every test: the release build's suite, then the same suite under ASan + UBSan.
# Warnings are errors here, as in CI.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs="${TRIALMESH_JOBS:-2}"

cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTRIALMESH_WERROR=ON
cmake --build build -j"$jobs"
ctest --test-dir build -j"$jobs" --output-on-failure --timeout 300

cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DTRIALMESH_WERROR=ON \
  -DTRIALMESH_SANITIZE=ON -DTRIALMESH_BUILD_BENCH=OFF
cmake --build build-asan -j"$jobs"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan -j"$jobs" --output-on-failure --timeout 600
