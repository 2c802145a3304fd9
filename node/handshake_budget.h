// Admission of connections that have not authenticated yet (issue #12 item 2: no lock-out
// without a key). Before the handshake a site cannot tell a coordinator from a flood, so
// unauthenticated connections get a budget of their own, separate from limits.max_connections
// (which counts authenticated members only):
//   - at most `maxPerAddress` handshakes in progress per source address: more from that address
//     are refused at once (a single host can only lock itself out);
//   - at most `maxPending` in total: a new one then evicts the OLDEST pending handshake (an
//     honest handshake completes in milliseconds, so the oldest is the likeliest idle socket),
//     so a flood from many addresses slows members down but cannot shut them out;
//   - each has limits.handshake_timeout_ms to complete (enforced by the caller).
// Pure bookkeeping, no I/O; not thread-safe (the site's event loop owns it).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

namespace trialmesh::node {

class HandshakeBudget {
 public:
  HandshakeBudget(uint32_t maxPending, uint32_t maxPerAddress)
      : maxPending_(maxPending), maxPerAddress_(maxPerAddress) {}

  struct Admission {
    bool admitted = false;
    uint64_t id = 0;                // when admitted: pass to release()
    std::optional<uint64_t> evict;  // when admitted: the pending handshake to end now
    std::string refusal;            // when refused: why (names the config key)
  };
  // `host` is the source address without its port.
  Admission admit(const std::string& host);
  // The handshake `id` ended (authenticated, failed, timed out or evicted). Idempotent.
  void release(uint64_t id);

  size_t pending() const { return byId_.size(); }
  size_t pendingFrom(const std::string& host) const;

 private:
  uint32_t maxPending_;
  uint32_t maxPerAddress_;
  uint64_t nextId_ = 1;
  std::map<uint64_t, std::string> byId_;  // id (admission order) -> host
  std::map<std::string, uint32_t> byHost_;
};

// "127.0.0.1:5123" -> "127.0.0.1", "[::1]:5123" -> "::1"; anything else unchanged.
std::string hostOfAddress(const std::string& address);

// At most one log line per `intervalMs` for a repeated event; the others are counted and
// reported with the next line ("N more suppressed"), so a flood cannot fill the disk.
class LogThrottle {
 public:
  explicit LogThrottle(int64_t intervalMs) : intervalMs_(intervalMs) {}
  // Whether to log now (nowMs: a monotonic clock); `suppressed` is how many were skipped since
  // the last line that was logged.
  bool shouldLog(int64_t nowMs, uint64_t& suppressed);

 private:
  int64_t intervalMs_;
  std::optional<int64_t> last_;
  uint64_t skipped_ = 0;
};

}  // namespace trialmesh::node
