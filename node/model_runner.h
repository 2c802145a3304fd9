// Federated model fits: a query::RoundRunner that sends each round of a model (lm, glm, coxph;
// query/model_runner.h) to every site of a study over one CoordinatorSession, so the rounds
// reuse the connections. Each round is an ordinary signed query: every site checks it against
// its approvals and writes its own audit entries for it.
//
//   CoordinatorSession session(identity, members);
//   auto fit = query::fitModel(model, federatedRoundRunner(session, "LUNG-7"));
//
// A model fitted on a changing set of sites would be wrong, so a round in which any site of
// the study did not answer fails the fit, naming every such site and its reason.
//
// Thread-safety: the runner may be called from any thread (CoordinatorSession is thread-safe);
// `session` is not owned and must outlive the runner.
#pragma once

#include <string>

#include "node/coordinator.h"
#include "query/model_runner.h"

namespace trialmesh::node {

query::RoundRunner federatedRoundRunner(CoordinatorSession& session, std::string study,
                                        FederatedQueryOptions options = {});

}  // namespace trialmesh::node
