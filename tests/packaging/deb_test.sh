#!/usr/bin/env bash
# The Debian package end to end, without installing it on the machine and without systemd as
# PID 1 (CI): build the .deb with CPack, extract it into a fresh root, check its layout, unit,
# conffiles and maintainer scripts, then run trialmesh and trialmesh-node from the extracted
# /usr/bin with the packaged /etc/trialmesh layout: keygen, import, --check-config, start,
# /healthz, SIGHUP with a good and a broken members file, SIGTERM.
# Usage: deb_test.sh BUILD_DIR. Exit 77 (ctest: skipped) when dpkg-deb is missing.
set -euo pipefail
build=$(cd "$1" && pwd)
command -v dpkg-deb >/dev/null || { echo "SKIP: dpkg-deb not installed (apt-get install dpkg-dev)"; exit 77; }

work=$(mktemp -d "${TMPDIR:-/tmp}/trialmesh-deb-XXXXXX")
node_pid=""
cleanup() {
  if [[ -n $node_pid ]] && kill -0 "$node_pid" 2>/dev/null; then
    kill -KILL "$node_pid" 2>/dev/null || true
    wait "$node_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; [[ -f $work/node.log ]] && tail -20 "$work/node.log" >&2; exit 1; }

# 1. Build the package (the binaries are built by ctest's fixture dependencies / the build).
cpack --config "$build/CPackConfig.cmake" -G DEB -B "$work/out" >"$work/cpack.log" 2>&1 ||
  { cat "$work/cpack.log"; fail "cpack"; }
deb=$(ls "$work"/out/trialmesh_*.deb)
echo "built $(basename "$deb")"

# 2. Layout, metadata, conffiles, maintainer scripts.
root=$work/root
dpkg-deb -x "$deb" "$root"
dpkg-deb -e "$deb" "$work/control"
for f in usr/bin/trialmesh usr/bin/trialmesh-node lib/systemd/system/trialmesh-node.service \
         usr/lib/sysusers.d/trialmesh.conf usr/lib/tmpfiles.d/trialmesh.conf etc/trialmesh/node.toml \
         usr/share/man/man1/trialmesh.1.gz usr/share/man/man8/trialmesh-node.8.gz \
         usr/share/bash-completion/completions/trialmesh \
         usr/share/bash-completion/completions/trialmesh-node \
         usr/share/doc/trialmesh/copyright usr/share/doc/trialmesh/changelog.Debian.gz \
         usr/share/doc/trialmesh/deployment.md usr/share/doc/trialmesh/console.md \
         usr/share/trialmesh/console/index.html usr/share/trialmesh/console/console.js \
         usr/share/trialmesh/console/console.css usr/share/trialmesh/console/board.html \
         usr/share/trialmesh/console/board.js; do
  [[ -e $root/$f ]] || fail "missing /$f in the package"
done
[[ $(stat -c %a "$root/etc/trialmesh/node.toml") == 640 ]] || fail "node.toml is not 0640"
grep -qx /etc/trialmesh/node.toml "$work/control/conffiles" || fail "node.toml is not a conffile"
dpkg-deb -f "$deb" Depends | grep -q librocksdb || fail "Depends lacks the shared libraries"
# --plot draws with cairo: dpkg-shlibdeps (CPACK_DEBIAN_PACKAGE_SHLIBDEPS) adds libcairo2.
dpkg-deb -f "$deb" Depends | grep -q libcairo2 || fail "Depends lacks libcairo2 (--plot)"
dpkg-deb -f "$deb" Depends | grep -q libjs-chart.js || fail "Depends lacks libjs-chart.js (console)"
for s in postinst prerm postrm; do sh -n "$work/control/$s" || fail "$s: syntax"; done
grep -q 'Left in place' "$work/control/postrm" || fail "purge does not say what it leaves"
unit=$root/lib/systemd/system/trialmesh-node.service
for d in Type=notify WatchdogSec= 'ExecReload=/bin/kill -HUP $MAINPID' User=trialmesh UMask=0077 \
         ProtectSystem=strict ReadWritePaths=/var/lib/trialmesh NoNewPrivileges=yes \
         PrivateTmp=yes 'CapabilityBoundingSet=$' 'ExecStart=/usr/bin/trialmesh-node --config /etc/trialmesh/node.toml'; do
  grep -q "^$d" "$unit" || fail "unit lacks $d"
done
grep -q '^u trialmesh ' "$root/usr/lib/sysusers.d/trialmesh.conf" || fail "sysusers entry"
grep -q '^d /var/lib/trialmesh 0700 trialmesh trialmesh' "$root/usr/lib/tmpfiles.d/trialmesh.conf" ||
  fail "tmpfiles entry"
zcat "$root/usr/share/man/man8/trialmesh-node.8.gz" | grep -q SIGHUP || fail "man page"
bash -n "$root/usr/share/bash-completion/completions/trialmesh" || fail "completion syntax"

# 3. systemd-analyze verify, when available. The binary is looked up on this machine, so the
# unit is checked with its ExecStart pointing into the extracted root (nothing else changes).
if command -v systemd-analyze >/dev/null; then
  sed "s#/usr/bin/trialmesh-node#$root/usr/bin/trialmesh-node#" "$unit" >"$work/trialmesh-node.service"
  systemd-analyze verify --man=no "$work/trialmesh-node.service" || fail "systemd-analyze verify"
  echo "systemd-analyze verify: ok"
else
  echo "systemd-analyze not installed: unit verification skipped"
fi

# lintian, when installed: no error or warning (each deliberate exception is an override with
# its reason in packaging/lintian-overrides).
if command -v lintian >/dev/null; then
  lintian --fail-on error,warning --allow-root "$deb" || fail "lintian"
  echo "lintian: ok"
fi

# 4. Run the extracted binaries with the packaged layout (paths prefixed by $root).
bin=$root/usr/bin
etc=$root/etc/trialmesh
store=$root/var/lib/trialmesh/store
"$bin/trialmesh" --version >/dev/null
"$bin/trialmesh-node" --version | grep -q trialmesh-node
umask 077
cp "$etc/node.toml" "$work/node.toml.packaged"
echo "correct horse battery staple" >"$etc/passphrase"
"$bin/trialmesh" keygen --out "$etc/site.key" --passphrase-file "$etc/passphrase" >"$work/site.pub"
"$bin/trialmesh" keygen --out "$work/coordinator.key" >"$work/coordinator.pub"
site_key=$(tail -1 "$work/site.pub")
coord_key=$(tail -1 "$work/coordinator.pub")
"$bin/trialmesh" gen --rows 200 --sites 1 --out "$work/data" >/dev/null
mkdir -p "$root/var/lib/trialmesh"
umask 022
"$bin/trialmesh" import --store "$store" --dataset lung7 --dictionary "$work/data/dictionary.toml" \
  "$work/data/trial.csv" >/dev/null
# Patient data hygiene: the store directory 0700 and its files 0600, even from a lax umask.
[[ $(stat -c %a "$store") == 700 ]] || fail "store directory is not 0700"
[[ -z $(find "$store" -type f -perm /077) ]] || fail "store files readable by group/others"
umask 077

start_node() {
  local port=$1
  cat >"$etc/members.toml" <<TOML
federation = "packaging-test"

[[member]]
name = "site-a"
role = "site"
public_key = "$site_key"
address = "127.0.0.1:$port"

[[member]]
name = "alice"
role = "coordinator"
public_key = "$coord_key"
TOML
  # The packaged node.toml, edited as docs/deployment.md tells site IT to.
  sed -e '0,/^name = "CHANGE-ME"/s//name = "site-a"/' -e 's/^study = "CHANGE-ME"/study = "LUNG-7"/' \
      -e 's/^name = "CHANGE-ME"/name = "lung7"/' \
      -e "s#^listen = .*#listen = \"127.0.0.1:$port\"#" \
      -e "s#^ops_listen = .*#ops_listen = \"127.0.0.1:$((port + 1))\"#" \
      -e "s#/var/lib/trialmesh/store#$store#" -e "s#/run/trialmesh/admin.sock#$work/admin.sock#" \
      "$work/node.toml.packaged" \
      >"$work/node.toml.new"
  mv "$work/node.toml.new" "$etc/node.toml"
  "$bin/trialmesh-node" --check-config "$etc/node.toml" | grep -q OK || fail "--check-config"
  "$bin/trialmesh-node" --config "$etc/node.toml" 2>"$work/node.log" &
  node_pid=$!
  for _ in $(seq 1 150); do
    grep -q node_ready "$work/node.log" && return 0
    kill -0 "$node_pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
started=""
for _ in 1 2 3 4 5; do  # a random loopback port; another one if it is taken
  port=$((20000 + RANDOM % 30000))
  if start_node "$port"; then started=1; break; fi
  wait "$node_pid" 2>/dev/null || true
  node_pid=""
done
[[ -n $started ]] || fail "the node did not start"
echo "node started on 127.0.0.1:$port"

# /healthz over the ops port (bash's /dev/tcp: no curl needed).
exec 3<>"/dev/tcp/127.0.0.1/$((port + 1))"
printf 'GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3
grep -q '"status":"ok"' <&3 || fail "/healthz"
exec 3>&-

wait_log() {
  for _ in $(seq 1 100); do grep -q "$1" "$work/node.log" && return 0; sleep 0.05; done
  fail "no $1 in the log"
}
# systemctl reload = SIGHUP: a good file is taken, a broken one refused while the node serves.
echo "# reloaded" >>"$etc/members.toml"
kill -HUP "$node_pid"
wait_log reload_done
cp "$etc/members.toml" "$work/members.good"
echo '[[member]' >>"$etc/members.toml"
kill -HUP "$node_pid"
wait_log reload_refused
kill -0 "$node_pid" || fail "the node died on a broken members file"
"$bin/trialmesh-node" --check-config "$etc/node.toml" >/dev/null 2>&1 &&
  fail "--check-config accepted a broken members file"
cp "$work/members.good" "$etc/members.toml"

kill -TERM "$node_pid"
status=0
wait "$node_pid" || status=$?
node_pid=""
[[ $status -eq 0 ]] || fail "node exit status $status after SIGTERM"
grep -q shutdown_complete "$work/node.log" || fail "no shutdown_complete"
echo "PASS"
