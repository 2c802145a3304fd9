// The survival figures of a trial report that derive from a Kaplan–Meier curve, as R's survival
// package prints them: survival at chosen times (summary(survfit, times = ...)), the restricted
// mean survival time with its standard error (print(survfit, rmean = tau), survival:::survmean)
// and the stratified log-rank test (survdiff(Surv ~ group + strata(s))). All come from the
// merged per-time event and censoring counts, so no site releases anything new; see
// docs/statistics.md.
//
// Thread-safety: plain values and pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "stats/km.h"

namespace trialmesh::stats {

// One row of summary(survfit, times = ...). NaN = NA.
struct SurvivalAtTime {
  double time = 0;
  uint64_t nRisk = 0;   // at risk just before `time` (0 past the last follow-up)
  uint64_t nEvent = 0;  // events after the previous requested time, up to and including `time`
  double survival = 1;
  double stdErr = 0;  // of S (Greenwood), as summary.survfit prints
  double lower = 1;
  double upper = 1;
};

struct RestrictedMean {
  double tau = 0;     // the upper limit of integration
  double rmean = 0;   // area under the curve from min(0, first time) to tau
  double stdErr = 0;  // survmean's se(rmean)
};

// What a km query with times = [...] or rmean = ... adds to one curve.
struct SurvivalReport {
  std::vector<SurvivalAtTime> atTimes;
  std::optional<RestrictedMean> rmean;
};

// summary.survfit(fit, times) for one curve (extend = FALSE: times after the curve's last time
// are dropped). `times` ascending; `start` is survfit0's start, min(0, smallest time of all
// curves of the fit). An empty curve gives no rows.
std::vector<SurvivalAtTime> survivalAtTimes(const KmCurve& curve, const std::vector<double>& times,
                                            double start);

// survmean's restricted mean and its standard error, integrating from `start` (as above) to
// `tau`; the curve is extended flat beyond its last time. Variance: sum over event times t_i of
// A_i^2 d_i / (n_i (n_i - d_i)), A_i the area from t_i to tau (0 when n_i = d_i), as R.
RestrictedMean restrictedMean(const KmCurve& curve, double tau, double start);

// survdiff(rho = 0) with strata: observed, expected and the variance of O - E summed over
// strata, each stratum's risk sets on their own. strata[s][g] is group g within stratum s (same
// names and order in every stratum; a group absent from a stratum has no points). The groups of
// the result are named after strata[0]. Errors: InvalidArgument for fewer than two groups,
// mismatched strata or malformed points, or a singular variance.
Result<LogRankTest> stratifiedLogRank(const std::vector<std::vector<SurvivalGroup>>& strata);

// Text in R's layout: summary(fit, times = ...) per curve, after "Call: <call>" when given.
// Curves without rows are left out, as survfit drops an empty group.
std::string formatSurvivalAtTimes(const std::vector<KmCurve>& curves,
                                  const std::vector<SurvivalReport>& reports,
                                  const std::string& call = "");
// print(fit, rmean = tau): n, events, rmean*, se(rmean), median and its limits per curve, and
// the footnote naming the upper limit.
std::string formatKmTableWithRmean(const std::vector<KmCurve>& curves,
                                   const std::vector<SurvivalReport>& reports,
                                   const std::string& call = "");

}  // namespace trialmesh::stats
