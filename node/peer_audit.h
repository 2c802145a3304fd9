// Peer fork detection (issue #4, docs/ethics.md "Peer checks"): a site periodically fetches
// every other site's signed tree head and a consistency proof from the head it verified last,
// and checks them with ethics::checkPeerHead. A site whose log was rewritten, rolled back or
// forked since can no longer prove consistency; the checking site then appends an alert entry
// to its own audit log, logs an error line (event "peer_log_alert") and increments
// trialmesh_peer_log_alerts_total{peer="<name>"}.
//
// The last verified head of each peer is kept in `<stateDir>/<peer name>.sth` (the 146-byte
// ethics::encodeTreeHead form), written atomically, so the check survives restarts of both
// sides. At first contact (no stored head) a peer with a configured head ([ethics.peer_heads],
// e.g. from a board's report) must prove consistency with it, or an alert is raised; any
// other peer's first head is trusted (its signature and key are still checked) and logged as
// such (event "peer_head_pinned", trust "first use").
// An unreachable peer is logged as a warning, not an alert: it proves nothing about its log.
//
// Thread-safety: start()/stop() from one thread; checkOnce() runs on the auditor's own thread
// (or the caller's in tests) and uses only thread-safe collaborators (AuditLog, ops::Registry,
// spdlog). The referenced objects must outlive the PeerAuditor.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "common/status.h"
#include "crypto/identity.h"
#include "ethics/audit_log.h"
#include "ethics/head_pin.h"
#include "node/config.h"
#include "node/coordinator.h"
#include "node/ops/metrics.h"

namespace trialmesh::node {

struct PeerAuditOptions {
  std::chrono::milliseconds interval{60'000};  // [ethics] peer_check_interval_ms; 0 = never
  std::string stateDir;                        // where the last verified peer heads are kept
  std::chrono::milliseconds deadline{10'000};  // per peer fetch
  // [ethics.peer_heads]: heads known out of band, by peer name. A peer with one must prove at
  // first contact that its log extends it; a peer without one is trusted on first use, and
  // the node says so (event "peer_head_pinned", trust "first use").
  std::map<std::string, ethics::ExpectedHead> expectedHeads;
};

class PeerAuditor {
 public:
  // `members` returns the members table in force (it changes at a reload: a key rotation's
  // new key, docs/keys.md); called from the auditor's thread, so it must be thread-safe.
  using MembersSource = std::function<std::shared_ptr<const Members>()>;
  PeerAuditor(const crypto::Identity& identity, MembersSource members, std::string selfName,
              ethics::AuditLog& log, ops::Registry& registry, PeerAuditOptions options);
  ~PeerAuditor();  // stop()
  PeerAuditor(const PeerAuditor&) = delete;
  PeerAuditor& operator=(const PeerAuditor&) = delete;

  // Starts the background thread: the first round about one interval after start, then about
  // every interval (each wait is the interval times a random factor in [0.75, 1.25)). Does nothing
  // when the interval is 0. InvalidArgument if a configured head names no other site of the members
  // file; IOError if the state directory cannot be created.
  [[nodiscard]] Status start();
  // Stops and joins the thread (an in-flight fetch finishes first, bounded by the deadline).
  void stop();

  // One round over every peer site. Returns the number of alerts raised.
  int checkOnce();

 private:
  // Checks one peer; returns true if it raised an alert.
  bool checkPeer(const Member& peer, const Members& members);
  void raiseAlert(const Member& peer, const std::string& message);
  // First contact with a peer that has a configured head: its log must extend that head.
  Status checkConfiguredHead(const Member& peer, const ethics::ExpectedHead& expected,
                             const AuditHeadAndProof& fetched) const;
  // The peer's head is signed by another key than the pinned one: OK only if its log extends
  // the pinned head and records a signed rotation to the new key (ethics/key_rotation.h).
  Status followRotation(const Member& peer, const Members& members,
                        const ethics::SignedTreeHead& pinned,
                        const AuditHeadAndProof& fetched) const;
  std::string statePath(const std::string& peer) const;

  const crypto::Identity& identity_;
  MembersSource members_;
  std::string selfName_;
  ethics::AuditLog& log_;
  ops::Registry& registry_;
  PeerAuditOptions options_;
  // Per peer, the encoded head the last alert was raised against, so a persisting fork is
  // reported once, not every interval.
  std::map<std::string, std::string> lastAlert_;

  std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace trialmesh::node
