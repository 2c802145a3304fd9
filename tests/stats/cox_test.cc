#include "stats/cox.h"

#include <gtest/gtest.h>

#include <set>

#include "stats/rows.h"
#include "stats_test_util.h"

namespace trialmesh::stats {
namespace {

using testing::completeRows;
using testing::gaussSolve;
using testing::makeTrial;
using testing::naiveCox;
using testing::NaiveCox;
using testing::Trial;

const std::vector<std::string> kNames = {"age", "sex", "armB", "armC"};

// What a coordinator does: collect each site's event times per stratum, send the union.
std::vector<std::vector<double>> federatedGrid(const Trial& t, const SurvivalRows& data,
                                               size_t strata) {
  std::vector<std::set<double>> uni(strata);
  for (uint32_t s = 0; s < 3; ++s) {
    auto times = coxEventTimes(data, t.rowsOfSite(s), strata);
    EXPECT_TRUE(times.isOk()) << times.status().toString();
    for (size_t k = 0; k < strata; ++k) uni[k].insert((*times)[k].begin(), (*times)[k].end());
  }
  std::vector<std::vector<double>> grid;
  for (const auto& u : uni) grid.emplace_back(u.begin(), u.end());
  return grid;
}

std::vector<double> columnMeans(const DesignMatrix& x, const std::vector<size_t>& rows) {
  std::vector<double> m(x.cols, 0);
  for (size_t r : rows) {
    for (size_t j = 0; j < x.cols; ++j) m[j] += x.at(r, j) / rows.size();
  }
  return m;
}

struct Fixture {
  Trial t = makeTrial(900, 11);
  DesignMatrix x = t.design(kNames);
  std::vector<size_t> complete = completeRows(x, {&t.time, &t.event});
  std::vector<double> center = columnMeans(x, complete);
  SurvivalRows data() const { return SurvivalRows{&x, t.time, t.event, {}}; }
  SurvivalRows stratified() const { return SurvivalRows{&x, t.time, t.event, t.site}; }

  CoxSums federated(const SurvivalRows& d, const std::vector<double>& beta,
                    const std::vector<std::vector<double>>& grid) const {
    CoxSums merged;
    for (uint32_t s = 0; s < 3; ++s) {
      auto part = coxSumsFromRows(d, t.rowsOfSite(s), beta, center, grid);
      EXPECT_TRUE(part.isOk()) << part.status().toString();
      EXPECT_TRUE(mergeInto(merged, *part).isOk());
    }
    return merged;
  }
};

// Newton–Raphson on the naive likelihood to full convergence.
std::vector<double> naiveFit(const Fixture& f, const std::vector<size_t>& rows, bool efron,
                             const std::vector<std::vector<size_t>>& strata = {}) {
  std::vector<double> beta(kNames.size(), 0);
  for (int iter = 0; iter < 50; ++iter) {
    NaiveCox d;
    if (strata.empty()) {
      d = naiveCox(f.x, f.t.time, f.t.event, rows, beta, efron);
    } else {
      d.score.assign(beta.size(), 0);
      d.info.assign(beta.size() * beta.size(), 0);
      for (const auto& s : strata) {
        NaiveCox ds = naiveCox(f.x, f.t.time, f.t.event, s, beta, efron);
        for (size_t i = 0; i < d.score.size(); ++i) d.score[i] += ds.score[i];
        for (size_t i = 0; i < d.info.size(); ++i) d.info[i] += ds.info[i];
      }
    }
    std::vector<double> step = gaussSolve(d.info, d.score);
    double size = 0;
    for (size_t j = 0; j < beta.size(); ++j) {
      beta[j] += step[j];
      size = std::max(size, std::fabs(step[j]));
    }
    if (size < 1e-12) break;
  }
  return beta;
}

TEST(Cox, SiteSumsAddUpToPooledSums) {
  Fixture f;
  auto grid = federatedGrid(f.t, f.data(), 1);
  const std::vector<double> beta = {0.02, 0.3, -0.4, 0.1};
  CoxSums merged = f.federated(f.data(), beta, grid);
  auto pooled = coxSumsFromRows(f.data(), allRows(f.t.n), beta, f.center, grid);
  ASSERT_TRUE(pooled.isOk());
  ASSERT_EQ(merged.strata.size(), 1u);
  const CoxStratumSums& a = merged.strata[0];
  const CoxStratumSums& b = pooled->strata[0];
  EXPECT_EQ(a.n, b.n);
  EXPECT_EQ(a.n, f.complete.size());
  EXPECT_EQ(merged.missing, pooled->missing);
  EXPECT_EQ(merged.missing + a.n, f.t.n);
  EXPECT_EQ(a.deaths, b.deaths);
  auto same = [](const std::vector<double>& u, const std::vector<double>& v) {
    ASSERT_EQ(u.size(), v.size());
    for (size_t i = 0; i < u.size(); ++i) EXPECT_REL(u[i], v[i], 1e-12);
  };
  same(a.riskR, b.riskR);
  same(a.riskRX, b.riskRX);
  same(a.riskRXX, b.riskRXX);
  same(a.deathX, b.deathX);
  same(a.deathR, b.deathR);
  same(a.deathRX, b.deathRX);
  same(a.deathRXX, b.deathRXX);
  // Ties really occur in this data.
  double maxTies = 0;
  for (double d : a.deaths) maxTies = std::max(maxTies, d);
  EXPECT_GE(maxTies, 5);
}

TEST(Cox, DerivativesOfSummedSumsEqualNaivePartialLikelihood) {
  Fixture f;
  auto grid = federatedGrid(f.t, f.data(), 1);
  const std::vector<double> beta = {0.015, 0.35, -0.45, 0.05};
  CoxSums merged = f.federated(f.data(), beta, grid);
  for (bool efron : {true, false}) {
    auto got = coxDerivatives(merged, beta, efron ? CoxTies::kEfron : CoxTies::kBreslow);
    ASSERT_TRUE(got.isOk()) << got.status().toString();
    NaiveCox want = naiveCox(f.x, f.t.time, f.t.event, f.complete, beta, efron);
    EXPECT_REL(got->loglik, want.loglik, 1e-9);
    for (size_t i = 0; i < want.score.size(); ++i) EXPECT_REL(got->score[i], want.score[i], 1e-9);
    for (size_t i = 0; i < want.info.size(); ++i) {
      EXPECT_REL(got->information[i], want.info[i], 1e-9);
    }
  }
}

TEST(Cox, FederatedFitEqualsNaivePooledFit) {
  Fixture f;
  auto grid = federatedGrid(f.t, f.data(), 1);
  for (CoxTies ties : {CoxTies::kEfron, CoxTies::kBreslow}) {
    const bool efron = ties == CoxTies::kEfron;
    int calls = 0;
    CoxEvaluator evaluate = [&](const std::vector<double>& beta) -> Result<CoxSums> {
      ++calls;
      return f.federated(f.data(), beta, grid);
    };
    CoxOptions options;
    options.ties = ties;
    auto fit = fitCox(kNames, evaluate, options);
    ASSERT_TRUE(fit.isOk()) << fit.status().toString();
    EXPECT_TRUE(fit->converged);
    EXPECT_TRUE(fit->warnings.empty());
    EXPECT_EQ(fit->rounds, calls);
    EXPECT_GE(fit->iterations, 2);
    EXPECT_LE(fit->iterations, 10);
    EXPECT_EQ(fit->n, f.complete.size());
    EXPECT_EQ(fit->missing + fit->n, f.t.n);
    uint64_t events = 0;
    for (size_t r : f.complete) events += f.t.event[r] == 1;
    EXPECT_EQ(fit->events, events);

    std::vector<double> beta = naiveFit(f, f.complete, efron);
    NaiveCox at = naiveCox(f.x, f.t.time, f.t.event, f.complete, beta, efron);
    NaiveCox at0 = naiveCox(f.x, f.t.time, f.t.event, f.complete,
                            std::vector<double>(kNames.size(), 0), efron);
    std::vector<double> inv;
    gaussSolve(at.info, at.score, &inv);
    for (size_t j = 0; j < kNames.size(); ++j) {
      const CoxCoefficient& c = fit->coefficients[j];
      EXPECT_EQ(c.name, kNames[j]);
      EXPECT_REL(c.coef, beta[j], 1e-6);
      EXPECT_REL(c.hazardRatio, std::exp(beta[j]), 1e-6);
      EXPECT_REL(c.stdError, std::sqrt(inv[j * kNames.size() + j]), 1e-6);
      EXPECT_REL(c.lower, std::exp(beta[j] - 1.959963984540054 * c.stdError), 1e-12);
    }
    EXPECT_REL(fit->loglikNull, at0.loglik, 1e-9);
    EXPECT_REL(fit->loglik, at.loglik, 1e-9);
    EXPECT_REL(fit->likelihoodRatio.statistic, 2 * (at.loglik - at0.loglik), 1e-6);
    std::vector<double> u0inv = gaussSolve(at0.info, at0.score);
    double score = 0, wald = 0;
    for (size_t i = 0; i < kNames.size(); ++i) {
      score += at0.score[i] * u0inv[i];
      for (size_t j = 0; j < kNames.size(); ++j) {
        wald += beta[i] * at.info[i * kNames.size() + j] * beta[j];
      }
    }
    EXPECT_REL(fit->score.statistic, score, 1e-9);
    EXPECT_REL(fit->wald.statistic, wald, 1e-6);
    EXPECT_EQ(fit->likelihoodRatio.df, 4);
  }
}

TEST(Cox, StratifiedBySiteEqualsNaiveStratifiedFit) {
  Fixture f;
  auto grid = federatedGrid(f.t, f.stratified(), 3);
  auto fit = fitCox(kNames, [&](const std::vector<double>& beta) -> Result<CoxSums> {
    return f.federated(f.stratified(), beta, grid);
  });
  ASSERT_TRUE(fit.isOk()) << fit.status().toString();
  EXPECT_EQ(fit->strata, 3u);
  std::vector<std::vector<size_t>> strata(3);
  for (size_t r : f.complete) strata[f.t.site[r]].push_back(r);
  std::vector<double> beta = naiveFit(f, f.complete, true, strata);
  double ll = 0;
  for (const auto& s : strata) ll += naiveCox(f.x, f.t.time, f.t.event, s, beta, true).loglik;
  for (size_t j = 0; j < kNames.size(); ++j) EXPECT_REL(fit->coefficients[j].coef, beta[j], 1e-6);
  EXPECT_REL(fit->loglik, ll, 1e-9);
  // Stratification changes the answer: it is not the unstratified fit.
  std::vector<double> unstratified = naiveFit(f, f.complete, true);
  EXPECT_GT(std::fabs(unstratified[1] - beta[1]), 1e-4);
}

TEST(Cox, ErrorsAreActionable) {
  Fixture f;
  std::vector<std::vector<double>> grid = {{1, 2, 3}};
  auto s = coxSumsFromRows(f.data(), allRows(f.t.n), std::vector<double>(4, 0), f.center, grid);
  ASSERT_FALSE(s.isOk());
  EXPECT_NE(s.status().message().find("is not on the event-time grid of stratum 1"),
            std::string::npos)
      << s.status().message();

  DesignMatrix x{3, 1, {1, 2, 3}};
  std::vector<double> time = {1, 2, 3}, event = {0, 0, 0};
  SurvivalRows censored{&x, time, event, {}};
  auto fit = fitCox({"x"}, [&](const std::vector<double>& b) {
    return coxSumsFromRows(censored, allRows(3), b, {0.0}, {{}});
  });
  ASSERT_FALSE(fit.isOk());
  EXPECT_NE(fit.status().message().find("no events among the 3 complete rows"), std::string::npos);

  CoxSums a = f.federated(f.data(), std::vector<double>(4, 0), federatedGrid(f.t, f.data(), 1));
  CoxSums b = a;
  b.strata[0].times.push_back(1e9);
  b.strata[0].riskR.push_back(0);
  CoxSums before = a;
  EXPECT_FALSE(mergeInto(a, b).isOk());
  EXPECT_EQ(a, before);
}

// R 4.2.2, survival 3.5-3:
//   x <- c(1,0,1,0,1,0,1,0); f <- coxph(Surv(1:8, c(1,0,1,0,1,0,1,0)) ~ x)
//   -> warning "Ran out of iterations and did not converge"; coef 21.20289; loglik -5.950643
//      -3.178054 (R reports f$iter = 21 = iter.max + 1; we count the 20 iterations done).
TEST(Cox, MonotoneLikelihoodRunsOutOfIterationsLikeR) {
  DesignMatrix x{8, 1, {1, 0, 1, 0, 1, 0, 1, 0}};
  std::vector<double> time = {1, 2, 3, 4, 5, 6, 7, 8}, event = {1, 0, 1, 0, 1, 0, 1, 0};
  SurvivalRows d{&x, time, event, {}};
  auto fit = fitCox({"x"}, [&](const std::vector<double>& b) {
    return coxSumsFromRows(d, allRows(8), b, {0.5}, {{1, 3, 5, 7}});
  });
  ASSERT_TRUE(fit.isOk()) << fit.status().toString();
  EXPECT_FALSE(fit->converged);
  EXPECT_EQ(fit->iterations, 20);
  EXPECT_NEAR(fit->coefficients[0].coef, 21.20289, 5e-6);
  EXPECT_NEAR(fit->loglikNull, -5.950643, 5e-7);
  EXPECT_NEAR(fit->loglik, -3.178054, 5e-7);
  EXPECT_EQ(fit->warnings, std::vector<std::string>{"Ran out of iterations and did not converge"});
}

}  // namespace
}  // namespace trialmesh::stats
