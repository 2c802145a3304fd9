#include "stats/survival_summary.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>
#include <string>

#include "stats/distributions.h"
#include "stats/format.h"
#include "stats/linalg.h"
#include "stats/log_rank_sums.h"

namespace trialmesh::stats {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

std::string pad(const std::string& s, size_t width) {
  return s.size() >= width ? s : std::string(width - s.size(), ' ') + s;
}

// A right-aligned table with row names on the left (R's print of a matrix).
std::string table(const std::vector<std::string>& rowNames, const std::vector<std::string>& headers,
                  const std::vector<std::vector<std::string>>& columns) {
  size_t nameWidth = 0;
  for (const auto& n : rowNames) nameWidth = std::max(nameWidth, n.size());
  std::vector<size_t> widths;
  for (size_t c = 0; c < headers.size(); ++c) {
    size_t w = headers[c].size();
    for (const auto& v : columns[c]) w = std::max(w, v.size());
    widths.push_back(w);
  }
  std::string out = std::string(nameWidth, ' ');
  for (size_t c = 0; c < headers.size(); ++c) out += " " + pad(headers[c], widths[c]);
  out += '\n';
  for (size_t r = 0; r < rowNames.size(); ++r) {
    out += rowNames[r] + std::string(nameWidth - rowNames[r].size(), ' ');
    for (size_t c = 0; c < headers.size(); ++c) out += " " + pad(columns[c][r], widths[c]);
    out += '\n';
  }
  return out;
}

}  // namespace

std::vector<SurvivalAtTime> survivalAtTimes(const KmCurve& curve, const std::vector<double>& times,
                                            double start) {
  std::vector<SurvivalAtTime> out;
  if (curve.rows.empty()) return out;
  // survfit0: the curve with a row at `start` (S = 1) unless its first time is `start`.
  std::vector<KmRow> rows;
  if (curve.rows.front().time != start) {
    KmRow first;
    first.time = start;
    first.nRisk = curve.rows.front().nRisk;
    rows.push_back(first);
  }
  rows.insert(rows.end(), curve.rows.begin(), curve.rows.end());
  uint64_t previous = 0;  // events up to the previous requested time
  for (double t : times) {
    if (!std::isfinite(t) || t > rows.back().time) continue;
    // index1: rows at or before t (findInterval); index2: the first row at or after t.
    size_t upTo = 0, cumulative = 0;
    uint64_t events = 0;
    while (upTo < rows.size() && rows[upTo].time <= t) events += rows[upTo++].nEvent;
    while (cumulative < rows.size() && rows[cumulative].time < t) ++cumulative;
    const KmRow& at = rows[upTo == 0 ? 0 : upTo - 1];
    SurvivalAtTime s;
    s.time = t;
    s.nRisk = cumulative < rows.size() ? rows[cumulative].nRisk : 0;
    s.nEvent = events - previous;
    previous = events;
    s.survival = at.survival;
    s.stdErr = at.stdErr;
    s.lower = at.lower;
    s.upper = at.upper;
    out.push_back(s);
  }
  return out;
}

RestrictedMean restrictedMean(const KmCurve& curve, double tau, double start) {
  RestrictedMean r;
  r.tau = tau;
  std::vector<double> time, surv, hh;
  for (const KmRow& row : curve.rows) {
    if (!(row.time <= tau)) break;
    time.push_back(row.time);
    surv.push_back(row.survival);
    const double n = static_cast<double>(row.nRisk), d = static_cast<double>(row.nEvent);
    hh.push_back(row.nRisk == row.nEvent ? 0.0 : d / (n * (n - d)));
  }
  time.push_back(tau);
  surv.push_back(surv.empty() ? 1.0 : surv.back());
  hh.push_back(0.0);
  // rectangles[i]: the area between time[i-1] (start for i = 0) and time[i], at the curve's
  // height before time[i].
  const size_t m = time.size();
  std::vector<double> rect(m);
  double previousTime = start;
  for (size_t i = 0; i < m; ++i) {
    rect[i] = (time[i] - previousTime) * (i == 0 ? 1.0 : surv[i - 1]);
    previousTime = time[i];
    r.rmean += rect[i];
  }
  r.rmean += start;
  // The area after each time (rectangles i+1..m-1), squared, times that time's Greenwood term.
  double after = 0, variance = 0;
  for (size_t i = m - 1; i-- > 0;) {
    after += rect[i + 1];
    variance += after * after * hh[i];
  }
  r.stdErr = std::sqrt(variance);
  return r;
}

Result<LogRankTest> stratifiedLogRank(const std::vector<std::vector<SurvivalGroup>>& strata) {
  if (strata.empty())
    return Status::invalidArgument("the stratified log-rank test needs a stratum");
  const size_t g = strata[0].size();
  if (g < 2) {
    return Status::invalidArgument("the log-rank test needs at least two groups, got " +
                                   std::to_string(g));
  }
  LogRankTest test;
  test.variance.assign(g * g, 0.0);
  for (size_t i = 0; i < g; ++i) test.groups.push_back({strata[0][i].name, 0, 0, 0, 0});
  for (const auto& groups : strata) {
    if (groups.size() != g)
      return Status::invalidArgument("every stratum of the log-rank test needs the same groups");
    // One stratum: the unstratified computation on its own risk sets. Single-stratum results
    // are added up, never the test statistic (a stratum alone may have a singular variance).
    std::vector<double> times, atRisk(g, 0.0);
    for (size_t i = 0; i < g; ++i) {
      const auto& pts = groups[i].points;
      for (size_t k = 0; k < pts.size(); ++k) {
        if (!std::isfinite(pts[k].time) || (k > 0 && !(pts[k].time > pts[k - 1].time)))
          return Status::invalidArgument("survival group '" + groups[i].name +
                                         "': times must be finite and strictly ascending");
        const double left = static_cast<double>(pts[k].events + pts[k].censored);
        atRisk[i] += left;
        test.groups[i].n += pts[k].events + pts[k].censored;
        test.groups[i].observed += static_cast<double>(pts[k].events);
        times.push_back(pts[k].time);
      }
    }
    std::sort(times.begin(), times.end());
    times.erase(std::unique(times.begin(), times.end()), times.end());
    detail::addLogRankStratum(groups, std::move(atRisk), times, test);
  }
  return detail::finishLogRank(
      std::move(test), "stratified log-rank test: the variance of observed - expected is singular");
}

std::string formatSurvivalAtTimes(const std::vector<KmCurve>& curves,
                                  const std::vector<SurvivalReport>& reports,
                                  const std::string& call) {
  std::ostringstream out;
  if (!call.empty()) out << "Call: " << call << "\n\n";
  for (size_t c = 0; c < curves.size() && c < reports.size(); ++c) {
    if (curves[c].rows.empty()) continue;
    std::vector<std::string> rowNames, risk, event;
    std::vector<double> times, surv, se, lo, hi;
    for (const SurvivalAtTime& r : reports[c].atTimes) {
      rowNames.emplace_back();
      times.push_back(r.time);
      risk.push_back(std::to_string(r.nRisk));
      event.push_back(std::to_string(r.nEvent));
      surv.push_back(r.survival);
      se.push_back(r.stdErr);
      lo.push_back(r.lower);
      hi.push_back(r.upper);
    }
    out << "                " << curves[c].name << " \n";
    if (times.empty()) {
      out << "(no requested time is within this curve's follow-up)\n\n";
      continue;
    }
    const int pct = static_cast<int>(std::lround(curves[c].confLevel * 100));
    const std::string ci = " " + std::to_string(pct) + "% CI";
    out << table(rowNames,
                 {"time", "n.risk", "n.event", "survival", "std.err", "lower" + ci, "upper" + ci},
                 {formatNumbers(times, 4), risk, event, formatNumbers(surv, 3),
                  formatNumbers(se, 3), formatNumbers(lo, 3), formatNumbers(hi, 3)})
        << '\n';
  }
  return out.str();
}

std::string formatKmTableWithRmean(const std::vector<KmCurve>& curves,
                                   const std::vector<SurvivalReport>& reports,
                                   const std::string& call) {
  std::ostringstream out;
  if (!call.empty()) out << "Call: " << call << "\n\n";
  std::vector<std::string> names, n, events;
  std::vector<double> rmean, se, med, lo, hi;
  double tau = kNaN;
  for (size_t c = 0; c < curves.size(); ++c) {
    const KmCurve& k = curves[c];
    names.push_back(k.name);
    n.push_back(std::to_string(k.n));
    events.push_back(std::to_string(k.events));
    const bool has = c < reports.size() && reports[c].rmean;
    rmean.push_back(has ? reports[c].rmean->rmean : kNaN);
    se.push_back(has ? reports[c].rmean->stdErr : kNaN);
    if (has) tau = reports[c].rmean->tau;
    med.push_back(k.median);
    lo.push_back(k.medianLower);
    hi.push_back(k.medianUpper);
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", curves.empty() ? 0.95 : curves[0].confLevel);
  const std::string lvl = buf;
  out << table(names, {"n", "events", "rmean*", "se(rmean)", "median", lvl + "LCL", lvl + "UCL"},
               {n, events, formatNumbers(rmean, 3), formatNumbers(se, 3), formatNumbers(med, 3),
                formatNumbers(lo, 3), formatNumbers(hi, 3)});
  out << "    * restricted mean with upper limit =  " << formatNumbers({tau}, 7)[0] << " \n";
  return out.str();
}

}  // namespace trialmesh::stats
