// Audit of refusals before the ethics check (issue #12 item 6, docs/ethics.md "refusal").
//
// A site writes a query's ethics decision to its audit log; a request refused earlier (bad
// signature, replay, stale, malformed, not a coordinator of this federation, a limit, a failed
// handshake, an oversized message) is audited here as an ethics::EntryKind::kRefusal entry:
// who (the authenticated member, or "unauthenticated"), from where, the reason class and the
// error text, never the request body.
//
// Every refusal is fsynced before the answer leaves, so a flood must not be able to fill the
// disk or stall the event loop: per reason class at most `perWindow` refusals are written one
// by one in each window (limits.audit_refusals_per_minute, a minute by default); the rest are
// only counted and written as ONE summary entry ("1234 further refusals of class
// bad-signature in the last minute, from coordinator (1200), unauthenticated 127.0.0.2 (34)")
// when the window closes (expire(), called by a timer) or at the class's next refusal after
// it, or at node stop (drain()). Every refusal is counted in trialmesh_refusals_total{class}
// regardless of the limit, and those only summarised in trialmesh_refusals_summarised_total.
//
// RefusalRateLimiter is the pure bookkeeping (no I/O, clock passed in); RefusalAuditor binds
// it to the audit log, the metrics and a clock. Neither is thread-safe: the site's event loop
// owns them.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "ethics/audit_log.h"
#include "node/ops/metrics.h"

namespace trialmesh::node {

inline constexpr int64_t kRefusalWindowMs = 60'000;

class RefusalRateLimiter {
 public:
  // perWindow = 0: every refusal is only summarised. windowMs > 0.
  explicit RefusalRateLimiter(uint32_t perWindow, int64_t windowMs = kRefusalWindowMs)
      : perWindow_(perWindow), windowMs_(windowMs) {}

  // A refusal at nowMs (a monotonic clock). Returns the entries to write now, in order: the
  // summary of this class's previous window if it has closed with refusals only counted, then
  // `refusal` itself if it is among the first perWindow of its class's window. Returns nothing
  // when the refusal is only counted (for the next summary).
  std::vector<ethics::RefusalEvent> admit(const ethics::RefusalEvent& refusal, int64_t nowMs);
  // The summaries of every window closed by nowMs with refusals only counted; those windows end.
  std::vector<ethics::RefusalEvent> expire(int64_t nowMs);
  // The summaries of every window with refusals only counted, closed or not (node stop).
  std::vector<ethics::RefusalEvent> drain();

 private:
  struct Window {
    int64_t startMs = 0;
    uint32_t written = 0;
    uint64_t counted = 0;
    std::string lastPeer, lastRemote;
    // Counted refusals by source (member name, or "unauthenticated <host>"); at most
    // kMaxSources, the rest in `otherSources`, so a flood from many addresses stays bounded.
    std::map<std::string, uint64_t> sources;
    uint64_t otherSources = 0;
  };
  static constexpr size_t kMaxSources = 1000;
  ethics::RefusalEvent summary(const std::string& reasonClass, const Window& w) const;

  uint32_t perWindow_;
  int64_t windowMs_;
  std::map<std::string, Window> windows_;  // by reason class
};

class RefusalAuditor {
 public:
  // `log` may be null (no entries, metrics only). `clockMs`: monotonic milliseconds; defaults
  // to std::chrono::steady_clock. The log and metrics must outlive the auditor.
  RefusalAuditor(ethics::AuditLog* log, ops::NodeMetrics& metrics, uint32_t perWindow,
                 std::function<int64_t()> clockMs = {}, int64_t windowMs = kRefusalWindowMs);

  // Counts the refusal and writes what the limiter admits (synced, so it is durable before
  // the refusal is answered). `peer`: the authenticated member's name, or "unauthenticated".
  // A failed write is logged (event "refusal_not_audited"), never thrown: the refusal stands.
  void record(ops::RefusalClass reasonClass, const std::string& peer, const std::string& remote,
              const std::string& message);
  // Writes the summaries of the windows that have closed (a timer calls this every second).
  void expire();
  // Writes every pending summary (before the node-stop entry).
  void drain();

 private:
  void write(const std::vector<ethics::RefusalEvent>& entries);
  ethics::AuditLog* log_;
  ops::NodeMetrics& metrics_;
  std::function<int64_t()> clockMs_;
  RefusalRateLimiter limiter_;
};

}  // namespace trialmesh::node
