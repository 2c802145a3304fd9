#include "node/refusal_audit.h"

#include <algorithm>
#include <chrono>

#include "node/handshake_budget.h"
#include "node/ops/logging.h"

namespace trialmesh::node {
namespace {

constexpr const char* kUnauthenticated = "unauthenticated";
constexpr size_t kSourcesNamed = 5;  // in a summary's text; the rest are "N other sources"

// Who a summary names: a member by name; an unauthenticated peer by its host (a flood from one
// address is one source however many ports it uses).
std::string sourceOf(const ethics::RefusalEvent& r) {
  if (r.peer == kUnauthenticated)
    return std::string(kUnauthenticated) + " " + hostOfAddress(r.remote);
  return r.peer;
}

std::string plural(uint64_t n, const char* one, const char* many) {
  return std::to_string(n) + " " + (n == 1 ? one : many);
}

}  // namespace

ethics::RefusalEvent RefusalRateLimiter::summary(const std::string& reasonClass,
                                                 const Window& w) const {
  std::vector<std::pair<std::string, uint64_t>> bySource(w.sources.begin(), w.sources.end());
  std::stable_sort(bySource.begin(), bySource.end(),
                   [](const auto& a, const auto& b) { return a.second > b.second; });
  std::string from;
  uint64_t others = w.otherSources;
  for (size_t i = 0; i < bySource.size(); ++i) {
    if (i >= kSourcesNamed) {
      others += bySource[i].second;
      continue;
    }
    if (!from.empty()) from += ", ";
    from += bySource[i].first + " (" + std::to_string(bySource[i].second) + ")";
  }
  if (others > 0) from += ", other sources (" + std::to_string(others) + ")";
  ethics::RefusalEvent e;
  e.reasonClass = reasonClass;
  const bool oneSource = w.sources.size() == 1 && w.otherSources == 0;
  e.peer = oneSource ? w.lastPeer : "several";
  e.remote = oneSource ? w.lastRemote : "several";
  e.summarised = w.counted;
  e.message = plural(w.counted, "further refusal", "further refusals") + " of class " +
              reasonClass + " only counted, not written one by one (at most " +
              std::to_string(perWindow_) + " per " + std::to_string(windowMs_ / 1000) +
              " s window, limits.audit_refusals_per_minute), from " + from;
  return e;
}

std::vector<ethics::RefusalEvent> RefusalRateLimiter::admit(const ethics::RefusalEvent& refusal,
                                                            int64_t nowMs) {
  std::vector<ethics::RefusalEvent> out;
  auto it = windows_.find(refusal.reasonClass);
  if (it != windows_.end() && nowMs - it->second.startMs >= windowMs_) {
    if (it->second.counted > 0) out.push_back(summary(it->first, it->second));
    windows_.erase(it);
    it = windows_.end();
  }
  if (it == windows_.end()) {
    it = windows_.emplace(refusal.reasonClass, Window{}).first;
    it->second.startMs = nowMs;
  }
  Window& w = it->second;
  if (w.written < perWindow_) {
    ++w.written;
    out.push_back(refusal);
    out.back().summarised = 0;
    return out;
  }
  ++w.counted;
  w.lastPeer = refusal.peer;
  w.lastRemote = refusal.remote;
  const std::string source = sourceOf(refusal);
  auto s = w.sources.find(source);
  if (s != w.sources.end()) {
    ++s->second;
  } else if (w.sources.size() < kMaxSources) {
    w.sources.emplace(source, 1);
  } else {
    ++w.otherSources;
  }
  return out;
}

std::vector<ethics::RefusalEvent> RefusalRateLimiter::expire(int64_t nowMs) {
  std::vector<ethics::RefusalEvent> out;
  for (auto it = windows_.begin(); it != windows_.end();) {
    if (nowMs - it->second.startMs < windowMs_) {
      ++it;
      continue;
    }
    if (it->second.counted > 0) out.push_back(summary(it->first, it->second));
    it = windows_.erase(it);
  }
  return out;
}

std::vector<ethics::RefusalEvent> RefusalRateLimiter::drain() {
  std::vector<ethics::RefusalEvent> out;
  for (const auto& [reasonClass, w] : windows_) {
    if (w.counted > 0) out.push_back(summary(reasonClass, w));
  }
  windows_.clear();
  return out;
}

RefusalAuditor::RefusalAuditor(ethics::AuditLog* log, ops::NodeMetrics& metrics, uint32_t perWindow,
                               std::function<int64_t()> clockMs, int64_t windowMs)
    : log_(log), metrics_(metrics), clockMs_(std::move(clockMs)), limiter_(perWindow, windowMs) {
  if (!clockMs_) {
    clockMs_ = [] {
      return std::chrono::duration_cast<std::chrono::milliseconds>(
                 std::chrono::steady_clock::now().time_since_epoch())
          .count();
    };
  }
}

void RefusalAuditor::record(ops::RefusalClass reasonClass, const std::string& peer,
                            const std::string& remote, const std::string& message) {
  metrics_.refusals(reasonClass).inc();
  ethics::RefusalEvent e;
  e.reasonClass = ops::refusalClassLabel(reasonClass);
  e.peer = peer.empty() ? kUnauthenticated : peer;
  e.remote = remote;
  e.message = message;
  auto entries = limiter_.admit(e, clockMs_());
  const bool written =
      std::any_of(entries.begin(), entries.end(), [](const auto& x) { return x.summarised == 0; });
  if (!written) metrics_.refusalsSummarised(reasonClass).inc();
  write(entries);
}

void RefusalAuditor::expire() { write(limiter_.expire(clockMs_())); }

void RefusalAuditor::drain() { write(limiter_.drain()); }

void RefusalAuditor::write(const std::vector<ethics::RefusalEvent>& entries) {
  if (log_ == nullptr) return;
  for (const ethics::RefusalEvent& e : entries) {
    auto appended = log_->append(ethics::EntryKind::kRefusal, e);
    if (!appended) {
      ops::logEvent(
          spdlog::level::err, "refusal_not_audited",
          {{"class", e.reasonClass}, {"peer", e.peer}, {"detail", appended.status().toString()}});
    }
  }
}

}  // namespace trialmesh::node
