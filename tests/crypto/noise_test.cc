// Differential-privacy noise in shares: the sum of n sites' shares is discrete Laplace, a single
// share is the (narrower) difference of two Pólya NB(1/n, p) variables. The reference pmfs are
// computed here from their closed forms (lgamma), independently of the sampler, which uses a
// compound Poisson–logarithmic construction. Seeds are fixed, so every run draws the same values.
#include "crypto/noise.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <vector>

namespace trialmesh::crypto {
namespace {

double dlapPmf(int64_t k, double t) {
  const double p = std::exp(-1.0 / t);
  return (1 - p) / (1 + p) * std::pow(p, static_cast<double>(std::llabs(k)));
}

// P(NB(r, p) = j) = Γ(j + r) / (j! Γ(r)) (1 − p)^r p^j.
double nbPmf(int64_t j, double r, double p) {
  const double jd = static_cast<double>(j);
  return std::exp(std::lgamma(jd + r) - std::lgamma(jd + 1) - std::lgamma(r) + r * std::log1p(-p) +
                  jd * std::log(p));
}

// P(NB − NB' = k) for independent NB(r, p).
double nbDiffPmf(int64_t k, double r, double p) {
  const int64_t a = std::llabs(k);
  double s = 0;
  for (int64_t j = 0; j < 5000; ++j) {
    const double term = nbPmf(j + a, r, p) * nbPmf(j, r, p);
    s += term;
    if (j > 50 && term < 1e-18 * s) break;
  }
  return s;
}

// Upper 1e-5 quantile of chi-square(df), Wilson–Hilferty: a fixed threshold that a correct
// sampler exceeds with probability about 1e-5.
double chiSquareCritical(int df) {
  const double z = 4.265;  // standard normal upper 1e-5 quantile
  const double d = static_cast<double>(df);
  const double a = 2.0 / (9.0 * d);
  return d * std::pow(1 - a + z * std::sqrt(a), 3);
}

struct Fit {
  double chi2 = 0;
  int df = 0;
};

// Pearson chi-square of observed values against `pmf`, with bins k = lo..hi where every
// expected count is >= 5 and the two tails pooled into one bin each.
template <typename Pmf>
Fit chiSquare(const std::vector<int64_t>& values, Pmf pmf) {
  const double n = static_cast<double>(values.size());
  std::map<int64_t, double> observed;
  for (int64_t v : values) observed[v] += 1;
  int64_t hi = 0;
  while (pmf(hi + 1) * n >= 5) ++hi;
  int64_t lo = 0;
  while (pmf(lo - 1) * n >= 5) --lo;
  double inner = 0, chi2 = 0, obsLow = 0, obsHigh = 0;
  for (const auto& [k, c] : observed) {
    if (k < lo) obsLow += c;
    if (k > hi) obsHigh += c;
  }
  for (int64_t k = lo; k <= hi; ++k) {
    const double e = pmf(k) * n;
    inner += pmf(k);
    const double o = observed.count(k) ? observed[k] : 0;
    chi2 += (o - e) * (o - e) / e;
  }
  // Tails: their probability by complement split by symmetry (both pmfs here are symmetric).
  const double tail = (1 - inner) / 2 * n;
  int bins = static_cast<int>(hi - lo + 1);
  if (tail >= 5) {
    chi2 += (obsLow - tail) * (obsLow - tail) / tail + (obsHigh - tail) * (obsHigh - tail) / tail;
    bins += 2;
  }
  return {chi2, bins - 1};
}

// Sum over `sites` independent sources (one per site, as at real sites) of their shares.
std::vector<int64_t> summedShares(double t, uint32_t sites, size_t count, uint64_t seed) {
  std::vector<int64_t> sum(count, 0);
  for (uint32_t s = 0; s < sites; ++s) {
    DeterministicRandomSourceForTesting random(seed * 1000 + s);
    auto shares = discreteLaplaceShares(t, sites, count, random);
    EXPECT_TRUE(shares.isOk()) << shares.status().toString();
    if (!shares.isOk()) return {};
    for (size_t i = 0; i < count; ++i) sum[i] += (*shares)[i];
  }
  return sum;
}

struct Moments {
  double mean = 0, var = 0;
};
Moments moments(const std::vector<int64_t>& v) {
  double s = 0;
  for (int64_t x : v) s += static_cast<double>(x);
  const double mean = s / static_cast<double>(v.size());
  double ss = 0;
  for (int64_t x : v) ss += (static_cast<double>(x) - mean) * (static_cast<double>(x) - mean);
  return {mean, ss / static_cast<double>(v.size() - 1)};
}

TEST(Noise, SumOfSharesIsDiscreteLaplace) {
  // Draw counts keep the ASan/UBSan build of this test within seconds.
  struct Case {
    double t;
    uint32_t sites;
    size_t draws;
  };
  for (const Case& c : {Case{2.5, 3, 40000}, Case{0.7, 10, 20000}, Case{6.0, 30, 10000}}) {
    const double t = c.t;
    SCOPED_TRACE("scale " + std::to_string(t) + ", " + std::to_string(c.sites) + " sites");
    const std::vector<int64_t> sum = summedShares(t, c.sites, c.draws, 7);
    ASSERT_EQ(sum.size(), c.draws);
    const Fit fit = chiSquare(sum, [t](int64_t k) { return dlapPmf(k, t); });
    EXPECT_LT(fit.chi2, chiSquareCritical(fit.df)) << "df " << fit.df;

    // Variance 2p/(1-p)^2 within 5 standard errors; SE from the pmf's fourth moment.
    const double var = discreteLaplaceVariance(t);
    double m4 = 0;
    for (int64_t k = -2000; k <= 2000; ++k)
      m4 += std::pow(static_cast<double>(k), 4) * dlapPmf(k, t);
    const double se = std::sqrt((m4 - var * var) / static_cast<double>(sum.size()));
    const Moments m = moments(sum);
    EXPECT_NEAR(m.var, var, 5 * se);
    EXPECT_NEAR(m.mean, 0.0, 5 * std::sqrt(var / static_cast<double>(sum.size())));
  }
}

TEST(Noise, VarianceFormulaMatchesThePmf) {
  for (double t : {0.5, 2.5, 10.0}) {
    double v = 0;
    for (int64_t k = -3000; k <= 3000; ++k)
      v += static_cast<double>(k) * static_cast<double>(k) * dlapPmf(k, t);
    EXPECT_NEAR(discreteLaplaceVariance(t), v, 1e-9 * v) << t;
  }
}

TEST(Noise, ASingleShareIsTheNegativeBinomialDifferenceNotTheFullNoise) {
  const double t = 2.5;
  const uint32_t sites = 3;
  const double p = std::exp(-1.0 / t);
  const double r = 1.0 / sites;
  DeterministicRandomSourceForTesting random(99);
  auto share = discreteLaplaceShares(t, sites, 40000, random);
  ASSERT_TRUE(share.isOk()) << share.status().toString();

  const Fit nb = chiSquare(*share, [&](int64_t k) { return nbDiffPmf(k, r, p); });
  EXPECT_LT(nb.chi2, chiSquareCritical(nb.df)) << "df " << nb.df;
  // The same test rejects the full discrete Laplace for one share, so it has power.
  const Fit full = chiSquare(*share, [&](int64_t k) { return dlapPmf(k, t); });
  EXPECT_GT(full.chi2, 100 * chiSquareCritical(full.df));
  // Var of one share = 2 r p / (1 − p)^2 = the full variance / n.
  const Moments m = moments(*share);
  EXPECT_NEAR(m.var, discreteLaplaceVariance(t) / sites, 0.05 * discreteLaplaceVariance(t) / sites);

  // And the sum of three shares does not fit the single-share distribution.
  const std::vector<int64_t> sum = summedShares(t, sites, 40000, 8);
  const Fit wrong = chiSquare(sum, [&](int64_t k) { return nbDiffPmf(k, r, p); });
  EXPECT_GT(wrong.chi2, 100 * chiSquareCritical(wrong.df));
}

TEST(Noise, LargeScalesKeepTheVariance) {
  // Fixed-point scales (a real sum at 2^32 per unit): the relative SE of a Laplace sample
  // variance is sqrt(5 / N), 1.6% for N = 20000; allow 5 SE.
  const size_t n = 20000;
  for (double t : {1e6, 4.0e11, kMaxDiscreteLaplaceScale}) {
    SCOPED_TRACE(t);
    const std::vector<int64_t> sum = summedShares(t, 5, n, 11);
    ASSERT_EQ(sum.size(), n);
    const Moments m = moments(sum);
    const double var = discreteLaplaceVariance(t);
    EXPECT_NEAR(m.var / var, 1.0, 5 * std::sqrt(5.0 / n));
    // P(|X| > x) = 2p^(x+1)/(1+p) ≈ e^(-x/t): the fraction beyond 3t is about e^-3 = 0.0498
    // (binomial SE 0.0015 at N = 20000; allow 5 SE).
    size_t beyond = 0;
    for (int64_t v : sum) beyond += std::fabs(static_cast<double>(v)) > 3 * t;
    EXPECT_NEAR(static_cast<double>(beyond) / n, std::exp(-3.0), 0.0077);
  }
}

TEST(Noise, DeterministicSourceIsReproducibleAndSeedsDiffer) {
  DeterministicRandomSourceForTesting a(5), b(5), c(6);
  auto x = discreteLaplaceShares(3.0, 4, 1000, a);
  auto y = discreteLaplaceShares(3.0, 4, 1000, b);
  auto z = discreteLaplaceShares(3.0, 4, 1000, c);
  ASSERT_TRUE(x.isOk() && y.isOk() && z.isOk());
  EXPECT_EQ(*x, *y);
  EXPECT_NE(*x, *z);
  // Successive calls continue the stream instead of repeating it.
  auto x2 = discreteLaplaceShares(3.0, 4, 1000, a);
  ASSERT_TRUE(x2.isOk());
  EXPECT_NE(*x, *x2);
}

TEST(Noise, SystemSourceDrawsFreshNoise) {
  SystemRandomSource random;
  auto x = discreteLaplaceShares(50.0, 3, 200, random);
  auto y = discreteLaplaceShares(50.0, 3, 200, random);
  ASSERT_TRUE(x.isOk() && y.isOk());
  EXPECT_NE(*x, *y);
  std::array<uint8_t, 64> zero{}, bytes{};
  random.fill(bytes);
  EXPECT_NE(bytes, zero);
}

TEST(Noise, OpenUnitNeverHitsTheEnds) {
  DeterministicRandomSourceForTesting random(1);
  double lo = 1, hi = 0, sum = 0;
  for (int i = 0; i < 100000; ++i) {
    const double u = random.nextOpenUnit();
    lo = std::min(lo, u);
    hi = std::max(hi, u);
    sum += u;
  }
  EXPECT_GT(lo, 0.0);
  EXPECT_LT(hi, 1.0);
  EXPECT_NEAR(sum / 100000, 0.5, 0.005);
}

TEST(Noise, RefusesBadParameters) {
  DeterministicRandomSourceForTesting random(1);
  for (double t : {0.0, -1.0, std::nan(""), double{INFINITY}, 2 * kMaxDiscreteLaplaceScale}) {
    auto r = discreteLaplaceShares(t, 3, 1, random);
    ASSERT_FALSE(r.isOk()) << t;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("scale must be a finite number in (0, 2^48]"),
              std::string::npos)
        << r.status().message();
  }
  auto none = discreteLaplaceShares(1.0, 0, 1, random);
  ASSERT_FALSE(none.isOk());
  EXPECT_NE(none.status().message().find("at least one participant"), std::string::npos);

  auto scale = discreteLaplaceScale(1.0, 0.5);
  ASSERT_TRUE(scale.isOk());
  EXPECT_DOUBLE_EQ(*scale, 2.0);
  auto badEps = discreteLaplaceScale(1.0, 0.0);
  ASSERT_FALSE(badEps.isOk());
  EXPECT_NE(badEps.status().message().find("epsilon must be a finite number > 0"),
            std::string::npos);
  auto tooBig = discreteLaplaceScale(1e20, 0.1);
  ASSERT_FALSE(tooBig.isOk());
  EXPECT_NE(tooBig.status().message().find("sensitivity"), std::string::npos);
  auto empty = discreteLaplaceShares(1.0, 3, 0, random);
  ASSERT_TRUE(empty.isOk());
  EXPECT_TRUE(empty->empty());
}

}  // namespace
}  // namespace trialmesh::crypto
