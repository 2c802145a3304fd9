// Federated model fits (lm, glm, coxph; query/model_runner.h) over one CoordinatorSession, so
// the rounds reuse the connections. Each round is an ordinary signed query: every site checks it
// against its approvals and writes its own audit entries for it.
//
//   CoordinatorSession session(identity, members);
//   auto fit = fitFederatedModel(session, "LUNG-7", model);   // over the sites that can take part
//   std::cout << query::formatModel(*fit);                     // names who contributed, who not
//
// Which sites (docs/statistics.md "Models over many sites"): a model fitted on a changing set
// of sites would be wrong, so a fit runs all its rounds on one fixed set of sites. A site that
// refuses (e.g. it is below the per-site rule of plain mode), is down, or misses a round's
// deadline is left out, not fatal: the fit restarts from its first round without it, as long as
// the approval's quorum (min_sites, secure modes) holds and the whole fit's deadline allows.
//
// Thread-safety: may be called from any thread (CoordinatorSession is thread-safe); `session`
// is not owned and must outlive the call (and the runner).
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>

#include "node/coordinator.h"
#include "query/model_runner.h"
#include "query/quantile_query.h"
#include "query/stratified_km.h"

namespace trialmesh::node {

struct FederatedModelOptions {
  // The whole fit, every round and restart included: by then the fit has a result or an error.
  std::chrono::milliseconds deadline{5000};
  // The longest one round may wait for its sites (never beyond the whole deadline). Default:
  // half the whole deadline, so a hung site that holds the first round still leaves time for a
  // restart without it.
  std::optional<std::chrono::milliseconds> roundDeadline;
  // At most this many fits (the first plus restarts after dropouts).
  uint32_t maxFits = 5;
  // Test hook: called before each round is sent with the number of the fit (1-based) and of
  // the round within it (1-based). Lets tests stop a site mid-fit.
  std::function<void(uint32_t fit, uint32_t round)> beforeRound;
  // Passed to every round's query (clock, test hooks); its deadline, onlySites and
  // maxSecureRounds are set by the fit.
  FederatedQueryOptions query;
};

// Fits `model` over the sites of `study` that can take part (above). The result's `sites` lists
// every site of the study: contributed, or left out with the outcome and reason.
// Errors: the model's own (query::fitModel); Unavailable when a site dropped out and no restart
// is possible (below the quorum, no site left, the deadline passed or maxFits used), naming
// every site left out and why; FailedPrecondition with the coordinator's refusal (e.g. below
// min_sites) when the sites cannot run a round at all; Unavailable when the deadline passed.
Result<query::ModelResult> fitFederatedModel(CoordinatorSession& session, const std::string& study,
                                             const query::Query& model,
                                             const FederatedModelOptions& options = {});

// A quantile query (query/quantile_query.h) over the sites of `study` that can take part, with
// the same fixed-site rule, restarts, deadline and errors as a model fit: its rounds of counts
// must all be summed over the same sites, or the select would narrow on the wrong ranks.
Result<query::QuantileQueryResult> federatedQuantileQuery(
    CoordinatorSession& session, const std::string& study, const query::Query& q,
    const FederatedModelOptions& options = {});

// The loop both use: runs `rounds` (which calls its RoundRunner once per round) on one fixed
// set of sites, restarting it without a site that refused, was down or missed a round, while
// the quorum, maxFits and the deadline allow. Returns every site of the study, contributed or
// left out and why; `rounds`'s own error when it fails for another reason.
Result<query::ModelSites> runOnFixedSites(
    CoordinatorSession& session, const std::string& study, const FederatedModelOptions& options,
    const std::function<Status(const query::RoundRunner&)>& rounds);

// A query::RoundRunner that sends each round to every site of `study`: a round in which any site
// did not answer fails, naming every such site and its reason (no restart; fitFederatedModel
// is the fit that leaves such sites out). For benchmarks and callers that want all sites.
query::RoundRunner federatedRoundRunner(CoordinatorSession& session, std::string study,
                                        FederatedQueryOptions options = {});

// `km(..., strata = s) by g` runs as two federated queries (query/stratified_km.h): the curves
// and the counts by g and s. Puts the stratified log-rank test into `curves`' table only when
// the same sites answered both (else the test and the curves would describe different
// patients); otherwise withholds it with the reason. Errors: those of applyStratifiedLogRank.
// REQUIRES: curves.table.
Status applyStratifiedKmResult(FederatedResult& curves, const FederatedResult& strata,
                               const query::StratifiedKmRequest& request);

}  // namespace trialmesh::node
