// A quantile query, `quantile(age, [0.25, 0.5, 0.75]) where arm = "A"` or `median(age)`, answered
// by the coordinator in rounds of counts (query/quantile.h): each round is the ordinary query
// `quantile_counts(age, [lo, hi, ...], 4096) where arm = "A"`, which a site answers with its
// counts per key bucket (plainly or masked, like any count) after checking it against its
// approvals and logging it. The result is exact and equal to R's quantile(x, probs) (type 7) on
// the pooled rows.
//
//   TM_ASSIGN_OR_RETURN(Query q, parseQuery("median(age)"));
//   TM_ASSIGN_OR_RETURN(QuantileQueryResult r, runQuantileQuery(q, localRoundRunner(store)));
//   std::cout << formatQuantileQuery(r);
//
// Disclosure: the coordinator learns the pooled n and the pooled counts in the buckets around
// the target ranks, never a site's own count in secure mode. The first round's n goes through
// disclosure control like any count: below the approval's minimum cell size the quantile is
// refused (PermissionDenied) before any round narrows on a rank. docs/statistics.md.
//
// Thread-safety: runQuantileQuery calls `run` sequentially from the calling thread.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "query/model_runner.h"
#include "query/quantile.h"
#include "query/query.h"

namespace trialmesh::query {

struct QuantileQueryResult {
  std::string variable;
  std::string call;  // canonical text of the quantile query
  QuantileResult result;
  std::optional<ModelSites> sites;        // federated: who contributed (node/quantile_runner.h)
  std::vector<std::string> roundQueries;  // every round run, in order
};

// True when `q` is a quantile query (its only statistic is quantile or median).
bool isQuantileQuery(const Query& q);

// Runs the select. Errors: InvalidArgument when `q` is not a quantile query or has a `by`
// ("run one quantile per group with 'where'"); the first error of `run` as "round N: ...";
// PermissionDenied when the pooled n is below the minimum cell size (the first round's n
// withheld by disclosure control); InvalidArgument when the counts change between rounds (a
// site's data changed mid-select).
Result<QuantileQueryResult> runQuantileQuery(const Query& q, const RoundRunner& run);

// Output: R's print(quantile(x, probs)) then "n = <n>" and, federated, the sites block; JSON
// {"statistic": "quantile", "variable", "call", "n", "rows": [{"p", "name", "quantile"}],
// "rounds", "sites"?}; CSV p,name,quantile,n then, federated, a blank line and the sites table.
std::string formatQuantileQuery(const QuantileQueryResult& r);
std::string quantileQueryJson(const QuantileQueryResult& r);
std::string quantileQueryCsv(const QuantileQueryResult& r);

}  // namespace trialmesh::query
