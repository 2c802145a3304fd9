#include "node/model_runner.h"

#include <utility>

namespace trialmesh::node {

query::RoundRunner federatedRoundRunner(CoordinatorSession& session, std::string study,
                                        FederatedQueryOptions options) {
  return [&session, study = std::move(study),
          options = std::move(options)](const std::string& text) -> Result<query::RoundAnswer> {
    TM_ASSIGN_OR_RETURN(FederatedResult r, session.query(study, text, options));
    if (r.partial() || !r.merged || !r.table) {
      std::string missing;
      for (const auto& s : r.sites) {
        if (s.outcome == SiteOutcomeKind::kAnswered) continue;
        if (!missing.empty()) missing += "; ";
        missing += s.site + " " + outcomeName(s.outcome) + ": " + s.reason;
      }
      return Status::unavailable(
          "not every site of study " + study + " answered (" + missing +
          "); a model is fitted only when every site contributes to every round");
    }
    return query::RoundAnswer{std::move(*r.merged), std::move(*r.table)};
  };
}

}  // namespace trialmesh::node
