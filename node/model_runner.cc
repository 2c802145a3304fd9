#include "node/model_runner.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <utility>
#include <vector>

namespace trialmesh::node {

namespace {

using Clock = std::chrono::steady_clock;

std::string describe(const SiteOutcome& s) {
  return s.site + " " + outcomeName(s.outcome) + ": " + s.reason;
}

// The sites left out so far, for an error text ("S03 timed out: ...; S07 refused: ...").
std::string leftOutText(const std::vector<std::string>& order,
                        const std::map<std::string, SiteOutcome>& leftOut) {
  std::string text;
  for (const auto& name : order) {
    auto it = leftOut.find(name);
    if (it != leftOut.end()) text += (text.empty() ? "" : "; ") + describe(it->second);
  }
  return text;
}

}  // namespace

Result<query::ModelSites> runOnFixedSites(
    CoordinatorSession& session, const std::string& study, const FederatedModelOptions& options,
    const std::function<Status(const query::RoundRunner&)>& rounds) {
  const auto start = Clock::now();
  const auto end = start + options.deadline;
  const std::chrono::milliseconds roundLimit =
      std::max(std::chrono::milliseconds(1), options.roundDeadline.value_or(options.deadline / 2));

  std::vector<std::string> all;     // every site of the study, members-file order (round 1)
  std::vector<std::string> active;  // the fixed set of the current fit; empty: every site
  std::map<std::string, SiteOutcome> leftOut;
  ethics::AggregationMode mode = ethics::AggregationMode::kPlain;
  std::string approval;

  for (uint32_t fit = 1;; ++fit) {
    uint32_t round = 0;
    bool dropped = false;  // a site of this fit's set did not answer a round
    auto runner = [&](const std::string& text) -> Result<query::RoundAnswer> {
      ++round;
      if (options.beforeRound) options.beforeRound(fit, round);
      const auto now = Clock::now();
      if (now >= end)
        return Status::unavailable(
            fmt::format("the fit's deadline of {} ms passed", options.deadline.count()));
      FederatedQueryOptions q = options.query;
      q.deadline = std::min(roundLimit, std::chrono::ceil<std::chrono::milliseconds>(end - now));
      q.onlySites = active;
      // One masking round: a re-run without a failed site would sum over another set of sites.
      q.maxSecureRounds = 1;
      TM_ASSIGN_OR_RETURN(FederatedResult r, session.query(study, text, q));
      mode = r.aggregation;
      approval = r.approval;
      if (all.empty())
        for (const auto& s : r.sites) all.push_back(s.site);
      for (const auto& s : r.sites) {
        if (s.outcome == SiteOutcomeKind::kAnswered) continue;
        leftOut[s.site] = s;
        dropped = true;
      }
      // Below the quorum: no restart can help.
      if (!r.refusal.empty() && r.refusal.find("(min_sites)") != std::string::npos)
        return Status::failedPrecondition(r.refusal);
      if (dropped)
        return Status::unavailable("a site left the fit (" + leftOutText(all, leftOut) + ")");
      if (!r.merged || !r.table)
        return Status::failedPrecondition(r.refusal.empty() ? "no site answered" : r.refusal);
      return query::RoundAnswer{std::move(*r.merged), std::move(*r.table)};
    };
    Status result = rounds(runner);
    if (result.isOk()) {
      query::ModelSites sites;
      sites.mode = ethics::aggregationModeName(mode);
      sites.approval = approval;
      sites.fits = fit;
      for (const auto& name : all) {
        query::ModelSiteStatus s;
        s.site = name;
        auto it = leftOut.find(name);
        s.contributed = it == leftOut.end();
        s.outcome = s.contributed ? "contributed" : outcomeName(it->second.outcome);
        if (!s.contributed) s.reason = it->second.reason;
        sites.sites.push_back(std::move(s));
      }
      return sites;
    }
    const Status& error = result;
    if (!dropped || error.code() == StatusCode::kFailedPrecondition) {
      if (leftOut.empty()) return error;
      return Status(error.code(),
                    error.message() + " (sites left out: " + leftOutText(all, leftOut) + ")");
    }
    // Restart on the sites that answered every round so far.
    active.clear();
    for (const auto& name : all)
      if (leftOut.find(name) == leftOut.end()) active.push_back(name);
    const std::string why = leftOutText(all, leftOut);
    if (active.empty())
      return Status::unavailable("study " + study + ": no site can take part in the fit (" + why +
                                 ")");
    if (fit >= options.maxFits)
      return Status::unavailable(fmt::format(
          "study {}: sites kept dropping out; gave up after {} fits ({})", study, fit, why));
    if (Clock::now() >= end)
      return Status::unavailable(
          fmt::format("study {}: the fit's deadline of {} ms passed before a restart without the "
                      "sites left out ({})",
                      study, options.deadline.count(), why));
  }
}

Result<query::ModelResult> fitFederatedModel(CoordinatorSession& session, const std::string& study,
                                             const query::Query& model,
                                             const FederatedModelOptions& options) {
  std::optional<query::ModelResult> fit;
  TM_ASSIGN_OR_RETURN(
      query::ModelSites sites,
      runOnFixedSites(session, study, options, [&](const query::RoundRunner& run) -> Status {
        TM_ASSIGN_OR_RETURN(fit, query::fitModel(model, run));
        return Status::ok();
      }));
  fit->sites = std::move(sites);
  return std::move(*fit);
}

Result<query::QuantileQueryResult> federatedQuantileQuery(CoordinatorSession& session,
                                                          const std::string& study,
                                                          const query::Query& q,
                                                          const FederatedModelOptions& options) {
  std::optional<query::QuantileQueryResult> result;
  TM_ASSIGN_OR_RETURN(
      query::ModelSites sites,
      runOnFixedSites(session, study, options, [&](const query::RoundRunner& run) -> Status {
        TM_ASSIGN_OR_RETURN(result, query::runQuantileQuery(q, run));
        return Status::ok();
      }));
  result->sites = std::move(sites);
  return std::move(*result);
}

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
        missing += describe(s);
      }
      return Status::unavailable(
          "not every site of study " + study + " answered (" + missing +
          "); a model is fitted only when every site contributes to every round");
    }
    return query::RoundAnswer{std::move(*r.merged), std::move(*r.table)};
  };
}

Status applyStratifiedKmResult(FederatedResult& curves, const FederatedResult& strata,
                               const query::StratifiedKmRequest& request) {
  auto answered = [](const FederatedResult& r) {
    std::vector<std::string> out;
    for (const auto& s : r.sites)
      if (s.outcome == SiteOutcomeKind::kAnswered) out.push_back(s.site);
    return out;
  };
  if (!strata.table || answered(strata) != answered(curves)) {
    // The first reason a site gave (e.g. an unknown stratum variable), or the refusal.
    std::string why = strata.refusal;
    for (const auto& s : strata.sites)
      if (why.empty() && !s.reason.empty()) why = s.site + ": " + s.reason;
    const std::string what =
        strata.table ? "the sites answering " + request.strataQuery + " differ from the curves'"
                     : request.strataQuery + " gave no result";
    query::withholdStratifiedLogRank(*curves.table, request,
                                     what + (why.empty() ? std::string() : " (" + why + ")"));
    return Status::ok();
  }
  return query::applyStratifiedLogRank(*curves.table, *strata.table, request);
}

}  // namespace trialmesh::node
