// The approval's bound on how often a surveillance series may be evaluated (issue #15 item 3,
// `surveillance_min_interval_ms`, docs/ethics.md): a site refuses an evaluation of the same
// series by the same coordinator that comes sooner than the approval allows.
//
// A surveillance series is a count grouped by a calendar bin of a date (`by week(onset_date)`,
// also day/month): what `surveil(...)` and standing queries (`trialmesh watch`) ask the sites.
// "The same series" is the same canonical query text from the same coordinator key, in the
// same secure-aggregation participant list: a secure round re-run without a site that dropped
// out has another list, so the re-run of one evaluation is not refused as a second evaluation.
//
// The last evaluation times live in memory (a site restart forgets them: the bound then holds
// again from the first evaluation after the restart).
// Thread-safety: not synchronised; the site uses it from its event-loop thread only.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>

#include "common/status.h"
#include "ethics/approval.h"
#include "query/query.h"

namespace trialmesh::node {

class SurveillancePace {
 public:
  using Clock = std::chrono::steady_clock;

  // True when `q` counts by a day, week or month of a date.
  static bool isSeries(const query::Query& q);

  // OK when `grant` sets no interval, `q` is not a series, or the last admitted evaluation of
  // `seriesKey` (coordinator key, participants and canonical query text; see above) is at least
  // the interval old; then records `now` for it. PermissionDenied naming the approval, the
  // interval and the wait otherwise (nothing recorded).
  Status admit(const query::Query& q, const std::string& seriesKey, const std::string& queryText,
               const ethics::Grant& grant, Clock::time_point now);

  size_t tracked() const { return last_.size(); }

 private:
  struct Last {
    Clock::time_point at;
    std::chrono::milliseconds interval;
  };
  // Drops series whose interval has passed (they no longer constrain anything), so the table
  // stays as small as the series evaluated within their intervals.
  void prune(Clock::time_point now);

  std::map<std::string, Last> last_;
};

}  // namespace trialmesh::node
