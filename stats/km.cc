#include "stats/km.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "stats/distributions.h"
#include "stats/linalg.h"
#include "stats/log_rank_sums.h"

namespace trialmesh::stats {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

Status checkPoints(const std::string& name, const std::vector<SurvivalPoint>& points) {
  for (size_t i = 0; i < points.size(); ++i) {
    if (!std::isfinite(points[i].time)) {
      return Status::invalidArgument("survival group '" + name + "': time at position " +
                                     std::to_string(i + 1) + " is not finite");
    }
    if (i > 0 && !(points[i].time > points[i - 1].time)) {
      return Status::invalidArgument("survival group '" + name + "': times must be strictly " +
                                     "ascending, but " + std::to_string(points[i].time) +
                                     " follows " + std::to_string(points[i - 1].time));
    }
  }
  return Status::ok();
}

// The median convention of print.survfit (survival:::survmean's minmin): the first time the
// curve is at or below 0.5 (within sqrt(eps)); when it sits exactly at 0.5 there and drops
// below later, the midpoint between that time and the time of the drop. (quantile.survfit
// differs only when the curve ends at exactly 0.5: it then averages with the last time.)
double medianTime(const std::vector<KmRow>& rows, double KmRow::*curve) {
  const double tol = std::sqrt(std::numeric_limits<double>::epsilon());
  std::vector<const KmRow*> keep;
  for (const KmRow& r : rows) {
    const double y = r.*curve;
    if (!std::isnan(y) && y < 0.5 + tol) keep.push_back(&r);
  }
  if (keep.empty()) return kNaN;
  const double y1 = keep[0]->*curve;
  if (std::fabs(y1 - 0.5) < tol) {
    for (const KmRow* r : keep) {
      if (r->*curve < y1) return 0.5 * (keep[0]->time + r->time);
    }
  }
  return keep[0]->time;
}

}  // namespace

Result<KmCurve> kaplanMeier(const std::string& name, const std::vector<SurvivalPoint>& points,
                            double confLevel) {
  TM_RETURN_IF_ERROR(checkPoints(name, points));
  if (!(confLevel > 0 && confLevel < 1)) {
    return Status::invalidArgument("confidence level must be in (0, 1), got " +
                                   std::to_string(confLevel));
  }
  KmCurve curve;
  curve.name = name;
  curve.confLevel = confLevel;
  for (const SurvivalPoint& pt : points) {
    curve.n += pt.events + pt.censored;
    curve.events += pt.events;
  }
  const double z = detail::normalQuantile(1 - (1 - confLevel) / 2);
  uint64_t atRisk = curve.n;
  double s = 1.0;
  double greenwood = 0.0;  // sum d / (n (n - d)): the variance of log S (and of the cum. hazard)
  for (const SurvivalPoint& pt : points) {
    KmRow row;
    row.time = pt.time;
    row.nRisk = atRisk;
    row.nEvent = pt.events;
    row.nCensor = pt.censored;
    if (pt.events > 0) {
      const double n = static_cast<double>(atRisk);
      const double d = static_cast<double>(pt.events);
      s *= 1 - d / n;
      greenwood += atRisk > pt.events ? d / (n * (n - d)) : std::numeric_limits<double>::infinity();
    }
    const double seLog = std::sqrt(greenwood);
    row.survival = s;
    row.stdErr = s * seLog;
    if (s > 0) {
      row.lower = std::exp(std::log(s) - z * seLog);
      row.upper = std::min(std::exp(std::log(s) + z * seLog), 1.0);
    } else {
      row.lower = row.upper = kNaN;  // survfit: log(0) gives NA limits
    }
    curve.rows.push_back(row);
    atRisk -= pt.events + pt.censored;
  }
  curve.median = medianTime(curve.rows, &KmRow::survival);
  curve.medianLower = medianTime(curve.rows, &KmRow::lower);
  curve.medianUpper = medianTime(curve.rows, &KmRow::upper);
  return curve;
}

Result<LogRankTest> logRank(const std::vector<SurvivalGroup>& groups) {
  const size_t g = groups.size();
  if (g < 2) {
    return Status::invalidArgument("the log-rank test needs at least two groups, got " +
                                   std::to_string(g));
  }
  LogRankTest test;
  test.variance.assign(g * g, 0.0);
  std::vector<double> times;
  std::vector<double> atRisk(g, 0.0);
  for (size_t i = 0; i < g; ++i) {
    TM_RETURN_IF_ERROR(checkPoints(groups[i].name, groups[i].points));
    LogRankGroup lg;
    lg.name = groups[i].name;
    for (const SurvivalPoint& pt : groups[i].points) {
      lg.n += pt.events + pt.censored;
      lg.observed += static_cast<double>(pt.events);
      times.push_back(pt.time);
    }
    atRisk[i] = static_cast<double>(lg.n);
    test.groups.push_back(std::move(lg));
  }
  std::sort(times.begin(), times.end());
  times.erase(std::unique(times.begin(), times.end()), times.end());
  detail::addLogRankStratum(groups, std::move(atRisk), times, test);
  return detail::finishLogRank(std::move(test),
                               "log-rank test: the variance of observed - expected is singular "
                               "(a group is never at risk with the others)");
}

void detail::addLogRankStratum(const std::vector<SurvivalGroup>& groups, std::vector<double> atRisk,
                               const std::vector<double>& times, LogRankTest& test) {
  const size_t g = groups.size();
  std::vector<size_t> cursor(g, 0);
  std::vector<double> deaths(g), leaving(g);
  for (double t : times) {
    double nk = 0, dk = 0;
    for (size_t i = 0; i < g; ++i) {
      deaths[i] = leaving[i] = 0;
      const auto& pts = groups[i].points;
      if (cursor[i] < pts.size() && pts[cursor[i]].time == t) {
        deaths[i] = static_cast<double>(pts[cursor[i]].events);
        leaving[i] = deaths[i] + static_cast<double>(pts[cursor[i]].censored);
        ++cursor[i];
      }
      nk += atRisk[i];
      dk += deaths[i];
    }
    if (dk > 0) {
      for (size_t i = 0; i < g; ++i) test.groups[i].expected += dk * atRisk[i] / nk;
      if (nk > 1) {
        const double c = dk * (nk - dk) / (nk * (nk - 1));
        for (size_t i = 0; i < g; ++i) {
          for (size_t j = 0; j < g; ++j) {
            test.variance[i * g + j] += c * atRisk[i] * ((i == j ? 1.0 : 0.0) - atRisk[j] / nk);
          }
        }
      }
    }
    for (size_t i = 0; i < g; ++i) atRisk[i] -= leaving[i];
  }
}

Result<LogRankTest> detail::finishLogRank(LogRankTest test, const std::string& singular) {
  const size_t g = test.groups.size();
  std::vector<size_t> kept;
  for (size_t i = 0; i < g; ++i) {
    test.groups[i].variance = test.variance[i * g + i];
    if (test.groups[i].expected > 0) kept.push_back(i);
  }
  test.df = kept.empty() ? 0.0 : static_cast<double>(kept.size() - 1);
  if (kept.size() < 2) {
    test.chiSquare = 0;
    test.pValue = kNaN;
    return test;
  }
  const size_t q = kept.size() - 1;
  std::vector<double> vv(q * q), oe(q);
  std::vector<std::string> names(q);
  for (size_t a = 0; a < q; ++a) {
    const size_t i = kept[a + 1];
    oe[a] = test.groups[i].observed - test.groups[i].expected;
    names[a] = test.groups[i].name;
    for (size_t b = 0; b < q; ++b) vv[a * q + b] = test.variance[i * g + kept[b + 1]];
  }
  Result<SymmetricFactor> f = SymmetricFactor::factor(vv, q, names);
  if (!f.isOk()) return f.status().withContext(singular);
  test.chiSquare = f->inverseQuadraticForm(oe);
  test.pValue = detail::upperChiSquared(test.chiSquare, test.df);
  return test;
}

}  // namespace trialmesh::stats
