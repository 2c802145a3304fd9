// The site node daemon: serves the Site capability (protocol/trialmesh.capnp) to
// authenticated federation members and answers their signed queries from the local store.
//
// Runtime: one KJ event loop thread owns every connection and Cap'n Proto object; scans run on
// a Boost.Asio thread pool and hand results back through cross-thread fulfillers, so a long
// scan never stalls other RPCs. An ops HTTP endpoint (/healthz, /metrics; node/ops) runs on its
// own thread. Every refused connection, failed frame and query is logged (spdlog).
//
// Shutdown: SIGTERM or SIGINT stops accepting, fails queries still in flight with
// "Unavailable: site is shutting down", lets the answers go out, waits for running scans to
// finish, and returns 0. SIGHUP (`systemctl reload`) re-reads the members file; a bad file is
// refused with the reason logged and the node keeps its previous members.
//
// systemd: with $NOTIFY_SOCKET set the node sends READY=1 once it listens, RELOADING=1 /
// READY=1 around a reload, STOPPING=1 at shutdown, and WATCHDOG=1 from its event loop every
// WatchdogSec/2 (node/ops/sd_notify.h).
#pragma once

#include "node/config.h"

namespace trialmesh::node {

// Runs the node described by `config` until SIGTERM/SIGINT. Returns the process exit status:
// 0 after a clean shutdown, 1 when it cannot start (the reason is logged and printed to stderr:
// bad identity, members file, store, dataset, or listen address).
// REQUIRES: called on the main thread before any other thread exists (signals are captured
// process-wide and must be blocked in every thread the node starts).
int runSiteNode(const NodeConfig& config);

}  // namespace trialmesh::node
