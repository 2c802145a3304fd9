#include "stats/cox.h"

#include <cmath>
#include <limits>
#include <string>

#include "stats/distributions.h"
#include "stats/linalg.h"

namespace trialmesh::stats {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

Status checkStratum(const CoxStratumSums& s, uint32_t p, size_t index) {
  const size_t m = s.times.size();
  const size_t pp = size_t{p} * p;
  auto bad = [&](const char* field, size_t have, size_t want) {
    return Status::invalidArgument(
        "Cox sums of stratum " + std::to_string(index + 1) + ": field '" + field + "' has " +
        std::to_string(have) + " entries, expected " + std::to_string(want) +
        " (m = " + std::to_string(m) + " grid times, p = " + std::to_string(p) + ")");
  };
  if (s.riskR.size() != m) return bad("riskR", s.riskR.size(), m);
  if (s.riskRX.size() != m * p) return bad("riskRX", s.riskRX.size(), m * p);
  if (s.riskRXX.size() != m * pp) return bad("riskRXX", s.riskRXX.size(), m * pp);
  if (s.deaths.size() != m) return bad("deaths", s.deaths.size(), m);
  if (s.deathX.size() != m * p) return bad("deathX", s.deathX.size(), m * p);
  if (s.deathR.size() != m) return bad("deathR", s.deathR.size(), m);
  if (s.deathRX.size() != m * p) return bad("deathRX", s.deathRX.size(), m * p);
  if (s.deathRXX.size() != m * pp) return bad("deathRXX", s.deathRXX.size(), m * pp);
  return Status::ok();
}

void addVector(std::vector<double>& acc, const std::vector<double>& other) {
  for (size_t i = 0; i < acc.size(); ++i) acc[i] += other[i];
}

double totalEvents(const CoxSums& sums) {
  double d = 0;
  for (const CoxStratumSums& s : sums.strata) {
    for (double v : s.deaths) d += v;
  }
  return d;
}

}  // namespace

const char* coxTiesName(CoxTies ties) { return ties == CoxTies::kEfron ? "efron" : "breslow"; }

Status mergeInto(CoxSums& acc, const CoxSums& other) {
  if (acc.p == 0 && acc.strata.empty() && acc.missing == 0) {
    acc = other;
    return Status::ok();
  }
  if (acc.p != other.p || acc.strata.size() != other.strata.size()) {
    return Status::invalidArgument("cannot add Cox sums with p = " + std::to_string(other.p) +
                                   " and " + std::to_string(other.strata.size()) +
                                   " strata to sums with p = " + std::to_string(acc.p) + " and " +
                                   std::to_string(acc.strata.size()) + " strata");
  }
  for (size_t i = 0; i < other.strata.size(); ++i) {
    TM_RETURN_IF_ERROR(checkStratum(other.strata[i], other.p, i));
    if (other.strata[i].times != acc.strata[i].times) {
      return Status::invalidArgument("Cox sums of stratum " + std::to_string(i + 1) +
                                     " were computed on a different event-time grid");
    }
  }
  acc.missing += other.missing;
  for (size_t i = 0; i < other.strata.size(); ++i) {
    CoxStratumSums& a = acc.strata[i];
    const CoxStratumSums& o = other.strata[i];
    a.n += o.n;
    addVector(a.riskR, o.riskR);
    addVector(a.riskRX, o.riskRX);
    addVector(a.riskRXX, o.riskRXX);
    addVector(a.deaths, o.deaths);
    addVector(a.deathX, o.deathX);
    addVector(a.deathR, o.deathR);
    addVector(a.deathRX, o.deathRX);
    addVector(a.deathRXX, o.deathRXX);
  }
  return Status::ok();
}

Result<CoxDerivatives> coxDerivatives(const CoxSums& sums, const std::vector<double>& beta,
                                      CoxTies ties) {
  const size_t p = sums.p;
  if (beta.size() != p) {
    return Status::invalidArgument("beta has " + std::to_string(beta.size()) +
                                   " entries, the Cox sums have p = " + std::to_string(p));
  }
  CoxDerivatives out;
  out.score.assign(p, 0.0);
  out.information.assign(p * p, 0.0);
  for (size_t si = 0; si < sums.strata.size(); ++si) {
    const CoxStratumSums& s = sums.strata[si];
    TM_RETURN_IF_ERROR(checkStratum(s, sums.p, si));
    for (size_t k = 0; k < s.times.size(); ++k) {
      const double d = s.deaths[k];
      if (d <= 0) continue;
      const double* dx = &s.deathX[k * p];
      for (size_t j = 0; j < p; ++j) {
        out.loglik += beta[j] * dx[j];
        out.score[j] += dx[j];
      }
      // Efron replaces the risk set of the r-th of d tied deaths by the risk set minus r/d of
      // the tied deaths' weight; Breslow uses the whole risk set d times (one term, weight d).
      // With s0_r = R - f_r D, u_r = 1/s0_r and v_r = f_r/s0_r, term r contributes
      //   score       -(RX u_r - DRX v_r)
      //   information  RXX u_r - DRXX v_r - a_r a_r',  a_r = RX u_r - DRX v_r,
      // so the d terms reduce to five scalar sums and one O(p^2) update per time, not per death
      // (the coordinator runs this between rounds while every site waits).
      const long long terms = ties == CoxTies::kEfron ? std::llround(d) : 1;
      const double weight = ties == CoxTies::kEfron ? 1.0 : d;
      double su = 0, sv = 0, suu = 0, suv = 0, svv = 0;
      for (long long r = 0; r < terms; ++r) {
        const double f = ties == CoxTies::kEfron ? static_cast<double>(r) / d : 0.0;
        const double s0 = s.riskR[k] - f * s.deathR[k];
        if (!(s0 > 0)) {
          return Status::invalidArgument("Cox sums of stratum " + std::to_string(si + 1) +
                                         ": the risk set at time " + std::to_string(s.times[k]) +
                                         " is empty although it has events (malformed sums)");
        }
        const double u = 1.0 / s0, v = f / s0;
        out.loglik -= weight * std::log(s0);
        su += weight * u;
        sv += weight * v;
        suu += weight * u * u;
        suv += weight * u * v;
        svv += weight * v * v;
      }
      const double* rx = &s.riskRX[k * p];
      const double* drx = &s.deathRX[k * p];
      const double* rxx = &s.riskRXX[k * p * p];
      const double* drxx = &s.deathRXX[k * p * p];
      for (size_t i = 0; i < p; ++i) {
        out.score[i] -= rx[i] * su - drx[i] * sv;
        for (size_t j = 0; j < p; ++j) {
          const size_t ij = i * p + j;
          out.information[ij] += rxx[ij] * su - drxx[ij] * sv -
                                 (rx[i] * rx[j] * suu - (rx[i] * drx[j] + drx[i] * rx[j]) * suv +
                                  drx[i] * drx[j] * svv);
        }
      }
    }
  }
  return out;
}

Result<CoxFit> fitCox(const std::vector<std::string>& names, const CoxEvaluator& evaluate,
                      const CoxOptions& options) {
  const uint32_t p = static_cast<uint32_t>(names.size());
  if (p == 0) return Status::invalidArgument("Cox model has no covariates");
  if (options.maxIterations < 1) {
    return Status::invalidArgument("Cox model: maxIterations must be at least 1, got " +
                                   std::to_string(options.maxIterations));
  }
  CoxFit fit;
  fit.ties = options.ties;
  fit.confLevel = options.confLevel;

  auto round = [&](const std::vector<double>& beta) -> Result<CoxDerivatives> {
    ++fit.rounds;
    Result<CoxSums> r = evaluate(beta);
    if (!r.isOk()) return r.status().withContext("Cox round " + std::to_string(fit.rounds));
    if (r->p != p) {
      return Status::invalidArgument(
          "Cox model has " + std::to_string(p) +
          " covariate names but the sums have p = " + std::to_string(r->p));
    }
    if (fit.rounds == 1) {
      fit.strata = r->strata.size();
      fit.missing = r->missing;
      for (const CoxStratumSums& s : r->strata) fit.n += s.n;
      fit.events = static_cast<uint64_t>(std::llround(totalEvents(*r)));
    }
    return coxDerivatives(*r, beta, options.ties);
  };

  std::vector<double> beta(p, 0.0);
  TM_ASSIGN_OR_RETURN(CoxDerivatives d0, round(beta));
  if (fit.events == 0) {
    return Status::invalidArgument("Cox model: no events among the " + std::to_string(fit.n) +
                                   " complete rows; the model cannot be fitted");
  }
  fit.loglikNull = d0.loglik;
  TM_ASSIGN_OR_RETURN(SymmetricFactor f0, SymmetricFactor::factor(d0.information, p, names));
  const double scoreTest = f0.inverseQuadraticForm(d0.score);
  std::vector<double> newBeta = beta;
  {
    std::vector<double> step = f0.solve(d0.score);
    for (uint32_t j = 0; j < p; ++j) newBeta[j] += step[j];
  }

  // survival's coxfit6 main loop.
  double loglikPrev = d0.loglik;
  bool halving = false;
  CoxDerivatives d;
  for (fit.iterations = 1; fit.iterations <= options.maxIterations; ++fit.iterations) {
    TM_ASSIGN_OR_RETURN(d, round(newBeta));
    if (std::fabs(1 - loglikPrev / d.loglik) <= options.epsilon && !halving) {
      fit.converged = true;
      break;
    }
    if (fit.iterations == options.maxIterations) break;
    if (d.loglik < loglikPrev) {
      halving = true;
      for (uint32_t j = 0; j < p; ++j) newBeta[j] = 0.5 * (newBeta[j] + beta[j]);
    } else {
      halving = false;
      loglikPrev = d.loglik;
      Result<SymmetricFactor> f = SymmetricFactor::factor(d.information, p, names);
      if (!f.isOk()) {
        return f.status().withContext("Cox Newton–Raphson iteration " +
                                      std::to_string(fit.iterations) +
                                      " (a coefficient may be diverging to infinity)");
      }
      std::vector<double> step = f->solve(d.score);
      beta = newBeta;
      for (uint32_t j = 0; j < p; ++j) newBeta[j] += step[j];
    }
  }
  if (!fit.converged) fit.warnings.push_back("Ran out of iterations and did not converge");
  beta = newBeta;
  fit.loglik = d.loglik;

  const double q = detail::normalQuantile(1 - (1 - options.confLevel) / 2);
  Result<SymmetricFactor> fi = SymmetricFactor::factor(d.information, p, names);
  if (fi.isOk()) {
    fit.covariance = fi->inverse();
    fit.wald.statistic = dot(beta, multiply(d.information, beta));
    // coxph.fit (only after convergence): u var, compared with eps and toler.inf = sqrt(eps)
    // relative to |coef|.
    std::vector<double> infs = multiply(fit.covariance, d.score);
    std::string which;
    for (uint32_t j = 0; j < p && fit.converged; ++j) {
      double v = std::fabs(infs[j]);
      if (v > options.epsilon && v > std::sqrt(options.epsilon) * std::fabs(beta[j])) {
        which += (which.empty() ? "" : ",") + std::to_string(j + 1);
      }
    }
    if (!which.empty()) {
      fit.warnings.push_back("Loglik converged before variable  " + which +
                             " ; coefficient may be infinite. ");
    }
  } else {
    // The information is singular at the fit: a coefficient ran off to infinity.
    fit.covariance.assign(size_t{p} * p, kNaN);
    fit.wald.statistic = kNaN;
    fit.warnings.push_back(fi.status().message() +
                           " at the fitted coefficients; a coefficient "
                           "may be infinite");
  }
  for (uint32_t j = 0; j < p; ++j) {
    CoxCoefficient c;
    c.name = names[j];
    c.coef = beta[j];
    c.hazardRatio = std::exp(beta[j]);
    c.stdError = std::sqrt(fit.covariance[size_t{j} * p + j]);
    c.z = c.coef / c.stdError;
    c.pValue = detail::twoSidedNormal(c.z);
    c.lower = std::exp(c.coef - q * c.stdError);
    c.upper = std::exp(c.coef + q * c.stdError);
    fit.coefficients.push_back(std::move(c));
  }
  fit.likelihoodRatio.statistic = 2 * (fit.loglik - fit.loglikNull);
  fit.score.statistic = scoreTest;
  for (CoxTest* t : {&fit.likelihoodRatio, &fit.wald, &fit.score}) {
    t->df = p;
    t->pValue = detail::upperChiSquared(t->statistic, t->df);
  }
  return fit;
}

}  // namespace trialmesh::stats
