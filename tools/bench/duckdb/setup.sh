#!/usr/bin/env bash
# Installs DuckDB's Node.js binding (which ships its own libduckdb) into tools/bench/duckdb/,
# for trialmesh-bench's DuckDB comparison only. Never needed to build or test trialmesh.
# node_modules/ and package-lock.json are git-ignored.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "setup.sh: node and npm are required (Debian: apt-get install nodejs npm)" >&2
  exit 1
fi
cd "$here"
# Pinned so that published numbers can be reproduced with the same DuckDB build.
npm install --no-audit --no-fund --no-save @duckdb/node-api@1.5.6-r.1
node -e "import('@duckdb/node-api').then(m => console.log('DuckDB', m.version ? m.version() : 'ok'))"
