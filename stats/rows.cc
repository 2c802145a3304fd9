#include "stats/rows.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <map>
#include <string>

namespace trialmesh::stats {

namespace {

Status checkRows(const DesignMatrix& x, size_t ySize, std::span<const size_t> rows,
                 const char* yName) {
  if (x.values.size() != x.rows * x.cols) {
    return Status::invalidArgument("design matrix has " + std::to_string(x.values.size()) +
                                   " values for " + std::to_string(x.rows) + " rows x " +
                                   std::to_string(x.cols) + " columns");
  }
  if (ySize != x.rows) {
    return Status::invalidArgument(std::string(yName) + " has " + std::to_string(ySize) +
                                   " values but the design matrix has " + std::to_string(x.rows) +
                                   " rows");
  }
  for (size_t r : rows) {
    if (r >= x.rows) {
      return Status::invalidArgument("row index " + std::to_string(r) + " is out of range (" +
                                     std::to_string(x.rows) + " rows)");
    }
  }
  return Status::ok();
}

bool rowComplete(const DesignMatrix& x, size_t r) {
  for (size_t c = 0; c < x.cols; ++c) {
    if (std::isnan(x.at(r, c))) return false;
  }
  return true;
}

Status checkBinary(double v, size_t r, const char* what) {
  if (v != 0.0 && v != 1.0) {
    return Status::invalidArgument(std::string(what) + " of row " + std::to_string(r) + " is " +
                                   std::to_string(v) + "; it must be 0 or 1");
  }
  return Status::ok();
}

// Checks lengths and returns the rows that are complete for a survival model; `missing`
// counts the others.
Result<std::vector<size_t>> completeSurvivalRows(const SurvivalRows& data,
                                                 std::span<const size_t> rows, size_t strataCount,
                                                 uint64_t& missing) {
  const size_t n = data.time.size();
  if (data.event.size() != n || (!data.strata.empty() && data.strata.size() != n)) {
    return Status::invalidArgument("survival data has " + std::to_string(n) + " times, " +
                                   std::to_string(data.event.size()) + " event values and " +
                                   std::to_string(data.strata.size()) + " strata values");
  }
  if (data.x != nullptr) TM_RETURN_IF_ERROR(checkRows(*data.x, n, rows, "time"));
  std::vector<size_t> out;
  missing = 0;
  for (size_t r : rows) {
    if (r >= n) {
      return Status::invalidArgument("row index " + std::to_string(r) + " is out of range (" +
                                     std::to_string(n) + " rows)");
    }
    if (std::isnan(data.time[r]) || std::isnan(data.event[r]) ||
        (data.x != nullptr && !rowComplete(*data.x, r))) {
      ++missing;
      continue;
    }
    TM_RETURN_IF_ERROR(checkBinary(data.event[r], r, "event"));
    if (!data.strata.empty() && data.strata[r] >= strataCount) {
      return Status::invalidArgument("stratum " + std::to_string(data.strata[r]) + " of row " +
                                     std::to_string(r) + " is out of range (" +
                                     std::to_string(strataCount) + " strata)");
    }
    out.push_back(r);
  }
  return out;
}

}  // namespace

std::vector<size_t> allRows(size_t n) {
  std::vector<size_t> rows(n);
  for (size_t i = 0; i < n; ++i) rows[i] = i;
  return rows;
}

Result<LinearSums> linearSumsFromRows(const DesignMatrix& x, std::span<const double> y,
                                      std::span<const size_t> rows) {
  TM_RETURN_IF_ERROR(checkRows(x, y.size(), rows, "y"));
  const size_t p = x.cols;
  LinearSums s;
  s.p = static_cast<uint32_t>(p);
  s.xtx.assign(p * p, 0.0);
  s.xty.assign(p, 0.0);
  for (size_t r : rows) {
    if (std::isnan(y[r]) || !rowComplete(x, r)) {
      ++s.missing;
      continue;
    }
    const double* xr = &x.values[r * p];
    ++s.n;
    for (size_t i = 0; i < p; ++i) {
      s.xty[i] += xr[i] * y[r];
      for (size_t j = 0; j <= i; ++j) s.xtx[i * p + j] += xr[i] * xr[j];
    }
    s.yty += y[r] * y[r];
    s.sumY += y[r];
  }
  for (size_t i = 0; i < p; ++i) {
    for (size_t j = 0; j < i; ++j) s.xtx[j * p + i] = s.xtx[i * p + j];
  }
  return s;
}

Result<LogisticSums> logisticSumsFromRows(const DesignMatrix& x, std::span<const double> y,
                                          std::span<const size_t> rows,
                                          const std::vector<double>& beta) {
  TM_RETURN_IF_ERROR(checkRows(x, y.size(), rows, "y"));
  const size_t p = x.cols;
  if (beta.size() != p) {
    return Status::invalidArgument("beta has " + std::to_string(beta.size()) + " entries for " +
                                   std::to_string(p) + " columns");
  }
  LogisticSums s;
  s.p = static_cast<uint32_t>(p);
  s.xtwx.assign(p * p, 0.0);
  s.score.assign(p, 0.0);
  // Restrict-qualified accumulators, so the per-row updates stay vectorisable and in cache.
  double* __restrict xtwx = s.xtwx.data();
  double* __restrict score = s.score.data();
  const double boundaryEps = 10 * DBL_EPSILON;
  for (size_t r : rows) {
    if (std::isnan(y[r]) || !rowComplete(x, r)) {
      ++s.missing;
      continue;
    }
    TM_RETURN_IF_ERROR(checkBinary(y[r], r, "outcome"));
    const double* __restrict xr = &x.values[r * p];
    double eta = 0;
    for (size_t j = 0; j < p; ++j) eta += xr[j] * beta[j];
    // R's binomial()$linkinv and $mu.eta (C_logit_linkinv / C_logit_mu_eta), thresholds 30;
    // exp(eta) is computed once (R computes it in each function; the values are identical).
    const bool clamped = eta < -30 || eta > 30;
    const double e = clamped ? 0.0 : std::exp(eta);
    const double tmp = eta < -30 ? DBL_EPSILON : (eta > 30 ? 1 / DBL_EPSILON : e);
    const double mu = tmp / (1 + tmp);
    const double opexp = 1 + e;
    const double muEta = clamped ? DBL_EPSILON : e / (opexp * opexp);
    const double variance = mu * (1 - mu);
    const double w = muEta * muEta / variance;
    const double u = (y[r] - mu) * muEta / variance;
    ++s.n;
    s.sumY += y[r];
    for (size_t i = 0; i < p; ++i) {
      score[i] += xr[i] * u;
      const double wx = w * xr[i];
      double* __restrict out = xtwx + i * p;
      for (size_t j = 0; j <= i; ++j) out[j] += wx * xr[j];
    }
    s.deviance += y[r] == 1.0 ? -2 * std::log(mu) : -2 * std::log(1 - mu);
    if (mu > 1 - boundaryEps || mu < boundaryEps) ++s.boundary;
  }
  for (size_t i = 0; i < p; ++i) {
    for (size_t j = 0; j < i; ++j) xtwx[j * p + i] = xtwx[i * p + j];
  }
  return s;
}

Result<std::vector<std::vector<double>>> coxEventTimes(const SurvivalRows& data,
                                                       std::span<const size_t> rows,
                                                       size_t strataCount) {
  if (strataCount == 0) return Status::invalidArgument("strataCount must be at least 1");
  uint64_t missing = 0;
  TM_ASSIGN_OR_RETURN(std::vector<size_t> use,
                      completeSurvivalRows(data, rows, strataCount, missing));
  std::vector<std::vector<double>> times(strataCount);
  for (size_t r : use) {
    if (data.event[r] == 1.0)
      times[data.strata.empty() ? 0 : data.strata[r]].push_back(data.time[r]);
  }
  for (auto& t : times) {
    std::sort(t.begin(), t.end());
    t.erase(std::unique(t.begin(), t.end()), t.end());
  }
  return times;
}

Result<CoxOrder> coxOrder(const SurvivalRows& data, std::span<const size_t> rows,
                          const std::vector<std::vector<double>>& grids) {
  if (data.x == nullptr) return Status::invalidArgument("Cox sums need a design matrix");
  if (grids.empty()) return Status::invalidArgument("Cox sums need at least one stratum grid");
  const size_t p = data.x->cols;
  CoxOrder order;
  order.p = p;
  TM_ASSIGN_OR_RETURN(std::vector<size_t> use,
                      completeSurvivalRows(data, rows, grids.size(), order.missing));
  order.strata.resize(grids.size());
  // Grid slot of every row: it is at risk at grid times 0 .. k-1 (t <= time); slot k-1, or
  // none when k == 0 (never at risk at an event time of its stratum).
  std::vector<uint32_t> slot(use.size());
  for (size_t u = 0; u < use.size(); ++u) {
    const size_t r = use[u];
    const size_t s = data.strata.empty() ? 0 : data.strata[r];
    CoxOrder::Stratum& st = order.strata[s];
    const std::vector<double>& grid = grids[s];
    ++st.n;
    const size_t k = static_cast<size_t>(std::upper_bound(grid.begin(), grid.end(), data.time[r]) -
                                         grid.begin());
    const bool event = data.event[r] == 1.0;
    if (event && (k == 0 || grid[k - 1] != data.time[r])) {
      return Status::invalidArgument("event time " + std::to_string(data.time[r]) + " of row " +
                                     std::to_string(r) + " is not on the event-time grid of " +
                                     "stratum " + std::to_string(s + 1) +
                                     " (the grid must hold every event time)");
    }
    slot[u] = static_cast<uint32_t>(k);  // 0 = never at risk
  }
  // Counting sort by slot, per stratum: rows of slot t are [start[t], start[t+1]).
  for (size_t s = 0; s < grids.size(); ++s) {
    CoxOrder::Stratum& st = order.strata[s];
    st.times = grids[s];
    st.start.assign(grids[s].size() + 1, 0);
  }
  for (size_t u = 0; u < use.size(); ++u) {
    if (slot[u] == 0) continue;
    const size_t s = data.strata.empty() ? 0 : data.strata[use[u]];
    ++order.strata[s].start[slot[u]];
  }
  std::vector<std::vector<size_t>> fill(grids.size());
  for (size_t s = 0; s < grids.size(); ++s) {
    CoxOrder::Stratum& st = order.strata[s];
    for (size_t t = 1; t < st.start.size(); ++t) st.start[t] += st.start[t - 1];
    fill[s].assign(st.start.begin(), st.start.end() - 1);
    st.x.resize(st.start.back() * p);
    st.event.resize(st.start.back());
  }
  for (size_t u = 0; u < use.size(); ++u) {
    if (slot[u] == 0) continue;
    const size_t r = use[u];
    const size_t s = data.strata.empty() ? 0 : data.strata[r];
    CoxOrder::Stratum& st = order.strata[s];
    const size_t at = fill[s][slot[u] - 1]++;
    for (size_t j = 0; j < p; ++j) st.x[at * p + j] = data.x->at(r, j);
    st.event[at] = data.event[r] == 1.0 ? 1 : 0;
  }
  return order;
}

// GCC on x86-64 builds the marked function twice, for AVX2 + FMA and for the baseline, and
// picks one at load (an ifunc); elsewhere the baseline alone is built.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define TM_CLONE_FOR_AVX2_FMA __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define TM_CLONE_FOR_AVX2_FMA
#endif

namespace {

// One stratum of coxSumsOrdered: a sweep from the last grid time down, where the running sums
// over the rows with time >= t_k are the risk-set sums at t_k. Rows are stored in slot order,
// so every read is sequential and every write lands in the current slot. Each row costs one
// p x p rank-one update: an event row adds into its slot's death sums, which join the running
// sums once per slot, so a death is not accumulated twice. The inner loops run over
// contiguous rows of p doubles for the vectoriser; the clone lets a CPU with AVX2 and FMA use
// them (chosen once at load), and the baseline build stays portable.
TM_CLONE_FOR_AVX2_FMA void sweepStratum(const CoxOrder::Stratum& in, size_t p,
                                        const double* __restrict beta,
                                        const double* __restrict center, CoxStratumSums& st,
                                        double* __restrict xc, double* __restrict runRX,
                                        double* __restrict runRXX) {
  const size_t pp = p * p;
  const size_t m = in.times.size();
  double runR = 0;
  std::fill(runRX, runRX + p, 0.0);
  std::fill(runRXX, runRXX + pp, 0.0);
  for (size_t t = m; t-- > 0;) {
    double* __restrict dX = &st.deathX[t * p];
    double* __restrict dRX = &st.deathRX[t * p];
    double* __restrict dRXX = &st.deathRXX[t * pp];
    double deaths = 0;
    double dR = 0;
    for (size_t row = in.start[t]; row < in.start[t + 1]; ++row) {
      const double* __restrict x = &in.x[row * p];
      double eta = 0;
      for (size_t j = 0; j < p; ++j) {
        xc[j] = x[j] - center[j];
        eta += xc[j] * beta[j];
      }
      const double w = std::exp(eta);
      double* __restrict rx;
      double* __restrict rxx;
      if (in.event[row]) {
        deaths += 1;
        dR += w;
        for (size_t j = 0; j < p; ++j) dX[j] += xc[j];
        rx = dRX;
        rxx = dRXX;
      } else {
        runR += w;
        rx = runRX;
        rxx = runRXX;
      }
      for (size_t i = 0; i < p; ++i) {
        const double wx = w * xc[i];
        rx[i] += wx;
        double* __restrict out = rxx + i * p;
        for (size_t j = 0; j < p; ++j) out[j] += wx * xc[j];
      }
    }
    st.deaths[t] = deaths;
    st.deathR[t] = dR;
    runR += dR;
    for (size_t j = 0; j < p; ++j) runRX[j] += dRX[j];
    for (size_t k = 0; k < pp; ++k) runRXX[k] += dRXX[k];
    st.riskR[t] = runR;
    std::copy(runRX, runRX + p, st.riskRX.begin() + static_cast<std::ptrdiff_t>(t * p));
    // Both triangles were accumulated; keep them exactly symmetric (w x_i x_j and w x_j x_i
    // may round differently) by mirroring the lower one, as the wire carries only it.
    double* risk = &st.riskRXX[t * pp];
    for (size_t i = 0; i < p; ++i) {
      for (size_t j = 0; j <= i; ++j) {
        risk[i * p + j] = risk[j * p + i] = runRXX[i * p + j];
        dRXX[j * p + i] = dRXX[i * p + j];
      }
    }
  }
}

}  // namespace

Result<CoxSums> coxSumsOrdered(const CoxOrder& order, const std::vector<double>& beta,
                               const std::vector<double>& center) {
  const size_t p = order.p;
  if (beta.size() != p || center.size() != p) {
    return Status::invalidArgument("beta has " + std::to_string(beta.size()) + " and center " +
                                   std::to_string(center.size()) + " entries for " +
                                   std::to_string(p) + " covariates");
  }
  const size_t pp = p * p;
  CoxSums sums;
  sums.p = static_cast<uint32_t>(p);
  sums.missing = order.missing;
  sums.strata.resize(order.strata.size());
  std::vector<double> xc(p), runRX(p), runRXX(pp);
  for (size_t s = 0; s < order.strata.size(); ++s) {
    const CoxOrder::Stratum& in = order.strata[s];
    CoxStratumSums& st = sums.strata[s];
    const size_t m = in.times.size();
    st.times = in.times;
    st.n = in.n;
    st.riskR.assign(m, 0.0);
    st.riskRX.assign(m * p, 0.0);
    st.riskRXX.assign(m * pp, 0.0);
    st.deaths.assign(m, 0.0);
    st.deathX.assign(m * p, 0.0);
    st.deathR.assign(m, 0.0);
    st.deathRX.assign(m * p, 0.0);
    st.deathRXX.assign(m * pp, 0.0);
    sweepStratum(in, p, beta.data(), center.data(), st, xc.data(), runRX.data(), runRXX.data());
  }
  return sums;
}

Result<CoxSums> coxSumsFromRows(const SurvivalRows& data, std::span<const size_t> rows,
                                const std::vector<double>& beta, const std::vector<double>& center,
                                const std::vector<std::vector<double>>& grids) {
  if (data.x == nullptr) return Status::invalidArgument("Cox sums need a design matrix");
  const size_t p = data.x->cols;
  if (beta.size() != p || center.size() != p) {
    return Status::invalidArgument("beta has " + std::to_string(beta.size()) + " and center " +
                                   std::to_string(center.size()) + " entries for " +
                                   std::to_string(p) + " covariates");
  }
  TM_ASSIGN_OR_RETURN(CoxOrder order, coxOrder(data, rows, grids));
  return coxSumsOrdered(order, beta, center);
}

Result<std::vector<SurvivalPoint>> survivalPointsFromRows(const SurvivalRows& data,
                                                          std::span<const size_t> rows) {
  uint64_t missing = 0;
  SurvivalRows unstratified = data;
  unstratified.strata = {};
  TM_ASSIGN_OR_RETURN(std::vector<size_t> use,
                      completeSurvivalRows(unstratified, rows, 1, missing));
  std::map<double, SurvivalPoint> byTime;
  for (size_t r : use) {
    SurvivalPoint& pt = byTime[data.time[r]];
    pt.time = data.time[r];
    (data.event[r] == 1.0 ? pt.events : pt.censored) += 1;
  }
  std::vector<SurvivalPoint> out;
  for (const auto& [t, pt] : byTime) out.push_back(pt);
  return out;
}

}  // namespace trialmesh::stats
