// Shared test data and independent naive computations for tests/stats. The naive code works
// on pooled rows directly (Gauss–Jordan elimination, per-row loops, full risk-set scans) and
// shares nothing with tm_stats beyond the data, so agreement is evidence, not tautology.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "stats/rows.h"

namespace trialmesh::stats::testing {

inline constexpr double kNA = std::numeric_limits<double>::quiet_NaN();

// |a - b| <= tol * max(|a|, |b|, floor); NaN equals NaN.
inline ::testing::AssertionResult relClose(double a, double b, double tol, double floor = 1e-8) {
  if (std::isnan(a) && std::isnan(b)) return ::testing::AssertionSuccess();
  const double scale = std::max({std::fabs(a), std::fabs(b), floor});
  if (std::fabs(a - b) <= tol * scale) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << a << " vs " << b << " (relative difference "
                                       << std::fabs(a - b) / scale << ", tolerance " << tol << ")";
}
#define EXPECT_REL(a, b, tol) EXPECT_TRUE(::trialmesh::stats::testing::relClose((a), (b), (tol)))

// A generated trial: age (some missing), sex, arm A/B/C (B, C as indicators), a continuous
// outcome y (some missing), a binary outcome, integer survival times (many ties), an event
// flag, a site (0..2) and a cohort (0..3; cohort 3 is entirely censored).
struct Trial {
  size_t n = 0;
  std::vector<double> age, sex, armB, armC, y, binary, time, event;
  std::vector<uint32_t> site, cohort;

  // Design matrix with the given columns ("(Intercept)", "age", "sex", "armB", "armC").
  DesignMatrix design(const std::vector<std::string>& names) const {
    DesignMatrix x;
    x.rows = n;
    x.cols = names.size();
    for (size_t r = 0; r < n; ++r) {
      for (const std::string& c : names) {
        if (c == kInterceptName) x.values.push_back(1.0);
        if (c == "age") x.values.push_back(age[r]);
        if (c == "sex") x.values.push_back(sex[r]);
        if (c == "armB") x.values.push_back(armB[r]);
        if (c == "armC") x.values.push_back(armC[r]);
      }
    }
    return x;
  }
  std::vector<size_t> rowsOfSite(uint32_t s) const {
    std::vector<size_t> out;
    for (size_t r = 0; r < n; ++r) {
      if (site[r] == s) out.push_back(r);
    }
    return out;
  }
};

inline Trial makeTrial(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> unif(0.0, 1.0);
  std::normal_distribution<double> norm(0.0, 1.0);
  Trial t;
  t.n = n;
  for (size_t r = 0; r < n; ++r) {
    const double age = std::round((60 + 10 * norm(rng)) * 10) / 10;
    const double sex = unif(rng) < 0.45 ? 1 : 0;
    const double u = unif(rng);
    const double armB = u >= 1.0 / 3 && u < 2.0 / 3 ? 1 : 0;
    const double armC = u >= 2.0 / 3 ? 1 : 0;
    t.age.push_back(unif(rng) < 0.04 ? kNA : age);
    t.sex.push_back(sex);
    t.armB.push_back(armB);
    t.armC.push_back(armC);
    const double y = 5 + 0.1 * age - 2 * sex + 1.5 * armB + 3 * norm(rng);
    t.y.push_back(unif(rng) < 0.03 ? kNA : y);
    const double eta = -0.5 + 0.03 * (age - 60) + 0.6 * sex - 0.4 * armC;
    t.binary.push_back(unif(rng) < 1 / (1 + std::exp(-eta)) ? 1 : 0);
    const double hazard = 0.1 * std::exp(0.02 * (age - 60) + 0.4 * sex - 0.5 * armB);
    const double ttrue = -std::log(1 - unif(rng)) / hazard;
    const double cens = 25 * unif(rng);
    const uint32_t cohort = static_cast<uint32_t>(r % 4);
    // Integer days: many tied event times. Cohort 3 is followed for less than its first event.
    double time = std::ceil(std::min(ttrue, cens));
    double event = ttrue <= cens ? 1 : 0;
    if (cohort == 3) event = 0;
    t.time.push_back(time);
    t.event.push_back(unif(rng) < 0.02 ? kNA : event);
    t.site.push_back(static_cast<uint32_t>(unif(rng) * 3));
    t.cohort.push_back(cohort);
  }
  return t;
}

// Solves A x = b (n*n row-major) by Gauss–Jordan elimination with partial pivoting; also
// returns A^{-1} in `inverse` when given.
inline std::vector<double> gaussSolve(std::vector<double> a, std::vector<double> b,
                                      std::vector<double>* inverse = nullptr) {
  const size_t n = b.size();
  std::vector<double> inv(n * n, 0.0);
  for (size_t i = 0; i < n; ++i) inv[i * n + i] = 1;
  for (size_t c = 0; c < n; ++c) {
    size_t piv = c;
    for (size_t r = c + 1; r < n; ++r) {
      if (std::fabs(a[r * n + c]) > std::fabs(a[piv * n + c])) piv = r;
    }
    for (size_t k = 0; k < n; ++k) {
      std::swap(a[c * n + k], a[piv * n + k]);
      std::swap(inv[c * n + k], inv[piv * n + k]);
    }
    std::swap(b[c], b[piv]);
    const double d = a[c * n + c];
    for (size_t k = 0; k < n; ++k) {
      a[c * n + k] /= d;
      inv[c * n + k] /= d;
    }
    b[c] /= d;
    for (size_t r = 0; r < n; ++r) {
      if (r == c) continue;
      const double f = a[r * n + c];
      for (size_t k = 0; k < n; ++k) {
        a[r * n + k] -= f * a[c * n + k];
        inv[r * n + k] -= f * inv[c * n + k];
      }
      b[r] -= f * b[c];
    }
  }
  if (inverse) *inverse = inv;
  return b;
}

// Rows of x (and the extra columns) with no NaN.
inline std::vector<size_t> completeRows(const DesignMatrix& x,
                                        const std::vector<const std::vector<double>*>& extra) {
  std::vector<size_t> out;
  for (size_t r = 0; r < x.rows; ++r) {
    bool ok = true;
    for (size_t c = 0; c < x.cols; ++c) ok = ok && !std::isnan(x.at(r, c));
    for (const auto* v : extra) ok = ok && !std::isnan((*v)[r]);
    if (ok) out.push_back(r);
  }
  return out;
}

// Naive Cox partial likelihood with Efron or Breslow ties, straight from the definition:
// for each distinct event time scan every row for the risk set. Returns loglik, score and
// information (uncentred covariates).
struct NaiveCox {
  double loglik = 0;
  std::vector<double> score, info;
};
inline NaiveCox naiveCox(const DesignMatrix& x, const std::vector<double>& time,
                         const std::vector<double>& event, const std::vector<size_t>& rows,
                         const std::vector<double>& beta, bool efron) {
  const size_t p = x.cols;
  NaiveCox out;
  out.score.assign(p, 0);
  out.info.assign(p * p, 0);
  std::map<double, std::vector<size_t>> deaths;
  for (size_t r : rows) {
    if (event[r] == 1) deaths[time[r]].push_back(r);
  }
  auto eta = [&](size_t r) {
    double e = 0;
    for (size_t j = 0; j < p; ++j) e += beta[j] * x.at(r, j);
    return e;
  };
  for (const auto& [t, dead] : deaths) {
    const double d = static_cast<double>(dead.size());
    const size_t terms = efron ? dead.size() : 1;
    for (size_t r : dead) {
      out.loglik += eta(r);
      for (size_t j = 0; j < p; ++j) out.score[j] += x.at(r, j);
    }
    for (size_t k = 0; k < terms; ++k) {
      const double f = efron ? k / d : 0.0;
      const double w = efron ? 1.0 : d;
      double s0 = 0;
      std::vector<double> s1(p, 0), s2(p * p, 0);
      for (size_t r : rows) {
        if (time[r] < t) continue;
        double wr = std::exp(eta(r));
        if (event[r] == 1 && time[r] == t) wr *= (1 - f);
        s0 += wr;
        for (size_t i = 0; i < p; ++i) {
          s1[i] += wr * x.at(r, i);
          for (size_t j = 0; j < p; ++j) s2[i * p + j] += wr * x.at(r, i) * x.at(r, j);
        }
      }
      out.loglik -= w * std::log(s0);
      for (size_t i = 0; i < p; ++i) {
        out.score[i] -= w * s1[i] / s0;
        for (size_t j = 0; j < p; ++j) {
          out.info[i * p + j] += w * (s2[i * p + j] / s0 - s1[i] * s1[j] / (s0 * s0));
        }
      }
    }
  }
  return out;
}

}  // namespace trialmesh::stats::testing
