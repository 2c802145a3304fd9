// Model rounds at a site: read the model's columns once per round, keep the complete-case rows
// that pass the filter as a dense design matrix, and hand them to the stats/rows.h evaluators.
#include "query/model_kernel.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <deque>
#include <limits>
#include <memory>
#include <mutex>

#include "query/additive.h"
#include "stats/rows.h"

namespace trialmesh::query::detail {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// The values of a chunk widened to double (level codes, 0/1 booleans), NaN where missing.
void chunkAsDoubles(const storage::ColumnChunk& col, uint32_t n, std::vector<double>& out) {
  out.resize(n);
  std::visit(
      [&](const auto& v) {
        for (uint32_t i = 0; i < n; ++i) out[i] = static_cast<double>(v[i]);
      },
      col.values);
  if (col.hasMissing()) {
    for (uint32_t i = 0; i < n; ++i)
      if (col.isMissing(i)) out[i] = kNaN;
  }
}

// The complete-case rows of one site that pass the filter.
struct ModelRows {
  stats::DesignMatrix x;
  std::vector<double> y;      // response, or time
  std::vector<double> event;  // survival models: 0/1
  std::vector<uint32_t> strata;
  std::vector<uint64_t> nPerStratum;
  uint64_t missing = 0;   // passed the filter, lacked a model variable
  uint64_t selected = 0;  // passed the filter
  uint64_t scanned = 0;
};

Result<ModelRows> loadRows(const Plan& plan, const storage::ColumnSource& source,
                           std::optional<double> timeBin, const std::atomic<bool>* cancelled) {
  const ModelPlan& m = *plan.model;
  const bool survival = isSurvivalModel(m.fn);
  const bool logistic = m.fn == AggFn::kGlmSums;
  const size_t p = m.width();
  ModelRows out;
  out.x.cols = p;
  out.nPerStratum.assign(m.strata, 0);
  const uint64_t total = source.rowCount();
  const uint32_t chunks = source.chunkCount();
  out.x.values.reserve(static_cast<size_t>(total) * p);
  out.y.reserve(total);
  std::vector<double> yv, ev, sv;
  std::vector<std::vector<double>> tv(m.terms.size());
  std::vector<double> row(p);
  const std::string& yName = plan.dictionary.variable(m.response).name;
  for (uint32_t c = 0; c < chunks; ++c) {
    if (cancelled != nullptr && cancelled->load(std::memory_order_relaxed)) {
      return scanCancelledStatus();
    }
    const uint64_t start = uint64_t{c} * storage::kChunkRows;
    const uint32_t n =
        static_cast<uint32_t>(std::min<uint64_t>(storage::kChunkRows, total - start));
    TM_ASSIGN_OR_RETURN(std::vector<uint8_t> sel, selectChunk(plan, source, c, n));
    auto load = [&](size_t var, std::vector<double>& into) -> Status {
      TM_ASSIGN_OR_RETURN(auto col, source.column(var, c));
      if (col->rows != n)
        return Status::corruption(fmt::format(
            "chunk {} of variable {} has {} rows, expected {}; the stored dataset needs to be "
            "re-imported",
            c, plan.dictionary.variable(var).name, col->rows, n));
      chunkAsDoubles(*col, n, into);
      return Status::ok();
    };
    TM_RETURN_IF_ERROR(load(m.response, yv));
    if (survival) TM_RETURN_IF_ERROR(load(m.event, ev));
    if (m.hasStrata) TM_RETURN_IF_ERROR(load(m.strataVar, sv));
    for (size_t t = 0; t < m.terms.size(); ++t) TM_RETURN_IF_ERROR(load(m.terms[t].var, tv[t]));
    out.scanned += n;
    for (uint32_t i = 0; i < n; ++i) {
      if (!sel[i]) continue;
      ++out.selected;
      bool complete = !std::isnan(yv[i]) && (!survival || !std::isnan(ev[i])) &&
                      (!m.hasStrata || !std::isnan(sv[i]));
      for (size_t t = 0; complete && t < m.terms.size(); ++t) complete = !std::isnan(tv[t][i]);
      if (!complete) {
        ++out.missing;
        continue;
      }
      if (survival && ev[i] != m.eventCoding.event && ev[i] != m.eventCoding.censored) {
        std::vector<double> bad;
        for (uint32_t j = i; j < n; ++j)
          if (sel[j] && !std::isnan(ev[j]) && ev[j] != m.eventCoding.event &&
              ev[j] != m.eventCoding.censored)
            bad.push_back(ev[j]);
        return detail::eventCodingError(aggFnName(m.fn), plan.dictionary.variable(m.event),
                                        m.eventCoding, std::move(bad));
      }
      if (logistic && yv[i] != 0.0 && yv[i] != 1.0) {
        return Status::invalidArgument(fmt::format(
            "glm_sums: the response {} is {} in row {} of the dataset; logistic regression "
            "needs a 0/1 outcome (drop such rows with 'where {} in (0, 1)')",
            yName, yv[i], start + i + 1, yName));
      }
      if (m.intercept) row[0] = 1.0;
      for (size_t t = 0; t < m.terms.size(); ++t) {
        const ModelTerm& term = m.terms[t];
        const double v = tv[t][i];
        if (term.type == storage::VariableType::kCategorical || term.factor) {
          for (size_t k = 0; k < term.columns; ++k) row[term.firstColumn + k] = 0.0;
          const double level = v - static_cast<double>(term.offset);
          if (level >= 1 && level < static_cast<double>(term.levels))
            row[term.firstColumn + static_cast<size_t>(level) - 1] = 1.0;
        } else {
          row[term.firstColumn] = v;
        }
      }
      double y = yv[i];
      if (survival && timeBin) {
        std::optional<uint64_t> k = timeGridIndex(y, *timeBin);
        if (!k) {
          return Status::invalidArgument(fmt::format(
              "{}: the time {} in row {} of the dataset cannot be placed on the secure-"
              "aggregation time grid (width {}); survival times must be finite and >= 0",
              aggFnName(m.fn), y, start + i + 1, *timeBin));
        }
        y = timeGridTime(*k, *timeBin);
      }
      out.x.values.insert(out.x.values.end(), row.begin(), row.end());
      out.y.push_back(y);
      if (survival) out.event.push_back(ev[i] == m.eventCoding.event ? 1.0 : 0.0);
      const uint32_t s = m.hasStrata ? static_cast<uint32_t>(sv[i]) : 0;
      if (s >= m.strata)
        return Status::corruption(fmt::format(
            "variable {} holds level code {} outside its {} levels in row {}; the stored dataset "
            "needs to be re-imported",
            plan.dictionary.variable(m.strataVar).name, s, m.strata, start + i + 1));
      if (m.hasStrata) out.strata.push_back(s);
      ++out.nPerStratum[s];
    }
  }
  out.x.rows = out.y.size();
  return out;
}

// The last few designs (and Cox row orders) built, keyed by ExecOptions::cacheKey, the
// dictionary and the round's text without its per-round numbers.
struct CacheEntry {
  std::string key;
  std::shared_ptr<const ModelRows> rows;
  std::vector<std::vector<double>> grids;
  std::shared_ptr<const stats::CoxOrder> order;
};
constexpr size_t kCacheEntries = 4;
std::mutex cacheMutex;
std::deque<CacheEntry> cache;  // most recent first

std::string cacheKeyOf(const Plan& plan, const ExecOptions& options) {
  if (options.cacheKey.empty()) return {};
  Query q = plan.query;
  q.select[0].beta.clear();
  q.select[0].center.clear();
  q.select[0].times.clear();
  std::string bin = options.survivalTimeBin ? fmt::format("{}", *options.survivalTimeBin) : "-";
  return options.cacheKey + "\n" + plan.dictionaryHash + "\n" + bin + "\n" + canonicalQueryText(q);
}

CacheEntry lookup(const std::string& key) {
  std::lock_guard<std::mutex> lock(cacheMutex);
  for (const auto& e : cache)
    if (e.key == key) return e;
  return {};
}

void remember(CacheEntry entry) {
  std::lock_guard<std::mutex> lock(cacheMutex);
  for (auto it = cache.begin(); it != cache.end(); ++it) {
    if (it->key == entry.key) {
      cache.erase(it);
      break;
    }
  }
  cache.push_front(std::move(entry));
  if (cache.size() > kCacheEntries) cache.pop_back();
}

void append(std::vector<double>& out, const std::vector<double>& v) {
  out.insert(out.end(), v.begin(), v.end());
}

// The p x p blocks of `v` (symmetric, row-major) as their lower triangles, row by row: a third
// less to send, mask and merge than the full blocks.
void appendLowerTriangles(std::vector<double>& out, const std::vector<double>& v, size_t p) {
  const size_t blocks = p == 0 ? 0 : v.size() / (p * p);
  for (size_t b = 0; b < blocks; ++b) {
    const double* m = v.data() + b * p * p;
    for (size_t i = 0; i < p; ++i)
      for (size_t j = 0; j <= i; ++j) out.push_back(m[i * p + j]);
  }
}

}  // namespace

Result<PartialResult> executeModel(const Plan& plan, const storage::ColumnSource& source,
                                   const ExecOptions& options) {
  const ModelPlan& m = *plan.model;
  const Aggregate& a = plan.query.select.front();
  if (isModel(m.fn)) {
    return Status::invalidArgument(fmt::format(
        "{} is fitted by the coordinator in rounds (lm_sums, glm_sums, cox_times, cox_sums); run "
        "it with `trialmesh query`, which drives the rounds, not as a single site query",
        aggFnName(m.fn)));
  }
  const std::string key = cacheKeyOf(plan, options);
  CacheEntry cached = key.empty() ? CacheEntry{} : lookup(key);
  if (!cached.rows) {
    if (options.survivalTimeBin &&
        !(*options.survivalTimeBin > 0 && std::isfinite(*options.survivalTimeBin))) {
      return Status::invalidArgument(
          fmt::format("the survival time bin must be > 0, got {}", *options.survivalTimeBin));
    }
    TM_ASSIGN_OR_RETURN(ModelRows loaded,
                        loadRows(plan, source, options.survivalTimeBin, options.cancelled.get()));
    cached = CacheEntry{key, std::make_shared<const ModelRows>(std::move(loaded)), {}, nullptr};
    if (!key.empty()) remember(cached);
  }
  // The kernels below run without checks; this is the last point to give up cheaply.
  if (options.cancelled && options.cancelled->load(std::memory_order_relaxed)) {
    return scanCancelledStatus();
  }
  const ModelRows& rows = *cached.rows;
  const size_t p = m.width();
  const uint64_t n = rows.x.rows;
  if (n < options.modelMinSiteRows) {
    // As below: the rule, never the count.
    return Status::permissionDenied(fmt::format(
        "{}: this site has fewer complete-case rows than the approval's model_min_site_rows "
        "({}), so it takes no part in model fits",
        aggFnName(m.fn), options.modelMinSiteRows));
  }
  if (options.modelPerSiteRule &&
      static_cast<double>(p) > kModelParameterShare * static_cast<double>(n)) {
    // The text names the rule, never the site's count: the coordinator learns that the site was
    // left out and by which rule, nothing more.
    return Status::permissionDenied(fmt::format(
        "{}: the model has {} parameters and this site has fewer than the {} complete-case rows "
        "a site needs to answer a model in plain aggregation (parameters <= {} x complete-case "
        "rows, as DataSHIELD's nfilter.glm); in secure aggregation the rule applies to the "
        "pooled rows instead",
        aggFnName(m.fn), p, minimumRowsFor(p), kModelParameterShare));
  }

  PartialResult result;
  result.shape = PartialShape{plan.dictionaryHash, plan.canonical, plan.cells, 1};
  result.rowsScanned = rows.scanned;
  result.cellRows.assign(plan.cells, 0);
  result.cellRows[0] = rows.selected;  // rows passing the filter (not split by stratum)
  StatPartial s;
  s.n.assign(plan.cells, 0);
  s.missing.assign(plan.cells, 0);
  s.missing[0] = rows.missing;
  for (uint32_t k = 0; k < plan.cells; ++k) s.n[k] = rows.nPerStratum[k];
  const std::vector<size_t> all = stats::allRows(n);

  switch (m.fn) {
    case AggFn::kLmSums: {
      TM_ASSIGN_OR_RETURN(stats::LinearSums l, stats::linearSumsFromRows(rows.x, rows.y, all));
      s.vec.reserve(lmSumsLength(p));
      append(s.vec, l.xtx);
      append(s.vec, l.xty);
      s.vec.push_back(l.yty);
      s.vec.push_back(l.sumY);
      break;
    }
    case AggFn::kGlmSums: {
      std::vector<double> beta = a.beta.empty() ? std::vector<double>(p, 0.0) : a.beta;
      TM_ASSIGN_OR_RETURN(stats::LogisticSums l,
                          stats::logisticSumsFromRows(rows.x, rows.y, all, beta));
      s.vec.reserve(glmSumsLength(p));
      append(s.vec, l.xtwx);
      append(s.vec, l.score);
      s.vec.push_back(l.deviance);
      s.vec.push_back(l.sumY);
      s.vec.push_back(static_cast<double>(l.boundary));
      break;
    }
    case AggFn::kCoxTimes: {
      // Distinct event times per stratum with their counts, and the column sums of X.
      s.km.assign(plan.cells, {});
      std::vector<std::vector<double>> times(plan.cells);
      for (size_t r = 0; r < n; ++r)
        if (rows.event[r] == 1.0) times[m.hasStrata ? rows.strata[r] : 0].push_back(rows.y[r]);
      for (uint32_t k = 0; k < plan.cells; ++k) {
        std::sort(times[k].begin(), times[k].end());
        for (double t : times[k]) {
          if (!s.km[k].empty() && s.km[k].back().time == t) {
            ++s.km[k].back().events;
          } else {
            s.km[k].push_back(KmPoint{t, 1, 0});
          }
        }
      }
      s.vec.assign(p, 0.0);
      for (size_t r = 0; r < n; ++r)
        for (size_t j = 0; j < p; ++j) s.vec[j] += rows.x.at(r, j);
      break;
    }
    case AggFn::kCoxSums: {
      stats::SurvivalRows data;
      data.x = &rows.x;
      data.time = rows.y;
      data.event = rows.event;
      data.strata = rows.strata;
      std::vector<double> beta = a.beta.empty() ? std::vector<double>(p, 0.0) : a.beta;
      std::vector<double> center = a.center.empty() ? std::vector<double>(p, 0.0) : a.center;
      // The row order depends only on the rows and the grid: built in the first Newton round,
      // reused by the later ones.
      if (!cached.order || cached.grids != a.times) {
        TM_ASSIGN_OR_RETURN(stats::CoxOrder order, stats::coxOrder(data, all, a.times));
        cached.order = std::make_shared<const stats::CoxOrder>(std::move(order));
        cached.grids = a.times;
        if (!key.empty()) remember(cached);
      }
      TM_ASSIGN_OR_RETURN(stats::CoxSums c, stats::coxSumsOrdered(*cached.order, beta, center));
      s.vec.reserve(coxSumsLength(a.times, p));
      for (const stats::CoxStratumSums& st : c.strata) {
        append(s.vec, st.riskR);
        append(s.vec, st.riskRX);
        appendLowerTriangles(s.vec, st.riskRXX, p);
        // Not sent per time (model_kernel.h coxSumsLength): the deaths, which the coordinator
        // knows from the cox_times round, and deathX, which it only ever uses summed.
        for (size_t j = 0; j < p; ++j) {
          double total = 0;
          for (size_t k = 0; k < st.times.size(); ++k) total += st.deathX[k * p + j];
          s.vec.push_back(total);
        }
        append(s.vec, st.deathR);
        append(s.vec, st.deathRX);
        appendLowerTriangles(s.vec, st.deathRXX, p);
      }
      break;
    }
    default:
      return Status::internal("executeModel: not a model round");
  }
  result.stats.push_back(std::move(s));
  return result;
}

Result<ResultTable> finalizeModel(const PartialResult& partial, const Plan& plan) {
  const ModelPlan& m = *plan.model;
  if (isModel(m.fn)) {
    return Status::invalidArgument(
        fmt::format("{} has no single-query result; fit it with query::fitModel", aggFnName(m.fn)));
  }
  if (partial.stats.size() != 1 || partial.stats[0].n.size() != plan.cells)
    return Status::invalidArgument("model round partial has the wrong shape");
  const StatPartial& s = partial.stats[0];
  // A cells table like any other query's (one row per stratum holding its complete-case rows),
  // so disclosure control treats it as it treats counts; the design's columns are notes.
  ResultTable t;
  t.kind = ResultTable::Kind::kCells;
  t.statistics.push_back(aggregateText(plan.query.select.front()));
  t.columns = t.statistics;
  for (uint32_t c = 0; c < plan.cells; ++c) t.rows.push_back({static_cast<int64_t>(s.n[c])});
  for (size_t k = 0; k < m.columnNames.size(); ++k)
    t.notes.push_back(std::string(kDesignColumnNote) + m.columnNames[k]);
  uint64_t n = 0, missing = 0;
  for (uint64_t v : s.n) n += v;
  for (uint64_t v : s.missing) missing += v;
  t.notes.push_back(fmt::format("{} complete-case rows used", n));
  t.notes.push_back(fmt::format("{} rows dropped for missing values", missing));
  for (size_t k = 0; k < m.strataNames.size(); ++k)
    t.notes.push_back(
        fmt::format("stratum {}={}", plan.dictionary.variable(m.strataVar).name, m.strataNames[k]));
  return t;
}

Result<stats::LinearSums> linearSumsOf(const StatPartial& s, uint32_t p) {
  const size_t pp = size_t{p} * p;
  if (s.vec.size() != lmSumsLength(p) || s.n.size() != 1 || s.missing.size() != 1)
    return Status::invalidArgument(
        fmt::format("lm_sums partial has {} sums; {} expected for {} columns", s.vec.size(),
                    lmSumsLength(p), p));
  stats::LinearSums l;
  l.p = p;
  l.n = s.n[0];
  l.missing = s.missing[0];
  l.xtx.assign(s.vec.begin(), s.vec.begin() + pp);
  l.xty.assign(s.vec.begin() + pp, s.vec.begin() + pp + p);
  l.yty = s.vec[pp + p];
  l.sumY = s.vec[pp + p + 1];
  return l;
}

Result<stats::LogisticSums> logisticSumsOf(const StatPartial& s, uint32_t p) {
  const size_t pp = size_t{p} * p;
  if (s.vec.size() != glmSumsLength(p) || s.n.size() != 1 || s.missing.size() != 1)
    return Status::invalidArgument(
        fmt::format("glm_sums partial has {} sums; {} expected for {} columns", s.vec.size(),
                    glmSumsLength(p), p));
  stats::LogisticSums l;
  l.p = p;
  l.n = s.n[0];
  l.missing = s.missing[0];
  l.xtwx.assign(s.vec.begin(), s.vec.begin() + pp);
  l.score.assign(s.vec.begin() + pp, s.vec.begin() + pp + p);
  l.deviance = s.vec[pp + p];
  l.sumY = s.vec[pp + p + 1];
  l.boundary = static_cast<uint64_t>(std::llround(s.vec[pp + p + 2]));
  return l;
}

Result<stats::CoxSums> coxSumsOf(const StatPartial& s, uint32_t p,
                                 const std::vector<std::vector<double>>& grids,
                                 const std::vector<std::vector<double>>& deaths) {
  const size_t pp = size_t{p} * p;
  const size_t expected = coxSumsLength(grids, p);
  if (deaths.size() != grids.size())
    return Status::invalidArgument(
        fmt::format("cox_sums: {} strata of deaths for {} grids", deaths.size(), grids.size()));
  for (size_t k = 0; k < grids.size(); ++k)
    if (deaths[k].size() != grids[k].size())
      return Status::invalidArgument(
          fmt::format("cox_sums: stratum {} has {} death counts for {} times", k + 1,
                      deaths[k].size(), grids[k].size()));
  if (s.vec.size() != expected || s.n.size() != grids.size() || s.missing.size() != grids.size())
    return Status::invalidArgument(
        fmt::format("cox_sums partial has {} sums and {} strata; {} sums and {} strata expected",
                    s.vec.size(), s.n.size(), expected, grids.size()));
  stats::CoxSums c;
  c.p = p;
  for (uint64_t v : s.missing) c.missing += v;
  size_t at = 0;
  auto take = [&](std::vector<double>& into, size_t count) {
    into.assign(s.vec.begin() + static_cast<std::ptrdiff_t>(at),
                s.vec.begin() + static_cast<std::ptrdiff_t>(at + count));
    at += count;
  };
  // `blocks` lower triangles -> full symmetric p x p blocks.
  auto takeSymmetric = [&](std::vector<double>& into, size_t blocks) {
    into.assign(blocks * pp, 0.0);
    for (size_t b = 0; b < blocks; ++b) {
      double* m = into.data() + b * pp;
      for (size_t i = 0; i < p; ++i) {
        for (size_t j = 0; j <= i; ++j) {
          m[i * p + j] = m[j * p + i] = s.vec[at++];
        }
      }
    }
  };
  for (size_t k = 0; k < grids.size(); ++k) {
    stats::CoxStratumSums st;
    const size_t m = grids[k].size();
    st.times = grids[k];
    st.n = s.n[k];
    take(st.riskR, m);
    take(st.riskRX, m * p);
    takeSymmetric(st.riskRXX, m);
    st.deaths = deaths[k];
    // The stratum's total deathX stands at its first time (coxDerivatives only sums them).
    st.deathX.assign(m * p, 0.0);
    for (size_t j = 0; j < p; ++j) {
      if (m > 0) st.deathX[j] = s.vec[at];
      ++at;
    }
    take(st.deathR, m);
    take(st.deathRX, m * p);
    takeSymmetric(st.deathRXX, m);
    c.strata.push_back(std::move(st));
  }
  return c;
}

}  // namespace trialmesh::query::detail
