// Freshness and replay rules a site applies to every signed query, and the clock they use.
//
// A query carries issuedAtMs, expiresAtMs (coordinator clock) and a random nonce. A site
// accepts it only if (docs/protocol.md, "Freshness and replay"):
//   1. expiresAtMs - issuedAtMs <= maxQueryAgeMs (a coordinator cannot mint long-lived queries);
//   2. now <= expiresAtMs (not expired) and issuedAtMs <= now + clockSkewMs (not from the future);
//   3. issuedAtMs >= startedAtMs - clockSkewMs: the nonce set lives in memory only, so after a
//      restart the site refuses everything issued before it started instead of persisting
//      nonces;
//   4. its nonce has not been accepted before. Nonces are remembered until their query expires
//      (after which rule 2 refuses a replay anyway), so memory is bounded by the query rate
//      times maxQueryAgeMs, and by maxRememberedNonces (ResourceExhausted beyond it).
//
// Thread-safety: Clock implementations are thread-safe. ReplayGuard is thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <set>
#include <vector>

#include "common/status.h"
#include "protocol/messages.h"

namespace trialmesh::protocol {

// Wall-clock milliseconds since the Unix epoch; injectable so tests control time.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual int64_t nowMs() const = 0;
};

// The system clock (std::chrono::system_clock).
class SystemClock final : public Clock {
 public:
  int64_t nowMs() const override;
  // A process-wide instance.
  static const SystemClock& instance();
};

// A clock tests set by hand.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(int64_t nowMs) : now_(nowMs) {}
  int64_t nowMs() const override { return now_.load(); }
  void set(int64_t nowMs) { now_.store(nowMs); }
  void advance(int64_t ms) { now_.fetch_add(ms); }

 private:
  std::atomic<int64_t> now_;
};

struct FreshnessPolicy {
  // Longest validity (expiresAtMs - issuedAtMs) a site accepts. Default 5 minutes
  // (node config limits.max_query_age_ms).
  int64_t maxQueryAgeMs = 5 * 60 * 1000;
  // Tolerated difference between coordinator and site clocks. Default 30 s.
  int64_t clockSkewMs = 30 * 1000;
  // Nonces remembered at most (default 1,000,000, about 100 MB).
  size_t maxRememberedNonces = 1'000'000;
};

class ReplayGuard {
 public:
  // REQUIRES: `clock` outlives the guard. The guard's start time is clock.nowMs() now.
  ReplayGuard(const Clock& clock, FreshnessPolicy policy);

  // Applies rules 1-4 to a request whose signature was already verified and records its
  // nonce on success. Errors: PermissionDenied with the rule and both clocks in the message
  // (expired, issued in the future, issued before the site started, lifetime too long,
  // nonce already used); ResourceExhausted when the nonce set is full.
  Status admit(const QueryRequestFields& request);

  int64_t startedAtMs() const { return startedAtMs_; }
  size_t rememberedNonces() const;

 private:
  void purgeExpired(int64_t nowMs);  // REQUIRES: mu_ held

  const Clock& clock_;
  const FreshnessPolicy policy_;
  const int64_t startedAtMs_;
  mutable std::mutex mu_;
  std::set<std::vector<uint8_t>> nonces_;
  std::multimap<int64_t, std::vector<uint8_t>> byExpiry_;
};

}  // namespace trialmesh::protocol
