// Cox proportional hazards fitted by the coordinator by Newton–Raphson over the combined risk
// sets, from additive per-event-time sums that each site computes over its own rows at the
// coordinator's current beta (rows.h: coxSumsFromRows; formulas in docs/statistics.md).
//
// Why these sums: the partial likelihood at an event time t_k needs sums over the pooled risk
// set {i : time_i >= t_k} and over the pooled events tied at t_k. Each is a sum over rows, so a
// site computes its rows' contribution to every grid time and the coordinator adds them; the
// non-linear parts (logs and ratios) are taken only after adding, which makes the federated
// fit equal to the pooled one.
//
// Covariates are centred by a vector the coordinator chooses (R centres by the column means):
// the likelihood does not change, but exp(x'beta) stays in range.
//
// Thread-safety: plain values and pure functions; fitCox calls `evaluate` sequentially.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/status.h"

namespace trialmesh::stats {

enum class CoxTies { kEfron, kBreslow };  // R: ties = "efron" (default) | "breslow"

const char* coxTiesName(CoxTies ties);  // "efron" / "breslow"

// The sums of one stratum at one beta over its event-time grid t_1 < ... < t_m (the distinct
// event times of the stratum over all sites; the coordinator sends them). p = covariates;
// x = centred covariates, r = exp(x'beta). Per-time vectors are time-major: entry [k*p + j],
// and [k*p*p + i*p + j] for the p*p matrices (both triangles filled).
struct CoxStratumSums {
  std::vector<double> times;     // m grid times (identical at every site; not summed)
  uint64_t n = 0;                // rows of the stratum used
  std::vector<double> riskR;     // m:     sum_{time >= t_k} r
  std::vector<double> riskRX;    // m*p:   sum_{time >= t_k} r x
  std::vector<double> riskRXX;   // m*p*p: sum_{time >= t_k} r x x'
  std::vector<double> deaths;    // m:     d_k, events at t_k (whole numbers, kept as double)
  std::vector<double> deathX;    // m*p:   sum_{events at t_k} x
  std::vector<double> deathR;    // m:     sum_{events at t_k} r       (Efron)
  std::vector<double> deathRX;   // m*p:   sum_{events at t_k} r x     (Efron)
  std::vector<double> deathRXX;  // m*p*p: sum_{events at t_k} r x x'  (Efron)
  bool operator==(const CoxStratumSums&) const = default;
};

// All strata (one for an unstratified model; e.g. one per site for `strata(site)`).
struct CoxSums {
  uint32_t p = 0;
  uint64_t missing = 0;  // rows dropped because a variable was missing
  std::vector<CoxStratumSums> strata;
  bool operator==(const CoxSums&) const = default;
};

// Adds `other` into `acc` stratum by stratum. Errors: InvalidArgument when p, the number of
// strata, a grid or a vector length differs; `acc` is unchanged then. An empty `acc` takes
// the shape of `other`.
Status mergeInto(CoxSums& acc, const CoxSums& other);

// Log partial likelihood, score (p) and information (p*p, row-major) of summed sums.
struct CoxDerivatives {
  double loglik = 0;
  std::vector<double> score;
  std::vector<double> information;
};
// Errors: InvalidArgument for malformed sums (lengths, an event time with an empty risk set).
Result<CoxDerivatives> coxDerivatives(const CoxSums& sums, const std::vector<double>& beta,
                                      CoxTies ties);

// One federated round: the sums over all sites at `beta` (p entries).
using CoxEvaluator = std::function<Result<CoxSums>(const std::vector<double>& beta)>;

struct CoxOptions {
  CoxTies ties = CoxTies::kEfron;
  double epsilon = 1e-9;    // coxph.control eps: |1 - loglik_old / loglik_new| <= eps
  int maxIterations = 20;   // coxph.control iter.max
  double confLevel = 0.95;  // for the hazard-ratio intervals
};

struct CoxCoefficient {
  std::string name;
  double coef = 0;
  double hazardRatio = 0;  // exp(coef)
  double stdError = 0;
  double z = 0;
  double pValue = 0;
  double lower = 0;  // exp(coef - q se), q = qnorm(1 - (1 - confLevel) / 2)
  double upper = 0;
};

struct CoxTest {
  double statistic = 0;
  double df = 0;
  double pValue = 0;
};

struct CoxFit {
  std::vector<CoxCoefficient> coefficients;
  CoxTies ties = CoxTies::kEfron;
  double confLevel = 0.95;
  uint64_t n = 0;
  uint64_t events = 0;
  uint64_t missing = 0;
  size_t strata = 1;
  double loglikNull = 0;  // at beta = 0
  double loglik = 0;      // at the fit
  CoxTest likelihoodRatio;
  CoxTest wald;
  CoxTest score;  // at beta = 0, as R
  int iterations = 0;
  int rounds = 0;  // calls of `evaluate`
  bool converged = false;
  std::vector<std::string> warnings;  // R's texts (non-convergence, infinite coefficients)
  std::vector<double> covariance;     // I(beta)^{-1}, p*p row-major
};

// Newton–Raphson exactly as survival's coxfit6: start at 0, step halving when the likelihood
// drops, convergence when |1 - ll_old/ll_new| <= epsilon. Errors: InvalidArgument for
// mismatched names / sums, no events, a collinear design; the first error of `evaluate`.
// Non-convergence is not an error (converged = false, warning recorded, as R).
Result<CoxFit> fitCox(const std::vector<std::string>& names, const CoxEvaluator& evaluate,
                      const CoxOptions& options = {});

}  // namespace trialmesh::stats
