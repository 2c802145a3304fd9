// Linear and logistic regression fitted by the coordinator from additive sufficient
// statistics that each site computes over its own rows (see rows.h for the row-level
// evaluator and docs/statistics.md for the formulas).
//
// The protocol: every *Sums struct is a set of sums over rows, so the sums of any split of the
// rows add up (mergeInto) to the sums of all of them, and can be securely aggregated. The fit
// functions see only summed values, never rows.
//
// Design-matrix convention: column j of X is named names[j]. A model with an intercept has
// names[0] == kInterceptName and X[:,0] == 1 (like R's model.matrix); this decides R², the F
// test and the null deviance exactly as R's lm/glm do with and without an intercept.
//
// Thread-safety: plain values and pure functions; fitLogistic calls `evaluate` sequentially
// from the calling thread.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/status.h"

namespace trialmesh::stats {

inline constexpr const char* kInterceptName = "(Intercept)";

// One row of a coefficient table. `statistic` is t (linear) or z (logistic).
struct Coefficient {
  std::string name;
  double estimate = 0;
  double stdError = 0;
  double statistic = 0;
  double pValue = 0;
};

// ---------------------------------------------------------------------------------------
// Linear regression (R's lm, unweighted).

// Layout (p = number of columns of X, fixed by the query): all fields are sums over the
// complete-case rows of one site (or of several, after mergeInto).
struct LinearSums {
  uint32_t p = 0;
  uint64_t n = 0;           // rows used (every x and y present)
  uint64_t missing = 0;     // rows dropped because a variable was missing
  std::vector<double> xtx;  // X'X, p*p row-major (symmetric; both triangles filled)
  std::vector<double> xty;  // X'y, p
  double yty = 0;           // y'y
  double sumY = 0;          // sum of y (for the total sum of squares with an intercept)
  bool operator==(const LinearSums&) const = default;
};

// Adds `other` into `acc`. Errors: InvalidArgument when p or a vector length differs (a
// malformed message from a peer); `acc` is unchanged then. An empty `acc` (p == 0, n == 0)
// takes the shape of `other`.
Status mergeInto(LinearSums& acc, const LinearSums& other);

struct LinearFit {
  std::vector<Coefficient> coefficients;  // t statistics
  bool intercept = false;
  uint64_t n = 0;
  uint64_t missing = 0;
  double dfResidual = 0;  // n - p
  double rss = 0;         // residual sum of squares
  double sigma = 0;       // residual standard error
  double rSquared = 0;
  double adjRSquared = 0;
  // F test of all non-intercept coefficients; NaN (and dfs 0) for an intercept-only model,
  // where R prints no F line.
  double fStatistic = 0;
  double fDf1 = 0;
  double fDf2 = 0;
  double fPValue = 0;
  std::vector<double> covariance;  // sigma^2 (X'X)^{-1}, p*p row-major (R's vcov)
};

// Errors: InvalidArgument when names.size() != sums.p, when n <= p (no residual degrees of
// freedom), or "coefficient 'x' is not estimable: design is collinear ..." (linalg.h).
Result<LinearFit> fitLinear(const std::vector<std::string>& names, const LinearSums& sums);

// ---------------------------------------------------------------------------------------
// Logistic regression (R's glm, family = binomial, logit link, 0/1 outcome, unit weights).

// Sums at one coefficient vector beta (eta = X beta, mu = 1 / (1 + exp(-eta))).
struct LogisticSums {
  uint32_t p = 0;
  uint64_t n = 0;             // rows used
  uint64_t missing = 0;       // rows dropped because a variable was missing
  double sumY = 0;            // number of rows with y = 1 (null deviance)
  std::vector<double> xtwx;   // X' W X, W = diag(mu (1 - mu)), p*p row-major
  std::vector<double> score;  // X' (y - mu), p
  double deviance = 0;        // -2 sum [y log mu + (1 - y) log(1 - mu)]
  uint64_t boundary = 0;      // rows with mu within 10 eps of 0 or 1 (R's warning)
  bool operator==(const LogisticSums&) const = default;
};

Status mergeInto(LogisticSums& acc, const LogisticSums& other);

// One federated round: the sums over all sites at `beta` (p entries). An error aborts the fit
// and is returned from fitLogistic with context.
using LogisticEvaluator = std::function<Result<LogisticSums>(const std::vector<double>& beta)>;

struct LogisticOptions {
  double epsilon = 1e-8;   // glm.control: |dev - dev_old| / (|dev| + 0.1) < epsilon
  int maxIterations = 25;  // glm.control maxit
};

struct LogisticFit {
  std::vector<Coefficient> coefficients;  // z statistics
  bool intercept = false;
  uint64_t n = 0;
  uint64_t missing = 0;
  double nullDeviance = 0;
  double dfNull = 0;
  double deviance = 0;
  double dfResidual = 0;
  double aic = 0;
  uint64_t events = 0;  // rows with y = 1, over the rows used
  // Likelihood-ratio test against the null model (anova(fit, test = "Chisq")): null deviance
  // minus residual deviance on dfNull - dfResidual df; p NaN (NA) without dropped df.
  double lrStatistic = 0;
  double lrDf = 0;
  double lrPValue = 0;
  int iterations = 0;  // IRLS iterations, as glm's $iter ("Number of Fisher Scoring iterations")
  int rounds = 0;      // calls of `evaluate` (iterations + 1, plus step halvings)
  bool converged = false;
  std::vector<std::string> warnings;  // R's warning texts (non-convergence, fitted 0/1)
  std::vector<double> covariance;     // (X' W X)^{-1}, p*p row-major
};

// IRLS exactly as glm.fit: starting values mu = (y + 0.5) / 2, convergence on the relative
// change of deviance, step halving when the deviance is not finite. Errors: InvalidArgument
// for mismatched names / sums, no rows, a collinear design; the first error of `evaluate`.
// Non-convergence is not an error: `converged` is false and a warning is recorded, as in R.
Result<LogisticFit> fitLogistic(const std::vector<std::string>& names,
                                const LogisticEvaluator& evaluate,
                                const LogisticOptions& options = {});

}  // namespace trialmesh::stats
