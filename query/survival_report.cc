#include "query/survival_report.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "stats/format.h"
#include "stats/survival_summary.h"

namespace trialmesh::query {

Status addSurvivalReports(ResultTable& table, const std::vector<stats::KmCurve>& curves,
                          const Aggregate& km, const std::string& call) {
  if (km.survTimes.empty() && !km.rmean) return Status::ok();
  // survfit0's start and survmean's "common" limit are taken over every curve of the fit, as R
  // does for survfit(Surv ~ arm).
  bool any = false;
  double first = 0, last = 0;
  for (const stats::KmCurve& c : curves) {
    if (c.rows.empty()) continue;
    first = any ? std::min(first, c.rows.front().time) : c.rows.front().time;
    last = any ? std::max(last, c.rows.back().time) : c.rows.back().time;
    any = true;
  }
  table.reports.assign(curves.size(), {});
  table.reportTimes = km.survTimes;
  table.reportRmean = km.rmean.has_value();
  table.reportRmeanCommon = km.rmean && std::isinf(*km.rmean);
  if (!any) return Status::ok();
  const double start = std::min(0.0, first);
  double tau = 0;
  if (km.rmean) {
    tau = std::isinf(*km.rmean) ? last : *km.rmean;
    if (tau < first) {
      return Status::invalidArgument(
          fmt::format("km: rmean = {} is below the smallest survival time; choose a larger "
                      "upper limit (R: \"Truncation point for the mean is < smallest "
                      "survival\")",
                      *km.rmean));
    }
  }
  for (size_t c = 0; c < curves.size(); ++c) {
    if (curves[c].rows.empty()) continue;
    stats::SurvivalReport& r = table.reports[c];
    r.atTimes = stats::survivalAtTimes(curves[c], km.survTimes, start);
    if (km.rmean) r.rmean = stats::restrictedMean(curves[c], tau, start);
  }
  if (km.rmean) table.appendix = stats::formatKmTableWithRmean(curves, table.reports, call);
  if (!km.survTimes.empty())
    table.appendix += "\n" + stats::formatSurvivalAtTimes(curves, table.reports, call);
  return Status::ok();
}

namespace {

nlohmann::ordered_json number(double v) {
  return std::isfinite(v) ? nlohmann::ordered_json(v) : nlohmann::ordered_json();
}
std::string csvNumber(double v) { return std::isfinite(v) ? fmt::format("{}", v) : "NA"; }

// The requested times (every curve's report lists a subset of them, in order).
const std::vector<double>* requestedTimes(const ResultTable& table) {
  return table.reportTimes.empty() ? nullptr : &table.reportTimes;
}

}  // namespace

void addReportJson(nlohmann::ordered_json& curve, const ResultTable& table, size_t index) {
  if (table.reports.empty()) return;
  const bool hidden = index >= table.reports.size() ||
                      (index < table.curveSuppressed.size() && table.curveSuppressed[index]);
  const stats::SurvivalReport* r = hidden ? nullptr : &table.reports[index];
  if (requestedTimes(table)) {
    nlohmann::ordered_json rows = nlohmann::ordered_json::array();
    for (const stats::SurvivalAtTime& a : r ? r->atTimes : std::vector<stats::SurvivalAtTime>{}) {
      rows.push_back({{"time", a.time},
                      {"n_risk", a.nRisk},
                      {"n_event", a.nEvent},
                      {"survival", number(a.survival)},
                      {"std_err", number(a.stdErr)},
                      {"lower_95", number(a.lower)},
                      {"upper_95", number(a.upper)}});
    }
    curve["survival_at_times"] = hidden ? nlohmann::ordered_json() : std::move(rows);
  }
  if (table.reportRmean) {
    if (r && r->rmean) {
      curve["rmean"] = {{"tau", number(r->rmean->tau)},
                        {"rmean", number(r->rmean->rmean)},
                        {"se_rmean", number(r->rmean->stdErr)}};
    } else {
      curve["rmean"] = nullptr;
    }
  }
}

std::vector<std::string> reportCsvHeader(const ResultTable& table) {
  std::vector<std::string> h;
  if (table.reports.empty()) return h;
  if (table.reportRmean) h = {"rmean", "se_rmean", "rmean_tau"};
  for (double t : table.reportTimes) {
    for (const char* c : {"n_risk_at_", "n_event_at_", "survival_at_", "std_err_at_",
                          "lower_95_at_", "upper_95_at_"})
      h.push_back(c + fmt::format("{}", t));
  }
  return h;
}

std::vector<std::string> reportCsvValues(const ResultTable& table, size_t index) {
  std::vector<std::string> v;
  if (table.reports.empty()) return v;
  const bool hidden = index >= table.reports.size() ||
                      (index < table.curveSuppressed.size() && table.curveSuppressed[index]);
  const stats::SurvivalReport* r = hidden ? nullptr : &table.reports[index];
  if (table.reportRmean) {
    const bool has = r && r->rmean;
    v.push_back(has ? csvNumber(r->rmean->rmean) : "NA");
    v.push_back(has ? csvNumber(r->rmean->stdErr) : "NA");
    v.push_back(has ? csvNumber(r->rmean->tau) : "NA");
  }
  for (double t : table.reportTimes) {
    const stats::SurvivalAtTime* a = nullptr;
    if (r)
      for (const auto& x : r->atTimes)
        if (x.time == t) a = &x;
    if (!a) {
      v.insert(v.end(), 6, "NA");
      continue;
    }
    v.push_back(std::to_string(a->nRisk));
    v.push_back(std::to_string(a->nEvent));
    for (double x : {a->survival, a->stdErr, a->lower, a->upper}) v.push_back(csvNumber(x));
  }
  return v;
}

}  // namespace trialmesh::query
