#include "stats/regression.h"

#include <cmath>
#include <limits>
#include <string>

#include "stats/distributions.h"
#include "stats/linalg.h"

namespace trialmesh::stats {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

Status checkShape(uint32_t p, size_t have, size_t want, const char* field) {
  if (have != want) {
    return Status::invalidArgument(std::string("sums field '") + field + "' has " +
                                   std::to_string(have) + " entries, expected " +
                                   std::to_string(want) + " for p = " + std::to_string(p));
  }
  return Status::ok();
}

Status checkNames(const std::vector<std::string>& names, uint32_t p) {
  if (names.size() != p) {
    return Status::invalidArgument("model has " + std::to_string(names.size()) +
                                   " coefficient names but the sums have p = " + std::to_string(p) +
                                   " columns");
  }
  if (p == 0) return Status::invalidArgument("model has no coefficients");
  return Status::ok();
}

bool hasIntercept(const std::vector<std::string>& names) {
  return !names.empty() && names[0] == kInterceptName;
}

Status checkMergeShape(uint32_t accP, uint32_t otherP) {
  if (accP != otherP) {
    return Status::invalidArgument("cannot add sums with p = " + std::to_string(otherP) +
                                   " to sums with p = " + std::to_string(accP) +
                                   " (the sites answered different models)");
  }
  return Status::ok();
}

void addVector(std::vector<double>& acc, const std::vector<double>& other) {
  for (size_t i = 0; i < acc.size(); ++i) acc[i] += other[i];
}

}  // namespace

Status mergeInto(LinearSums& acc, const LinearSums& other) {
  if (acc.p == 0 && acc.n == 0 && acc.missing == 0) {
    acc = other;
    return Status::ok();
  }
  TM_RETURN_IF_ERROR(checkMergeShape(acc.p, other.p));
  TM_RETURN_IF_ERROR(checkShape(other.p, other.xtx.size(), size_t{other.p} * other.p, "xtx"));
  TM_RETURN_IF_ERROR(checkShape(other.p, other.xty.size(), other.p, "xty"));
  acc.n += other.n;
  acc.missing += other.missing;
  addVector(acc.xtx, other.xtx);
  addVector(acc.xty, other.xty);
  acc.yty += other.yty;
  acc.sumY += other.sumY;
  return Status::ok();
}

Status mergeInto(LogisticSums& acc, const LogisticSums& other) {
  if (acc.p == 0 && acc.n == 0 && acc.missing == 0) {
    acc = other;
    return Status::ok();
  }
  TM_RETURN_IF_ERROR(checkMergeShape(acc.p, other.p));
  TM_RETURN_IF_ERROR(checkShape(other.p, other.xtwx.size(), size_t{other.p} * other.p, "xtwx"));
  TM_RETURN_IF_ERROR(checkShape(other.p, other.score.size(), other.p, "score"));
  acc.n += other.n;
  acc.missing += other.missing;
  acc.sumY += other.sumY;
  addVector(acc.xtwx, other.xtwx);
  addVector(acc.score, other.score);
  acc.deviance += other.deviance;
  acc.boundary += other.boundary;
  return Status::ok();
}

Result<LinearFit> fitLinear(const std::vector<std::string>& names, const LinearSums& sums) {
  const uint32_t p = sums.p;
  TM_RETURN_IF_ERROR(checkNames(names, p));
  TM_RETURN_IF_ERROR(checkShape(p, sums.xtx.size(), size_t{p} * p, "xtx"));
  TM_RETURN_IF_ERROR(checkShape(p, sums.xty.size(), p, "xty"));
  if (sums.n <= p) {
    return Status::invalidArgument("linear model has " + std::to_string(p) +
                                   " coefficients but only " + std::to_string(sums.n) +
                                   " complete rows; it needs more rows than coefficients");
  }
  TM_ASSIGN_OR_RETURN(SymmetricFactor factor, SymmetricFactor::factor(sums.xtx, p, names));
  std::vector<double> beta = factor.solve(sums.xty);

  LinearFit fit;
  fit.intercept = hasIntercept(names);
  fit.n = sums.n;
  fit.missing = sums.missing;
  const double n = static_cast<double>(sums.n);
  fit.dfResidual = n - p;
  // RSS = y'y - 2 b'X'y + b'X'X b; the last two terms are equal at the solution, but the
  // three-term form is evaluated to keep the result exact for any b that solves the system.
  double rss = sums.yty - 2 * dot(beta, sums.xty) + dot(beta, multiply(sums.xtx, beta));
  fit.rss = std::max(rss, 0.0);
  double sigma2 = fit.rss / fit.dfResidual;
  fit.sigma = std::sqrt(sigma2);

  std::vector<double> inv = factor.inverse();
  fit.covariance.resize(inv.size());
  for (size_t i = 0; i < inv.size(); ++i) fit.covariance[i] = sigma2 * inv[i];
  for (uint32_t j = 0; j < p; ++j) {
    Coefficient c;
    c.name = names[j];
    c.estimate = beta[j];
    c.stdError = std::sqrt(fit.covariance[size_t{j} * p + j]);
    c.statistic = c.estimate / c.stdError;
    c.pValue = detail::twoSidedT(c.statistic, fit.dfResidual);
    fit.coefficients.push_back(std::move(c));
  }

  // summary.lm: mss and R^2 about the mean with an intercept, about 0 without.
  const double dfInt = fit.intercept ? 1.0 : 0.0;
  double mss =
      fit.intercept ? (sums.yty - sums.sumY * sums.sumY / n) - fit.rss : sums.yty - fit.rss;
  fit.rSquared = mss / (mss + fit.rss);
  fit.adjRSquared = 1 - (1 - fit.rSquared) * ((n - dfInt) / fit.dfResidual);
  if (p > dfInt) {
    fit.fDf1 = p - dfInt;
    fit.fDf2 = fit.dfResidual;
    fit.fStatistic = (mss / fit.fDf1) / sigma2;
    fit.fPValue = detail::upperF(fit.fStatistic, fit.fDf1, fit.fDf2);
  } else {
    fit.fStatistic = fit.fPValue = kNaN;
  }
  return fit;
}

Result<LogisticFit> fitLogistic(const std::vector<std::string>& names,
                                const LogisticEvaluator& evaluate, const LogisticOptions& options) {
  const uint32_t p = static_cast<uint32_t>(names.size());
  TM_RETURN_IF_ERROR(checkNames(names, p));
  LogisticFit fit;
  fit.intercept = hasIntercept(names);

  auto round = [&](const std::vector<double>& beta) -> Result<LogisticSums> {
    ++fit.rounds;
    Result<LogisticSums> r = evaluate(beta);
    if (!r.isOk()) {
      return r.status().withContext("logistic regression round " + std::to_string(fit.rounds));
    }
    const LogisticSums& s = *r;
    if (s.p != p) TM_RETURN_IF_ERROR(checkNames(names, s.p));
    TM_RETURN_IF_ERROR(checkShape(p, s.xtwx.size(), size_t{p} * p, "xtwx"));
    TM_RETURN_IF_ERROR(checkShape(p, s.score.size(), p, "score"));
    return r;
  };

  // Round 1 at beta = 0 gives n, sum(y) and X'X / 4, from which glm's first IRLS step (from
  // mustart = (y + 0.5) / 2: eta = +-log 3, w = 3/16, z = (2y - 1)(log 3 + 4/3)) follows in
  // closed form: beta_1 = (log 3 + 4/3) / 2 * (X'W_0X)^{-1} X'(y - 1/2).
  std::vector<double> beta(p, 0.0);
  TM_ASSIGN_OR_RETURN(LogisticSums sums, round(beta));
  if (sums.n == 0) {
    return Status::invalidArgument("logistic regression has no complete rows (" +
                                   std::to_string(sums.missing) + " dropped for missing values)");
  }
  if (sums.n <= p) {
    return Status::invalidArgument("logistic regression has " + std::to_string(p) +
                                   " coefficients but only " + std::to_string(sums.n) +
                                   " complete rows; it needs more rows than coefficients");
  }
  fit.n = sums.n;
  fit.missing = sums.missing;
  const double n = static_cast<double>(sums.n);
  {
    TM_ASSIGN_OR_RETURN(SymmetricFactor f0, SymmetricFactor::factor(sums.xtwx, p, names));
    std::vector<double> step = f0.solve(sums.score);
    const double c = 0.5 * (std::log(3.0) + 4.0 / 3.0);
    for (uint32_t j = 0; j < p; ++j) beta[j] = c * step[j];
  }
  // The information used for the last step: glm's covariance is that of the final weighted
  // least-squares fit, i.e. at the weights before the final update (here W = 3/16 = 0.75 W_0).
  std::vector<double> stepInfo = sums.xtwx;
  for (double& v : stepInfo) v *= 0.75;
  double devOld = 2.0 * n * std::log(4.0 / 3.0);  // deviance at mustart
  std::vector<double> betaOld;
  fit.iterations = 1;
  for (;;) {
    TM_ASSIGN_OR_RETURN(sums, round(beta));
    // glm.fit "inner loop 1": halve the step while the deviance is not finite.
    int halvings = 0;
    while (!std::isfinite(sums.deviance)) {
      if (betaOld.empty() || ++halvings > options.maxIterations) {
        return Status::failedPrecondition(
            "logistic regression: the deviance is not finite and step halving cannot correct "
            "it (check the outcome is 0/1 and covariates are on a sane scale)");
      }
      for (uint32_t j = 0; j < p; ++j) beta[j] = 0.5 * (beta[j] + betaOld[j]);
      TM_ASSIGN_OR_RETURN(sums, round(beta));
    }
    const double dev = sums.deviance;
    if (std::fabs(dev - devOld) / (std::fabs(dev) + 0.1) < options.epsilon) {
      fit.converged = true;
      break;
    }
    if (fit.iterations >= options.maxIterations) break;
    devOld = dev;
    betaOld = beta;
    TM_ASSIGN_OR_RETURN(SymmetricFactor f, SymmetricFactor::factor(sums.xtwx, p, names));
    std::vector<double> step = f.solve(sums.score);
    for (uint32_t j = 0; j < p; ++j) beta[j] += step[j];
    stepInfo = sums.xtwx;
    ++fit.iterations;
  }
  if (!fit.converged) fit.warnings.push_back("glm.fit: algorithm did not converge");
  if (sums.boundary > 0) {
    fit.warnings.push_back("glm.fit: fitted probabilities numerically 0 or 1 occurred");
  }

  TM_ASSIGN_OR_RETURN(SymmetricFactor info, SymmetricFactor::factor(stepInfo, p, names));
  fit.covariance = info.inverse();
  for (uint32_t j = 0; j < p; ++j) {
    Coefficient c;
    c.name = names[j];
    c.estimate = beta[j];
    c.stdError = std::sqrt(fit.covariance[size_t{j} * p + j]);
    c.statistic = c.estimate / c.stdError;
    c.pValue = detail::twoSidedNormal(c.statistic);
    fit.coefficients.push_back(std::move(c));
  }
  fit.deviance = sums.deviance;
  fit.dfResidual = n - p;
  if (fit.intercept) {
    const double ybar = sums.sumY / n;
    fit.nullDeviance = -2.0 * (sums.sumY * std::log(ybar > 0 ? ybar : 1.0) +
                               (n - sums.sumY) * std::log(ybar < 1 ? 1 - ybar : 1.0));
    fit.nullDeviance = std::max(fit.nullDeviance, 0.0);
    fit.dfNull = n - 1;
  } else {
    fit.nullDeviance = 2.0 * n * std::log(2.0);  // mu = linkinv(0) = 1/2
    fit.dfNull = n;
  }
  fit.aic = fit.deviance + 2.0 * p;
  fit.events = static_cast<uint64_t>(std::llround(sums.sumY));
  // anova(fit, test = "Chisq") against the null model: the drop in deviance on the dropped df.
  fit.lrStatistic = std::max(fit.nullDeviance - fit.deviance, 0.0);
  fit.lrDf = fit.dfNull - fit.dfResidual;
  fit.lrPValue = fit.lrDf > 0 ? detail::upperChiSquared(fit.lrStatistic, fit.lrDf)
                              : std::numeric_limits<double>::quiet_NaN();
  return fit;
}

}  // namespace trialmesh::stats
