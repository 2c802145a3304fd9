// Kaplan–Meier curves with Greenwood standard errors and log-transformed confidence
// intervals, median survival with its interval, and the log-rank test — all from merged
// per-group (time, events, censored) counts, which are additive over sites. Conventions follow
// R's survival package (survfit conf.type = "log", the median of print.survfit, survdiff
// rho = 0); see docs/statistics.md.
//
// Missing values and time binning happen upstream (the query layer decides which rows count
// and may coarsen times); this file sees only the counts.
//
// Thread-safety: plain values and pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace trialmesh::stats {

// One distinct time of one group (as query/partial.h's KmPoint).
struct SurvivalPoint {
  double time = 0;
  uint64_t events = 0;
  uint64_t censored = 0;
  bool operator==(const SurvivalPoint&) const = default;
};

// One row of the curve: every distinct time of the group, as survfit stores it. NaN = NA.
struct KmRow {
  double time = 0;
  uint64_t nRisk = 0;
  uint64_t nEvent = 0;
  uint64_t nCensor = 0;
  double survival = 1;
  double stdErr = 0;  // standard error of survival (Greenwood), as summary.survfit prints
  double lower = 1;   // confidence limits, log transform; NA once survival reaches 0
  double upper = 1;
};

struct KmCurve {
  std::string name;
  uint64_t n = 0;
  uint64_t events = 0;
  std::vector<KmRow> rows;
  double confLevel = 0.95;
  // print.survfit's median and its limits (from the lower / upper curves); NaN (NA) when the
  // curve never reaches 0.5.
  double median = 0;
  double medianLower = 0;
  double medianUpper = 0;
};

// Errors: InvalidArgument when times are not finite or not strictly ascending, or confLevel
// is not in (0, 1).
Result<KmCurve> kaplanMeier(const std::string& name, const std::vector<SurvivalPoint>& points,
                            double confLevel = 0.95);

struct SurvivalGroup {
  std::string name;
  std::vector<SurvivalPoint> points;
};

struct LogRankGroup {
  std::string name;
  uint64_t n = 0;
  double observed = 0;
  double expected = 0;
  double variance = 0;  // diagonal of the variance matrix of O - E
};

struct LogRankTest {
  std::vector<LogRankGroup> groups;
  double chiSquare = 0;
  double df = 0;  // groups with expected > 0, minus 1
  double pValue = 1;
  std::vector<double> variance;  // G*G row-major
};

// survdiff(rho = 0). Errors: InvalidArgument for fewer than two groups or malformed points.
Result<LogRankTest> logRank(const std::vector<SurvivalGroup>& groups);

}  // namespace trialmesh::stats
