// Internal to stats/: the two halves of survdiff's log-rank test that the plain test (km.cc)
// and the stratified one (survival_summary.cc) share.
#pragma once

#include <string>
#include <vector>

#include "common/status.h"
#include "stats/km.h"

namespace trialmesh::stats::detail {

// Adds one stratum's risk sets to test.groups[i].expected and test.variance (g x g, row-major):
// a sweep over `times` (sorted, distinct: every time of `groups`), with atRisk[i] starting at
// group i's number of subjects. REQUIRES: each group's points strictly ascending in time.
void addLogRankStratum(const std::vector<SurvivalGroup>& groups, std::vector<double> atRisk,
                       const std::vector<double>& times, LogRankTest& test);

// survdiff's statistic from the summed expected counts and variance: groups with nothing
// expected drop out, the first remaining one is the reference, df = groups kept - 1.
// `singular` is the error context when the variance cannot be inverted.
Result<LogRankTest> finishLogRank(LogRankTest test, const std::string& singular);

}  // namespace trialmesh::stats::detail
