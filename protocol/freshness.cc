#include "protocol/freshness.h"

#include <chrono>
#include <string>

namespace trialmesh::protocol {

int64_t SystemClock::nowMs() const {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

const SystemClock& SystemClock::instance() {
  static const SystemClock clock;
  return clock;
}

ReplayGuard::ReplayGuard(const Clock& clock, FreshnessPolicy policy)
    : clock_(clock), policy_(policy), startedAtMs_(clock.nowMs()) {}

size_t ReplayGuard::rememberedNonces() const {
  std::lock_guard<std::mutex> lock(mu_);
  return nonces_.size();
}

void ReplayGuard::purgeExpired(int64_t nowMs) {
  auto end = byExpiry_.lower_bound(nowMs);
  for (auto it = byExpiry_.begin(); it != end; ++it) nonces_.erase(it->second);
  byExpiry_.erase(byExpiry_.begin(), end);
}

Status ReplayGuard::admit(const QueryRequestFields& r) {
  const int64_t now = clock_.nowMs();
  const std::string clocks = " (query issued at " + std::to_string(r.issuedAtMs) +
                             " ms, expires at " + std::to_string(r.expiresAtMs) +
                             " ms; site clock " + std::to_string(now) + " ms)";
  const int64_t lifetime = r.expiresAtMs - r.issuedAtMs;
  if (lifetime <= 0 || lifetime > policy_.maxQueryAgeMs) {
    return Status::permissionDenied("query lifetime " + std::to_string(lifetime) +
                                    " ms is outside 1.." + std::to_string(policy_.maxQueryAgeMs) +
                                    " ms (site limit max_query_age_ms)" + clocks);
  }
  if (now > r.expiresAtMs) {
    return Status::permissionDenied("query expired" + clocks +
                                    "; sign a new query, and check both clocks if this repeats");
  }
  if (r.issuedAtMs > now + policy_.clockSkewMs) {
    return Status::permissionDenied(
        "query issued in the future, beyond the allowed clock skew of " +
        std::to_string(policy_.clockSkewMs) + " ms" + clocks + "; check the coordinator's clock");
  }
  if (r.issuedAtMs < startedAtMs_ - policy_.clockSkewMs) {
    return Status::permissionDenied(
        "query issued before this site started at " + std::to_string(startedAtMs_) +
        " ms (replay protection across restarts)" + clocks + "; sign a new query");
  }
  std::lock_guard<std::mutex> lock(mu_);
  purgeExpired(now);
  if (nonces_.count(r.nonce) != 0) {
    return Status::permissionDenied("query nonce already used (replayed query)" + clocks);
  }
  if (nonces_.size() >= policy_.maxRememberedNonces) {
    return Status::resourceExhausted("site is tracking " + std::to_string(nonces_.size()) +
                                     " unexpired query nonces (limit); retry later");
  }
  nonces_.insert(r.nonce);
  byExpiry_.emplace(r.expiresAtMs, r.nonce);
  return Status::ok();
}

}  // namespace trialmesh::protocol
