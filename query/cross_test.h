// `chisq(arm, response)`, `chisq(arm, response, correct = false)`, `fisher(arm, response)`, each
// with an optional `where`: tests of a cross-table. The text is rewritten to the ordinary
// `count where ... by arm, response`, which runs like any count (plain or secure; every site's
// counts merged and put through disclosure control before anything is released: no new data
// leaves a site); the coordinator then computes the test (stats/contingency.h) on the released,
// pooled table and prints only the test, not the cells.
//
// Disclosure: the test is a function of the table, so it may be released only when the whole
// table could be: when disclosure control withheld any cell, the test is refused (a 2 x 2
// Fisher p or odds ratio with its margins gives the cells back). docs/privacy.md.
//
// Thread-safety: pure functions.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"
#include "query/partial.h"

namespace trialmesh::query {

struct CrossTestRequest {
  enum class Test : uint8_t { kChiSquared, kFisher };
  Test test = Test::kChiSquared;
  bool correct = true;     // chisq: Yates' correction for a 2 x 2 table (R's default)
  std::string countQuery;  // `count where ... by a, b`, canonical text
};

// nullopt when `text` is not a chisq(...) or fisher(...) query; an actionable error when it is
// malformed (wrong arguments, a `by` clause).
Result<std::optional<CrossTestRequest>> parseCrossTest(std::string_view text);

// The one-row test table from the count query's released result. Columns, chisq: test, method,
// statistic, df, p_value, n, min_expected, warning (R's "Chi-squared approximation may be
// incorrect", else null); fisher: test, method, p_value, odds_ratio, conf_low, conf_high, n
// (an infinite odds ratio or limit is null in JSON, NA in CSV, with a note). Rows with a
// missing level are left out, as R's table() does. Errors: a withheld cell (disclosure), fewer
// than two observed levels of a variable, fisher on more than 2 x 2.
Result<ResultTable> applyCrossTest(const ResultTable& counts, const CrossTestRequest& request);

}  // namespace trialmesh::query
