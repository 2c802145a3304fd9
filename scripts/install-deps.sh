#!/usr/bin/env bash
# Installs the Debian 12 packages trialmesh builds and tests with (only those that are missing).
# R (with survival, surveillance and jsonlite) is the reference every statistic is tested
# against and the home of the R client; clang builds the libFuzzer harnesses in tests/fuzz;
# dpkg-dev, lintian and systemd (for systemd-analyze) build and check the Debian package;
# python3 runs the Python client's tests; libjs-chart.js draws the console's charts, and
# chromium, chromium-driver and python3-selenium run its browser test (tests/tools).
# libcairo2-dev: `trialmesh query --plot` draws SVG and PNG with cairo (tools/plot).
set -euo pipefail
packages=(
  build-essential cmake ninja-build pkg-config clang-format
  libcairo2-dev
  capnproto libcapnp-dev libsodium-dev librocksdb-dev libboost-dev
  libspdlog-dev libfmt-dev libgtest-dev libcli11-dev libtomlplusplus-dev nlohmann-json3-dev
  libsqlite3-dev
  r-base-core r-cran-survival r-cran-surveillance r-cran-jsonlite
  clang libclang-rt-14-dev
  dpkg-dev lintian procps systemd
  python3
  libjs-chart.js chromium chromium-driver python3-selenium
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
