#include "node/surveillance_pace.h"

#include "query/time_group.h"

namespace trialmesh::node {

bool SurveillancePace::isSeries(const query::Query& q) {
  for (const std::string& b : q.by) {
    auto group = query::parseTimeGroup(b);
    if (group.isOk() && group->has_value()) return true;
  }
  return false;
}

Status SurveillancePace::admit(const query::Query& q, const std::string& seriesKey,
                               const std::string& queryText, const ethics::Grant& grant,
                               Clock::time_point now) {
  if (grant.surveillanceMinIntervalMs == 0 || !isSeries(q)) return Status::ok();
  const std::chrono::milliseconds interval(grant.surveillanceMinIntervalMs);
  auto it = last_.find(seriesKey);
  if (it != last_.end() && now - it->second.at < interval) {
    const auto ago = std::chrono::duration_cast<std::chrono::milliseconds>(now - it->second.at);
    return Status::permissionDenied(
        "approval " + grant.study + " v" + std::to_string(grant.protocolVersion) +
        " allows one evaluation of a surveillance series every " +
        std::to_string(interval.count()) +
        " ms (surveillance_min_interval_ms); this coordinator evaluated '" + queryText + "' " +
        std::to_string(ago.count()) + " ms ago: retry in " +
        std::to_string((interval - ago).count()) + " ms");
  }
  if (last_.size() >= 1024) prune(now);
  last_[seriesKey] = Last{now, interval};
  return Status::ok();
}

void SurveillancePace::prune(Clock::time_point now) {
  for (auto it = last_.begin(); it != last_.end();) {
    it = now - it->second.at >= it->second.interval ? last_.erase(it) : std::next(it);
  }
}

}  // namespace trialmesh::node
