// Printing of fitted models in the layout a biostatistician knows from R (summary.lm,
// summary.glm, summary.coxph, print/summary of survfit, survdiff), and a JSON form for
// programs. Numbers are formatted as R's format() does (common decimals per column, 4
// significant digits for coefficient tables, "<2e-16" for tiny p-values), but the text is not
// guaranteed byte-identical to R's.
//
// What R prints and federated sums cannot give (residual quantiles, concordance) is left out.
// NaN is printed as "NA" and written to JSON as null.
//
// Thread-safety: pure functions.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "stats/cox.h"
#include "stats/km.h"
#include "stats/regression.h"

namespace trialmesh::stats {

// `call` is shown after "Call:" (e.g. the query text); omitted when empty.
std::string formatLinear(const LinearFit& fit, const std::string& call = "");
std::string formatLogistic(const LogisticFit& fit, const std::string& call = "");
std::string formatCox(const CoxFit& fit, const std::string& call = "");
// print(survfit): one line per curve with n, events, median and its confidence limits.
std::string formatKmTable(const std::vector<KmCurve>& curves, const std::string& call = "");
// summary(survfit): the event times of each curve.
std::string formatKmSummary(const std::vector<KmCurve>& curves, const std::string& call = "");
std::string formatLogRank(const LogRankTest& test, const std::string& call = "");

nlohmann::json toJson(const LinearFit& fit);
nlohmann::json toJson(const LogisticFit& fit);
nlohmann::json toJson(const CoxFit& fit);
nlohmann::json toJson(const KmCurve& curve);
nlohmann::json toJson(const LogRankTest& test);

// R's format(x, digits = digits) of a numeric vector: one common number of decimals (or
// scientific notation when shorter), right-aligned to a common width. Exposed for tests.
std::vector<std::string> formatNumbers(const std::vector<double>& values, int digits);
// R's format.pval(p, digits): "<2e-16" style below `eps`.
std::string formatPValue(double p, int digits, double eps = 2.220446049250313e-16);

}  // namespace trialmesh::stats
