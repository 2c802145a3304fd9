#include "tools/console/console_query.h"

#include <nlohmann/json.hpp>

#include "node/model_runner.h"
#include "query/cross_test.h"
#include "query/format.h"
#include "query/model_runner.h"
#include "query/quantile_query.h"
#include "query/query.h"
#include "query/stratified_km.h"
#include "query/surveil.h"

namespace trialmesh::console {
namespace {

// The federated wrapper of docs/json-output.md ("Federated queries"), keys in that order.
std::string federatedJson(const node::FederatedResult& r, const std::string& study) {
  nlohmann::ordered_json sites = nlohmann::ordered_json::array();
  for (const auto& s : r.sites) {
    sites.push_back({{"site", s.site},
                     {"outcome", node::outcomeName(s.outcome)},
                     {"reason", s.reason},
                     {"rows_scanned", s.rowsScanned},
                     {"elapsed_ms", s.elapsedMs}});
  }
  nlohmann::ordered_json out;
  out["query"] = r.canonicalQuery;
  out["study"] = study;
  out["partial"] = r.partial();
  out["aggregation"] = ethics::aggregationModeName(r.aggregation);
  out["approval"] = r.approval;
  out["rounds"] = r.rounds;
  out["dropped"] = r.dropped;
  out["refusal"] = r.refusal;
  out["sites"] = sites;
  out["result"] = r.table ? nlohmann::ordered_json::parse(query::formatJson(*r.table))
                          : nlohmann::ordered_json(nullptr);
  return out.dump();
}

}  // namespace

Result<ConsoleQueryResult> runConsoleQuery(node::CoordinatorSession& session,
                                           const std::string& study, const std::string& text,
                                           std::chrono::milliseconds deadline) {
  TM_ASSIGN_OR_RETURN(query::Query parsed, query::parseQuery(text));
  if (parsed.select.size() == 1 &&
      (query::isModel(parsed.select[0].fn) || query::isQuantileQuery(parsed))) {
    node::FederatedModelOptions options;
    options.deadline = deadline;
    if (query::isQuantileQuery(parsed)) {
      TM_ASSIGN_OR_RETURN(auto r, node::federatedQuantileQuery(session, study, parsed, options));
      return ConsoleQueryResult{query::quantileQueryJson(r), query::quantileQueryCsv(r)};
    }
    TM_ASSIGN_OR_RETURN(auto fit, node::fitFederatedModel(session, study, parsed, options));
    return ConsoleQueryResult{query::modelJson(fit), query::modelCsv(fit)};
  }
  // surveil, chisq/fisher and km with strata run ordinary queries first, then finish here on
  // the pooled, released table (query/surveil.h, cross_test.h, stratified_km.h).
  TM_ASSIGN_OR_RETURN(auto surveil, query::parseSurveil(text));
  TM_ASSIGN_OR_RETURN(auto cross, query::parseCrossTest(text));
  TM_ASSIGN_OR_RETURN(auto stratified, query::parseStratifiedKm(text));
  node::FederatedQueryOptions options;
  options.deadline = deadline;
  TM_ASSIGN_OR_RETURN(node::FederatedResult result,
                      session.query(study,
                                    surveil      ? surveil->countQuery
                                    : cross      ? cross->countQuery
                                    : stratified ? stratified->curveQuery
                                                 : text,
                                    options));
  if (stratified && result.table) {
    TM_ASSIGN_OR_RETURN(node::FederatedResult strata,
                        session.query(study, stratified->strataQuery, options));
    TM_RETURN_IF_ERROR(node::applyStratifiedKmResult(result, strata, *stratified));
  }
  if (surveil && result.table) {
    TM_ASSIGN_OR_RETURN(result.table, query::applySurveil(*result.table, *surveil));
  }
  if (cross && result.table) {
    TM_ASSIGN_OR_RETURN(result.table, query::applyCrossTest(*result.table, *cross));
  }
  return ConsoleQueryResult{federatedJson(result, study),
                            result.table ? query::formatCsv(*result.table) : std::string()};
}

}  // namespace trialmesh::console
