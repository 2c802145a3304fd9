// Fitting a model query (lm, glm, coxph) by rounds of round statistics (lm_sums, glm_sums,
// cox_times, cox_sums), each of which is an ordinary query: on one local store (the pooled
// reference) or across a federation, where each round is signed, approval-checked and audited
// at every site like any other query.
//
//   TM_ASSIGN_OR_RETURN(Query q, parseQuery("coxph(time, event ~ age + sex, ties = breslow)"));
//   TM_ASSIGN_OR_RETURN(ModelResult fit, fitModel(q, localRoundRunner(store)));
//   std::cout << formatModel(fit);
//
// Rounds: lm one (lm_sums); glm one at beta = 0, then one per IRLS iteration (glm_sums with
// beta); coxph one for the event-time grid and the centring means (cox_times), then one per
// Newton step (cox_sums with beta, center and times). docs/statistics.md has what a site sends.
//
// Thread-safety: fitModel calls `run` sequentially from the calling thread.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "query/engine.h"
#include "query/partial.h"
#include "query/query.h"
#include "stats/cox.h"
#include "stats/regression.h"
#include "storage/column.h"

namespace trialmesh::query {

// What one round returns: the merged partial over every site and its finalized table (for a
// round statistic: complete-case rows per stratum; its notes name the design columns).
struct RoundAnswer {
  PartialResult merged;
  ResultTable table;
};

// Runs one round: canonical query text of a round statistic -> merged answer. An error (for a
// federation: any site that did not answer, named) aborts the fit and is returned with the
// round number.
using RoundRunner = std::function<Result<RoundAnswer>(const std::string& roundQuery)>;

// Which sites a federated fit ran on (node/model_runner.h fitFederatedModel): every site of the
// study, in members-file order, contributing or left out with the reason.
struct ModelSiteStatus {
  std::string site;
  bool contributed = false;
  std::string outcome;  // "contributed", or why left out: "refused", "unreachable", "timed out"
  std::string reason;   // the site's refusal text or the connection error; empty if contributed
};

struct ModelSites {
  std::string mode;      // aggregation mode of the approval ("plain", "secure", "secure-dp")
  std::string approval;  // the approval's label, e.g. "LUNG-7 v1"
  uint32_t fits = 1;     // fits started: 1, plus one per restart after a site dropped out
  std::vector<ModelSiteStatus> sites;
};

// The sites block of a federated result (a model fit or a quantile; the "n" and "events" over
// the contributing sites): text ("Sites: 18 of 20 contributed (secure aggregation, approval
// LUNG-7 v1); n = 142 ..."), a JSON object {"mode", "approval", "n", "events", "fits",
// "contributed", "left_out"} and a CSV table (site,status,reason,mode,approval,n,events,fits).
std::string modelSitesText(const ModelSites& sites, uint64_t n, std::optional<uint64_t> events);
std::string modelSitesJson(const ModelSites& sites, uint64_t n, std::optional<uint64_t> events);
std::string modelSitesCsv(const ModelSites& sites, uint64_t n, std::optional<uint64_t> events);

struct ModelResult {
  AggFn fn = AggFn::kLm;
  std::string call;                 // canonical text of the model query
  uint64_t n = 0;                   // complete-case rows over the contributing sites
  std::optional<uint64_t> events;   // glm: rows with y = 1; coxph: events; lm: none
  std::optional<ModelSites> sites;  // federated fits only
  std::optional<stats::LinearFit> linear;
  std::optional<stats::LogisticFit> logistic;
  std::optional<stats::CoxFit> cox;
  std::vector<std::string> roundQueries;  // every round run, in order
};

// Fits `model` (its only statistic must be lm, glm or coxph). Errors: InvalidArgument for a
// query that is not a model; the first error of `run`, as "round N (<statistic>): ..."; the
// fit's own errors (collinear design, no events, too few rows); PermissionDenied when the
// pooled complete-case rows are too few for the parameters (parameters > 0.33 x rows, the rule
// a secure-mode site does not apply to its own rows: query/model_kernel.h).
Result<ModelResult> fitModel(const Query& model, const RoundRunner& run);

// A RoundRunner over one local dataset (binds each round to source's dictionary, executes and
// finalizes it). `source` must outlive the runner.
RoundRunner localRoundRunner(const storage::ColumnSource& source, ExecOptions options = {});

// R layout (summary.lm / summary.glm / summary.coxph, stats/format.h), JSON and CSV (one row per
// coefficient). With `sites`, each adds which sites contributed and which were left out and
// why, n and events over the contributing sites, the mode and the approval: a "Sites:" block,
// a "sites" object, and a second CSV table after a blank line (docs/statistics.md).
std::string formatModel(const ModelResult& result);
std::string modelJson(const ModelResult& result);
std::string modelCsv(const ModelResult& result);

}  // namespace trialmesh::query
