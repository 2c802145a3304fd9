#include "query/model_runner.h"

#include <fmt/format.h>

#include <atomic>
#include <cmath>
#include <nlohmann/json.hpp>

#include "query/model_kernel.h"
#include "stats/format.h"

namespace trialmesh::query {

namespace {

std::string fullPrecision(double v) {
  if (std::isnan(v)) return "NA";
  return fmt::format("{}", v);
}

// Runs the rounds of one fit, numbering them and recording their text.
class Rounds {
 public:
  Rounds(const Query& model, const RoundRunner& run, ModelResult& result)
      : model_(model), run_(run), result_(result) {}

  Result<RoundAnswer> run(const Aggregate& statistic) {
    Query q;
    q.select.push_back(statistic);
    q.where = model_.where;
    std::string text = canonicalQueryText(q);
    result_.roundQueries.push_back(text);
    const size_t round = result_.roundQueries.size();
    Result<RoundAnswer> r = run_(text);
    if (!r.isOk())
      return r.status().withContext(fmt::format("round {} ({})", round, aggFnName(statistic.fn)));
    if (r->merged.stats.size() != 1)
      return Status::invalidArgument(
          fmt::format("round {} ({}): the answer has {} statistics, expected 1", round,
                      aggFnName(statistic.fn), r->merged.stats.size()));
    return r;
  }

 private:
  const Query& model_;
  const RoundRunner& run_;
  ModelResult& result_;
};

Result<std::vector<std::string>> columnNames(const RoundAnswer& answer) {
  std::vector<std::string> names;
  const std::string prefix = detail::kDesignColumnNote;
  for (const auto& note : answer.table.notes)
    if (note.rfind(prefix, 0) == 0) names.push_back(note.substr(prefix.size()));
  if (names.empty())
    return Status::invalidArgument("the round table does not list the design columns");
  return names;
}

// The pooled disclosure rule (query/model_kernel.h), on the rows every contributing site sent
// together: the coordinator learns this n anyway (the fit reports it).
Status checkPooledRows(const StatPartial& s, size_t p, AggFn fn) {
  uint64_t n = 0;
  for (uint64_t v : s.n) n += v;
  if (static_cast<double>(p) <= detail::kModelParameterShare * static_cast<double>(n))
    return Status::ok();
  return Status::permissionDenied(fmt::format(
      "{}: the model has {} parameters but the contributing sites together have {} complete-case "
      "rows, fewer than the {} the disclosure rule needs (parameters <= {} x pooled rows): "
      "simplify the model or widen the 'where' clause",
      aggFnName(fn), p, n, detail::minimumRowsFor(p), detail::kModelParameterShare));
}

uint64_t pooledRows(const StatPartial& s) {
  uint64_t n = 0;
  for (uint64_t v : s.n) n += v;
  return n;
}

}  // namespace

Result<ModelResult> fitModel(const Query& model, const RoundRunner& run) {
  if (model.select.size() != 1 || !isModel(model.select[0].fn))
    return Status::invalidArgument(
        "fitModel needs a query whose only statistic is lm(...), glm(...) or coxph(...)");
  if (!model.by.empty())
    return Status::invalidArgument(
        "a model cannot be grouped with 'by': add the grouping variable as a covariate");
  const Aggregate& spec = model.select[0];
  ModelResult result;
  result.fn = spec.fn;
  result.call = canonicalQueryText(model);
  Rounds rounds(model, run, result);
  Aggregate a = spec;
  a.breslow = false;

  switch (spec.fn) {
    case AggFn::kLm: {
      a.fn = AggFn::kLmSums;
      TM_ASSIGN_OR_RETURN(RoundAnswer r, rounds.run(a));
      TM_ASSIGN_OR_RETURN(std::vector<std::string> names, columnNames(r));
      const auto p = static_cast<uint32_t>(names.size());
      TM_RETURN_IF_ERROR(checkPooledRows(r.merged.stats[0], p, spec.fn));
      TM_ASSIGN_OR_RETURN(stats::LinearSums sums, detail::linearSumsOf(r.merged.stats[0], p));
      TM_ASSIGN_OR_RETURN(stats::LinearFit fit, stats::fitLinear(names, sums));
      result.n = fit.n;
      result.linear = std::move(fit);
      return result;
    }
    case AggFn::kGlm: {
      a.fn = AggFn::kGlmSums;
      // Round 1 at beta = 0 also tells the design's columns; fitLogistic's first evaluation
      // (at beta = 0) reuses it.
      TM_ASSIGN_OR_RETURN(RoundAnswer first, rounds.run(a));
      TM_ASSIGN_OR_RETURN(std::vector<std::string> names, columnNames(first));
      const auto p = static_cast<uint32_t>(names.size());
      TM_RETURN_IF_ERROR(checkPooledRows(first.merged.stats[0], p, spec.fn));
      TM_ASSIGN_OR_RETURN(stats::LogisticSums firstSums,
                          detail::logisticSumsOf(first.merged.stats[0], p));
      result.n = pooledRows(first.merged.stats[0]);
      result.events = static_cast<uint64_t>(std::llround(firstSums.sumY));
      bool firstUsed = false;
      auto evaluate = [&](const std::vector<double>& beta) -> Result<stats::LogisticSums> {
        bool zero = true;
        for (double b : beta) zero = zero && b == 0.0;
        if (zero && !firstUsed) {
          firstUsed = true;
          return firstSums;
        }
        Aggregate round = a;
        round.beta = beta;
        TM_ASSIGN_OR_RETURN(RoundAnswer r, rounds.run(round));
        return detail::logisticSumsOf(r.merged.stats[0], p);
      };
      TM_ASSIGN_OR_RETURN(stats::LogisticFit fit, stats::fitLogistic(names, evaluate));
      result.logistic = std::move(fit);
      return result;
    }
    case AggFn::kCoxph: {
      a.fn = AggFn::kCoxTimes;
      TM_ASSIGN_OR_RETURN(RoundAnswer times, rounds.run(a));
      TM_ASSIGN_OR_RETURN(std::vector<std::string> names, columnNames(times));
      const auto p = static_cast<uint32_t>(names.size());
      const StatPartial& s = times.merged.stats[0];
      if (s.vec.size() != p || s.km.size() != s.n.size())
        return Status::invalidArgument("the cox_times answer has the wrong shape");
      const uint64_t n = pooledRows(s);
      if (n == 0)
        return Status::invalidArgument(
            "coxph: no complete-case rows at any site (every row lacks a model variable or is "
            "excluded by 'where')");
      TM_RETURN_IF_ERROR(checkPooledRows(s, p, spec.fn));
      std::vector<double> center(p);
      for (uint32_t j = 0; j < p; ++j) center[j] = s.vec[j] / static_cast<double>(n);
      std::vector<std::vector<double>> grids(s.km.size()), deaths(s.km.size());
      for (size_t k = 0; k < s.km.size(); ++k)
        for (const KmPoint& point : s.km[k])
          if (point.events > 0) {
            grids[k].push_back(point.time);
            deaths[k].push_back(static_cast<double>(point.events));
          }
      Aggregate sumsSpec = a;
      sumsSpec.fn = AggFn::kCoxSums;
      sumsSpec.center = center;
      sumsSpec.times = grids;
      auto evaluate = [&](const std::vector<double>& beta) -> Result<stats::CoxSums> {
        Aggregate round = sumsSpec;
        round.beta = beta;
        TM_ASSIGN_OR_RETURN(RoundAnswer r, rounds.run(round));
        return detail::coxSumsOf(r.merged.stats[0], p, grids, deaths);
      };
      stats::CoxOptions options;
      options.ties = spec.breslow ? stats::CoxTies::kBreslow : stats::CoxTies::kEfron;
      TM_ASSIGN_OR_RETURN(stats::CoxFit fit, stats::fitCox(names, evaluate, options));
      result.n = fit.n;
      result.events = fit.events;
      result.cox = std::move(fit);
      return result;
    }
    default:
      return Status::invalidArgument("not a model");
  }
}

RoundRunner localRoundRunner(const storage::ColumnSource& source, ExecOptions options) {
  // One cache key per runner: the source must outlive the runner, so its rows cannot change
  // between the rounds it runs.
  static std::atomic<uint64_t> runners{0};
  if (options.cacheKey.empty())
    options.cacheKey =
        fmt::format("local-runner-{}-{}", runners.fetch_add(1), static_cast<const void*>(&source));
  return [&source, options](const std::string& text) -> Result<RoundAnswer> {
    TM_ASSIGN_OR_RETURN(Query q, parseQuery(text));
    TM_ASSIGN_OR_RETURN(BoundQuery bound, bindQuery(q, source.dictionary()));
    RoundAnswer answer;
    TM_ASSIGN_OR_RETURN(answer.merged, execute(bound, source, options));
    TM_ASSIGN_OR_RETURN(answer.table, finalize(answer.merged, bound));
    return answer;
  };
}

namespace {

std::string csvQuote(const std::string& s) {
  std::string q = "\"";
  for (char c : s) {
    if (c == '"') q += '"';
    q += c;
  }
  return q + "\"";
}

}  // namespace

std::string modelSitesText(const ModelSites& f, uint64_t n, std::optional<uint64_t> events) {
  size_t contributed = 0;
  for (const auto& s : f.sites) contributed += s.contributed ? 1 : 0;
  std::string out = fmt::format(
      "\nSites: {} of {} contributed ({} aggregation, approval {}); n = {}{}\n", contributed,
      f.sites.size(), f.mode, f.approval, n, events ? ", events = " + std::to_string(*events) : "");
  std::string names;
  for (const auto& s : f.sites)
    if (s.contributed) names += (names.empty() ? "" : " ") + s.site;
  out += "  contributed: " + (names.empty() ? std::string("none") : names) + "\n";
  for (const auto& s : f.sites)
    if (!s.contributed) out += "  left out: " + s.site + " (" + s.outcome + ": " + s.reason + ")\n";
  if (f.fits > 1)
    out += fmt::format("  restarted {} time{} without the sites that dropped out\n", f.fits - 1,
                       f.fits == 2 ? "" : "s");
  return out;
}

std::string modelSitesJson(const ModelSites& f, uint64_t n, std::optional<uint64_t> events) {
  nlohmann::json sites;
  sites["mode"] = f.mode;
  sites["approval"] = f.approval;
  sites["n"] = n;
  sites["events"] = events ? nlohmann::json(*events) : nlohmann::json(nullptr);
  sites["fits"] = f.fits;
  sites["contributed"] = nlohmann::json::array();
  sites["left_out"] = nlohmann::json::array();
  for (const auto& s : f.sites) {
    if (s.contributed) {
      sites["contributed"].push_back(s.site);
    } else {
      sites["left_out"].push_back({{"site", s.site}, {"outcome", s.outcome}, {"reason", s.reason}});
    }
  }
  return sites.dump();
}

std::string modelSitesCsv(const ModelSites& f, uint64_t n, std::optional<uint64_t> events) {
  std::string out = "site,status,reason,mode,approval,n,events,fits\n";
  for (const auto& s : f.sites)
    out += fmt::format("{},{},{},{},{},{},{},{}\n", csvQuote(s.site),
                       s.contributed ? "contributed" : csvQuote("left out: " + s.outcome),
                       csvQuote(s.reason), f.mode, csvQuote(f.approval), n,
                       events ? std::to_string(*events) : std::string("NA"), f.fits);
  return out;
}

std::string formatModel(const ModelResult& r) {
  std::string out;
  if (r.linear) out = stats::formatLinear(*r.linear, r.call);
  if (r.logistic) out = stats::formatLogistic(*r.logistic, r.call);
  if (r.cox) out = stats::formatCox(*r.cox, r.call);
  if (r.sites) out += modelSitesText(*r.sites, r.n, r.events);
  out += fmt::format("\n({} round{} of site queries)\n", r.roundQueries.size(),
                     r.roundQueries.size() == 1 ? "" : "s");
  return out;
}

std::string modelJson(const ModelResult& r) {
  nlohmann::json j;
  if (r.linear) j = stats::toJson(*r.linear);
  if (r.logistic) j = stats::toJson(*r.logistic);
  if (r.cox) j = stats::toJson(*r.cox);
  j["model"] = aggFnName(r.fn);
  j["call"] = r.call;
  j["rounds"] = r.roundQueries.size();
  if (r.sites) {
    // A section of its own, so the fit's fields keep their layout.
    j["sites"] = nlohmann::json::parse(modelSitesJson(*r.sites, r.n, r.events));
  }
  return j.dump();
}

namespace {

// The fit's summary (every figure R's summary() prints beyond the coefficients), repeated on
// each coefficient row so that one read.csv holds it; names as in --json (docs/json-output.md).
std::pair<std::string, std::string> summaryCsv(const ModelResult& r) {
  auto f = fullPrecision;
  if (r.cox) {
    const auto& c = *r.cox;
    auto test = [&](const stats::CoxTest& t) {
      return fmt::format("{},{},{}", f(t.statistic), f(t.df), f(t.pValue));
    };
    return {
        "n,events,loglik_null,loglik,lr_statistic,lr_df,lr_p_value,wald_statistic,wald_df,"
        "wald_p_value,score_statistic,score_df,score_p_value",
        fmt::format("{},{},{},{},{},{},{}", c.n, c.events, f(c.loglikNull), f(c.loglik),
                    test(c.likelihoodRatio), test(c.wald), test(c.score))};
  }
  if (r.logistic) {
    const auto& g = *r.logistic;
    return {
        "n,events,null_deviance,df_null,deviance,df_residual,aic,lr_statistic,lr_df,"
        "lr_p_value",
        fmt::format("{},{},{},{},{},{},{},{},{},{}", g.n, g.events, f(g.nullDeviance), f(g.dfNull),
                    f(g.deviance), f(g.dfResidual), f(g.aic), f(g.lrStatistic), f(g.lrDf),
                    f(g.lrPValue))};
  }
  if (r.linear) {
    const auto& l = *r.linear;
    return {
        "n,residual_standard_error,df_residual,r_squared,adj_r_squared,f_statistic,f_df1,"
        "f_df2,f_p_value",
        fmt::format("{},{},{},{},{},{},{},{},{}", l.n, f(l.sigma), f(l.dfResidual), f(l.rSquared),
                    f(l.adjRSquared), f(l.fStatistic), f(l.fDf1), f(l.fDf2), f(l.fPValue))};
  }
  return {"", ""};
}

std::string coefficientsCsv(const ModelResult& r) {
  std::string out;
  auto quote = csvQuote;
  const auto [summaryHeader, summary] = summaryCsv(r);
  if (r.cox) {
    out = "term,coef,exp_coef,se_coef,z,p,lower_95,upper_95," + summaryHeader + "\n";
    for (const auto& c : r.cox->coefficients)
      out += fmt::format("{},{},{},{},{},{},{},{},{}\n", quote(c.name), fullPrecision(c.coef),
                         fullPrecision(c.hazardRatio), fullPrecision(c.stdError),
                         fullPrecision(c.z), fullPrecision(c.pValue), fullPrecision(c.lower),
                         fullPrecision(c.upper), summary);
    return out;
  }
  const std::vector<stats::Coefficient>* coefs = r.linear     ? &r.linear->coefficients
                                                 : r.logistic ? &r.logistic->coefficients
                                                              : nullptr;
  out = fmt::format("term,estimate,std_error,{},p,{}\n", r.linear ? "t" : "z", summaryHeader);
  if (coefs) {
    for (const auto& c : *coefs)
      out += fmt::format("{},{},{},{},{},{}\n", quote(c.name), fullPrecision(c.estimate),
                         fullPrecision(c.stdError), fullPrecision(c.statistic),
                         fullPrecision(c.pValue), summary);
  }
  return out;
}

}  // namespace

std::string modelCsv(const ModelResult& r) {
  std::string out = coefficientsCsv(r);
  if (r.sites) out += "\n" + modelSitesCsv(*r.sites, r.n, r.events);
  return out;
}

}  // namespace trialmesh::query
