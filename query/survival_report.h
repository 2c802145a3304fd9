// The report figures a km query asks for with options (times = [...], rmean = tau | common):
// survival at the given times and the restricted mean survival time per curve, computed at the
// coordinator from the finalized Kaplan–Meier curves (no site releases anything new).
//
// Thread-safety: pure function.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/status.h"
#include "query/partial.h"
#include "query/query.h"
#include "stats/km.h"

namespace trialmesh::query {

// Fills table.reports (one per curve, parallel to table.curves) and appends R's printed forms to
// table.appendix: print(fit, rmean = tau) replaces print(fit) when rmean is asked for, and
// summary(fit, times = ...) follows. A no-op for a km without options. `curves` are the full
// curves (with rows) in table order. Errors: InvalidArgument when rmean is below the smallest
// time of every curve (R: "Truncation point for the mean is < smallest survival").
Status addSurvivalReports(ResultTable& table, const std::vector<stats::KmCurve>& curves,
                          const Aggregate& km, const std::string& call);

// The JSON fields a curve gains: "survival_at_times" (time, n_risk, n_event, survival, std_err,
// lower_95, upper_95 per requested time) when times were asked for, and "rmean" (tau, rmean,
// se_rmean; null for a group without rows) when rmean was. Nothing for a km without options.
void addReportJson(nlohmann::ordered_json& curve, const ResultTable& table, size_t index);

// The CSV columns a survival table gains, repeated on every row of a curve like its median:
// "rmean", "se_rmean", "rmean_tau", then per requested time t "n_risk_at_<t>", "n_event_at_<t>",
// "survival_at_<t>", "std_err_at_<t>", "lower_95_at_<t>", "upper_95_at_<t>". The values are NA
// for an unknown or suppressed curve (index out of range) and a time past its follow-up.
std::vector<std::string> reportCsvHeader(const ResultTable& table);
std::vector<std::string> reportCsvValues(const ResultTable& table, size_t index);

}  // namespace trialmesh::query
