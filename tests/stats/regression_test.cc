#include "stats/regression.h"

#include <gtest/gtest.h>

#include "stats/linalg.h"
#include "stats/rows.h"
#include "stats_test_util.h"

namespace trialmesh::stats {
namespace {

using testing::completeRows;
using testing::gaussSolve;
using testing::kNA;
using testing::makeTrial;
using testing::Trial;

const std::vector<std::string> kNames = {kInterceptName, "age", "sex", "armB", "armC"};

TEST(Linalg, SolvesAndInvertsAgainstGaussJordan) {
  const std::vector<double> a = {4, 2, 0.6, 2, 5, 1, 0.6, 1, 3};
  const std::vector<double> b = {1, -2, 0.5};
  auto f = SymmetricFactor::factor(a, 3);
  ASSERT_TRUE(f.isOk()) << f.status().toString();
  std::vector<double> inv;
  std::vector<double> x = gaussSolve(a, b, &inv);
  std::vector<double> got = f->solve(b);
  std::vector<double> gotInv = f->inverse();
  for (size_t i = 0; i < 3; ++i) EXPECT_REL(got[i], x[i], 1e-14);
  for (size_t i = 0; i < 9; ++i) EXPECT_REL(gotInv[i], inv[i], 1e-14);
  EXPECT_REL(f->inverseQuadraticForm(b), dot(b, x), 1e-14);
}

TEST(Linalg, CollinearDesignNamesTheCoefficient) {
  // x2 = 2 * x1: the third column of X'X is a multiple of the second.
  DesignMatrix x{5, 3, {}};
  for (double v : {1.0, 2.0, 3.0, 4.0, 7.0}) {
    x.values.insert(x.values.end(), {1.0, v, 2 * v});
  }
  std::vector<double> y = {1, 3, 2, 5, 4};
  auto sums = linearSumsFromRows(x, y, allRows(5));
  ASSERT_TRUE(sums.isOk());
  auto fit = fitLinear({kInterceptName, "x1", "x2"}, *sums);
  ASSERT_FALSE(fit.isOk());
  EXPECT_EQ(fit.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(fit.status().message().find("coefficient 'x2' is not estimable: design is collinear"),
            std::string::npos)
      << fit.status().message();
}

// Naive lm: normal equations formed from the complete rows, solved by Gauss–Jordan; residuals
// computed row by row.
struct NaiveLm {
  std::vector<double> beta, se;
  double rss = 0, sigma = 0, r2 = 0, adjR2 = 0, f = 0;
  size_t n = 0;
};
NaiveLm naiveLm(const DesignMatrix& x, const std::vector<double>& y, bool intercept) {
  const size_t p = x.cols;
  std::vector<size_t> rows = completeRows(x, {&y});
  std::vector<double> xtx(p * p, 0), xty(p, 0);
  for (size_t r : rows) {
    for (size_t i = 0; i < p; ++i) {
      xty[i] += x.at(r, i) * y[r];
      for (size_t j = 0; j < p; ++j) xtx[i * p + j] += x.at(r, i) * x.at(r, j);
    }
  }
  NaiveLm out;
  std::vector<double> inv;
  out.beta = gaussSolve(xtx, xty, &inv);
  out.n = rows.size();
  double ybar = 0;
  for (size_t r : rows) ybar += y[r] / rows.size();
  double tss = 0;
  for (size_t r : rows) {
    double fitted = 0;
    for (size_t j = 0; j < p; ++j) fitted += x.at(r, j) * out.beta[j];
    out.rss += (y[r] - fitted) * (y[r] - fitted);
    tss += intercept ? (y[r] - ybar) * (y[r] - ybar) : y[r] * y[r];
  }
  const double df = static_cast<double>(rows.size() - p);
  out.sigma = std::sqrt(out.rss / df);
  for (size_t j = 0; j < p; ++j) out.se.push_back(out.sigma * std::sqrt(inv[j * p + j]));
  out.r2 = 1 - out.rss / tss;
  const double dfi = intercept ? 1 : 0;
  out.adjR2 = 1 - (1 - out.r2) * (rows.size() - dfi) / df;
  out.f = ((tss - out.rss) / (p - dfi)) / (out.rss / df);
  return out;
}

TEST(Linear, SiteSumsAddUpToPooledSums) {
  Trial t = makeTrial(900, 1);
  DesignMatrix x = t.design(kNames);
  auto pooled = linearSumsFromRows(x, t.y, allRows(t.n));
  ASSERT_TRUE(pooled.isOk());
  LinearSums merged;
  for (uint32_t s = 0; s < 3; ++s) {
    auto part = linearSumsFromRows(x, t.y, t.rowsOfSite(s));
    ASSERT_TRUE(part.isOk());
    ASSERT_TRUE(mergeInto(merged, *part).isOk());
  }
  EXPECT_EQ(merged.n, pooled->n);
  EXPECT_EQ(merged.missing, pooled->missing);
  EXPECT_GT(merged.missing, 0u);
  EXPECT_EQ(merged.n + merged.missing, t.n);
  for (size_t i = 0; i < merged.xtx.size(); ++i) EXPECT_REL(merged.xtx[i], pooled->xtx[i], 1e-13);
  for (size_t i = 0; i < merged.xty.size(); ++i) EXPECT_REL(merged.xty[i], pooled->xty[i], 1e-13);
  EXPECT_REL(merged.yty, pooled->yty, 1e-13);
  EXPECT_REL(merged.sumY, pooled->sumY, 1e-13);
}

TEST(Linear, FederatedFitEqualsNaivePooledFit) {
  Trial t = makeTrial(900, 2);
  for (bool intercept : {true, false}) {
    std::vector<std::string> names =
        intercept ? kNames : std::vector<std::string>{"age", "sex", "armB", "armC"};
    DesignMatrix x = t.design(names);
    LinearSums merged;
    for (uint32_t s = 0; s < 3; ++s) {
      auto part = linearSumsFromRows(x, t.y, t.rowsOfSite(s));
      ASSERT_TRUE(part.isOk());
      ASSERT_TRUE(mergeInto(merged, *part).isOk());
    }
    auto fit = fitLinear(names, merged);
    ASSERT_TRUE(fit.isOk()) << fit.status().toString();
    NaiveLm naive = naiveLm(x, t.y, intercept);
    ASSERT_EQ(fit->coefficients.size(), names.size());
    EXPECT_EQ(fit->n, naive.n);
    EXPECT_EQ(fit->n + fit->missing, t.n);
    EXPECT_EQ(fit->intercept, intercept);
    for (size_t j = 0; j < names.size(); ++j) {
      EXPECT_EQ(fit->coefficients[j].name, names[j]);
      EXPECT_REL(fit->coefficients[j].estimate, naive.beta[j], 1e-9);
      EXPECT_REL(fit->coefficients[j].stdError, naive.se[j], 1e-9);
      EXPECT_REL(fit->coefficients[j].statistic, naive.beta[j] / naive.se[j], 1e-9);
    }
    EXPECT_REL(fit->rss, naive.rss, 1e-9);
    EXPECT_REL(fit->sigma, naive.sigma, 1e-9);
    EXPECT_REL(fit->rSquared, naive.r2, 1e-9);
    EXPECT_REL(fit->adjRSquared, naive.adjR2, 1e-9);
    EXPECT_REL(fit->fStatistic, naive.f, 1e-9);
    EXPECT_DOUBLE_EQ(fit->dfResidual, static_cast<double>(naive.n - names.size()));
  }
}

TEST(Linear, InterceptOnlyModelHasNoFTest) {
  DesignMatrix x{4, 1, {1, 1, 1, 1}};
  std::vector<double> y = {1, 2, 4, 9};
  auto fit = fitLinear({kInterceptName}, *linearSumsFromRows(x, y, allRows(4)));
  ASSERT_TRUE(fit.isOk());
  EXPECT_DOUBLE_EQ(fit->coefficients[0].estimate, 4.0);
  EXPECT_TRUE(std::isnan(fit->fStatistic));
  EXPECT_NEAR(fit->rSquared, 0.0, 1e-15);
}

TEST(Linear, RejectsTooFewRowsAndMismatchedNames) {
  DesignMatrix x{2, 2, {1, 1, 1, 2}};
  std::vector<double> y = {1, 2};
  auto sums = linearSumsFromRows(x, y, allRows(2));
  auto fit = fitLinear({kInterceptName, "x"}, *sums);
  ASSERT_FALSE(fit.isOk());
  EXPECT_NE(fit.status().message().find("only 2 complete rows"), std::string::npos);
  auto bad = fitLinear({kInterceptName}, *sums);
  EXPECT_NE(bad.status().message().find("1 coefficient names but the sums have p = 2"),
            std::string::npos);
  LinearSums other;
  other.p = 3;
  other.xtx.assign(9, 0);
  other.xty.assign(3, 0);
  LinearSums acc = *sums;
  EXPECT_FALSE(mergeInto(acc, other).isOk());
  EXPECT_EQ(acc, *sums);
}

// Naive logistic regression: Newton–Raphson over the pooled rows to full convergence.
struct NaiveLogit {
  std::vector<double> beta, se;
  double deviance = 0, nullDeviance = 0;
  size_t n = 0;
};
NaiveLogit naiveLogit(const DesignMatrix& x, const std::vector<double>& y) {
  const size_t p = x.cols;
  std::vector<size_t> rows = completeRows(x, {&y});
  NaiveLogit out;
  out.n = rows.size();
  out.beta.assign(p, 0);
  std::vector<double> inv;
  for (int iter = 0; iter < 100; ++iter) {
    std::vector<double> g(p, 0), h(p * p, 0);
    for (size_t r : rows) {
      double eta = 0;
      for (size_t j = 0; j < p; ++j) eta += x.at(r, j) * out.beta[j];
      const double mu = 1 / (1 + std::exp(-eta));
      for (size_t i = 0; i < p; ++i) {
        g[i] += x.at(r, i) * (y[r] - mu);
        for (size_t j = 0; j < p; ++j) h[i * p + j] += mu * (1 - mu) * x.at(r, i) * x.at(r, j);
      }
    }
    std::vector<double> step = gaussSolve(h, g, &inv);
    double size = 0;
    for (size_t j = 0; j < p; ++j) {
      out.beta[j] += step[j];
      size = std::max(size, std::fabs(step[j]));
    }
    if (size < 1e-13) break;
  }
  double ybar = 0;
  for (size_t r : rows) ybar += y[r] / rows.size();
  for (size_t r : rows) {
    double eta = 0;
    for (size_t j = 0; j < p; ++j) eta += x.at(r, j) * out.beta[j];
    const double mu = 1 / (1 + std::exp(-eta));
    out.deviance += -2 * (y[r] == 1 ? std::log(mu) : std::log(1 - mu));
    out.nullDeviance += -2 * (y[r] == 1 ? std::log(ybar) : std::log(1 - ybar));
  }
  for (size_t j = 0; j < p; ++j) out.se.push_back(std::sqrt(inv[j * p + j]));
  return out;
}

TEST(Logistic, FederatedFitEqualsNaivePooledFit) {
  Trial t = makeTrial(900, 3);
  DesignMatrix x = t.design(kNames);
  int calls = 0;
  LogisticEvaluator federated = [&](const std::vector<double>& beta) -> Result<LogisticSums> {
    ++calls;
    LogisticSums merged;
    for (uint32_t s = 0; s < 3; ++s) {
      TM_ASSIGN_OR_RETURN(LogisticSums part,
                          logisticSumsFromRows(x, t.binary, t.rowsOfSite(s), beta));
      TM_RETURN_IF_ERROR(mergeInto(merged, part));
    }
    // Sums over sites equal sums over pooled rows at every beta the fit asks for.
    auto pooled = logisticSumsFromRows(x, t.binary, allRows(t.n), beta);
    EXPECT_TRUE(pooled.isOk());
    EXPECT_EQ(merged.n, pooled->n);
    EXPECT_REL(merged.deviance, pooled->deviance, 1e-12);
    for (size_t i = 0; i < merged.xtwx.size(); ++i) {
      EXPECT_REL(merged.xtwx[i], pooled->xtwx[i], 1e-12);
    }
    return merged;
  };
  auto fit = fitLogistic(kNames, federated);
  ASSERT_TRUE(fit.isOk()) << fit.status().toString();
  NaiveLogit naive = naiveLogit(x, t.binary);
  EXPECT_TRUE(fit->converged);
  EXPECT_EQ(fit->rounds, calls);
  EXPECT_EQ(fit->rounds, fit->iterations + 1);
  EXPECT_GE(fit->iterations, 3);
  EXPECT_LE(fit->iterations, 8);
  EXPECT_EQ(fit->n, naive.n);
  EXPECT_GT(fit->missing, 0u);
  for (size_t j = 0; j < kNames.size(); ++j) {
    EXPECT_REL(fit->coefficients[j].estimate, naive.beta[j], 1e-6);
    EXPECT_REL(fit->coefficients[j].stdError, naive.se[j], 1e-6);
  }
  EXPECT_REL(fit->deviance, naive.deviance, 1e-9);
  EXPECT_REL(fit->nullDeviance, naive.nullDeviance, 1e-9);
  EXPECT_REL(fit->aic, naive.deviance + 2 * kNames.size(), 1e-9);
  EXPECT_DOUBLE_EQ(fit->dfNull, naive.n - 1.0);
  EXPECT_DOUBLE_EQ(fit->dfResidual, naive.n - 5.0);
}

TEST(Logistic, RejectsNonBinaryOutcomeAndPassesEvaluatorErrors) {
  DesignMatrix x{3, 1, {1, 1, 1}};
  std::vector<double> y = {0, 2, 1};
  auto s = logisticSumsFromRows(x, y, allRows(3), {0.0});
  ASSERT_FALSE(s.isOk());
  EXPECT_NE(s.status().message().find("outcome of row 1 is 2.000000; it must be 0 or 1"),
            std::string::npos)
      << s.status().message();
  auto fit = fitLogistic({kInterceptName}, [](const std::vector<double>&) -> Result<LogisticSums> {
    return Status::unavailable("site 'b' did not answer");
  });
  ASSERT_FALSE(fit.isOk());
  EXPECT_EQ(fit.status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(fit.status().message(), "logistic regression round 1: site 'b' did not answer");
}

TEST(Logistic, SeparatedDataWarnsLikeGlm) {
  // y = 1 exactly when x > 0: the MLE is at infinity.
  DesignMatrix x{8, 2, {}};
  std::vector<double> y;
  for (double v : {-4.0, -3.0, -2.0, -1.0, 1.0, 2.0, 3.0, 4.0}) {
    x.values.insert(x.values.end(), {1.0, v});
    y.push_back(v > 0 ? 1 : 0);
  }
  auto fit = fitLogistic({kInterceptName, "x"}, [&](const std::vector<double>& b) {
    return logisticSumsFromRows(x, y, allRows(8), b);
  });
  ASSERT_TRUE(fit.isOk()) << fit.status().toString();
  ASSERT_FALSE(fit->warnings.empty());
  EXPECT_EQ(fit->warnings.back(), "glm.fit: fitted probabilities numerically 0 or 1 occurred");
  EXPECT_LT(fit->deviance, 1e-8);
}

}  // namespace
}  // namespace trialmesh::stats
