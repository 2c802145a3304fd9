#include "node/handshake_budget.h"

namespace trialmesh::node {

HandshakeBudget::Admission HandshakeBudget::admit(const std::string& host) {
  Admission a;
  if (pendingFrom(host) >= maxPerAddress_) {
    a.refusal = "too many unauthenticated connections from " + host +
                " (limits.max_unauthenticated_per_address = " + std::to_string(maxPerAddress_) +
                ")";
    return a;
  }
  if (byId_.size() >= maxPending_ && !byId_.empty()) {
    a.evict = byId_.begin()->first;
    release(*a.evict);
  }
  a.admitted = true;
  a.id = nextId_++;
  byId_.emplace(a.id, host);
  ++byHost_[host];
  return a;
}

void HandshakeBudget::release(uint64_t id) {
  auto it = byId_.find(id);
  if (it == byId_.end()) return;
  auto h = byHost_.find(it->second);
  if (h != byHost_.end() && --h->second == 0) byHost_.erase(h);
  byId_.erase(it);
}

size_t HandshakeBudget::pendingFrom(const std::string& host) const {
  auto it = byHost_.find(host);
  return it == byHost_.end() ? 0 : it->second;
}

std::string hostOfAddress(const std::string& address) {
  if (!address.empty() && address.front() == '[') {
    const auto close = address.find(']');
    return close == std::string::npos ? address : address.substr(1, close - 1);
  }
  const auto colon = address.rfind(':');
  return colon == std::string::npos ? address : address.substr(0, colon);
}

bool LogThrottle::shouldLog(int64_t nowMs, uint64_t& suppressed) {
  if (last_ && nowMs - *last_ < intervalMs_) {
    ++skipped_;
    return false;
  }
  last_ = nowMs;
  suppressed = skipped_;
  skipped_ = 0;
  return true;
}

}  // namespace trialmesh::node
