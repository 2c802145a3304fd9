// `km(time, event, strata = s) by g`: the Kaplan–Meier curves by g, with the log-rank test
// stratified by s (R's survdiff(Surv(time, event) ~ g + strata(s))). The coordinator runs two
// ordinary queries: the km without strata (curves, times, rmean and disclosure control as
// always) and `km(time, event) where <filter> and s is not missing by g, s`, whose released
// per-(group, stratum) counts give the test (stats::stratifiedLogRank). Sites run nothing new.
//
// Disclosure: the test replaces the plain log-rank test only where that one would be released
// (no suppressed group) and only when every (group, stratum) curve of the second query was
// released; otherwise it is withheld with a note. Rows with a missing stratum count in the
// curves but not in the test, as in R (survfit keeps them, survdiff drops them).
//
// Thread-safety: pure functions.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"
#include "query/partial.h"

namespace trialmesh::query {

struct StratifiedKmRequest {
  std::string curveQuery;   // canonical text: the km without strata
  std::string strataQuery;  // canonical text: km by the groups and the stratum
  std::string strata;       // the stratum variable, as written
  std::string call;         // canonical text of the whole query (with strata), for printing
};

// nullopt when `text` is not a km with strata (including text that does not parse: the
// ordinary path reports that); an error for a stratum that is also a `by` variable.
Result<std::optional<StratifiedKmRequest>> parseStratifiedKm(std::string_view text);

// Puts the stratified test into `curves` (the curve query's released table) from `strata`
// (the strata query's): logRank, its note and its printed survdiff, and logRankStrata. When the
// test cannot be released, the plain test is withheld too and a note says why.
Status applyStratifiedLogRank(ResultTable& curves, const ResultTable& strata,
                              const StratifiedKmRequest& request);

// Removes the plain test (note, printout, logRank) and notes why the stratified one is
// withheld, e.g. when the two queries were answered by different sites.
void withholdStratifiedLogRank(ResultTable& curves, const StratifiedKmRequest& request,
                               const std::string& why);

}  // namespace trialmesh::query
