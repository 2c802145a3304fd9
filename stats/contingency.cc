#include "stats/contingency.h"

#include <fmt/format.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <functional>
#include <limits>

#include "stats/distributions.h"

namespace trialmesh::stats {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

Status checkShape(const CountTable& counts, const char* test) {
  if (counts.size() < 2 || counts[0].size() < 2)
    return Status::invalidArgument(
        fmt::format("{}: the table needs at least two levels of each variable (has {} x {})", test,
                    counts.size(), counts.empty() ? 0 : counts[0].size()));
  for (const auto& row : counts) {
    if (row.size() != counts[0].size())
      return Status::invalidArgument(fmt::format("{}: ragged table", test));
    for (int64_t v : row)
      if (v < 0) return Status::invalidArgument(fmt::format("{}: negative count", test));
  }
  return Status::ok();
}

// R's R_zeroin2 (src/library/stats/src/zeroin.c) as uniroot calls it: f(lower) and f(upper)
// given, tol = .Machine$double.eps^0.25, maxiter 1000. Kept literal, including its swaps, so
// that the root is the one R returns.
double zeroin(const std::function<double(double)>& f, double ax, double bx) {
  const double tol = std::pow(DBL_EPSILON, 0.25);
  double a = ax, b = bx, fa = f(a), fb = f(b);
  double c = a, fc = fa;
  if (fa == 0.0) return a;
  if (fb == 0.0) return b;
  int maxit = 1000 + 1;
  while (maxit--) {
    const double prevStep = b - a;
    if (std::fabs(fc) < std::fabs(fb)) {
      a = b;
      b = c;
      c = a;
      fa = fb;
      fb = fc;
      fc = fa;
    }
    const double tolAct = 2 * DBL_EPSILON * std::fabs(b) + tol / 2;
    double newStep = (c - b) / 2;
    if (std::fabs(newStep) <= tolAct || fb == 0.0) return b;
    if (std::fabs(prevStep) >= tolAct && std::fabs(fa) > std::fabs(fb)) {
      double p, q;
      const double cb = c - b;
      if (a == c) {
        const double t1 = fb / fa;
        p = cb * t1;
        q = 1.0 - t1;
      } else {
        q = fa / fc;
        const double t1 = fb / fc;
        const double t2 = fb / fa;
        p = t2 * (cb * q * (q - t1) - (b - a) * (t1 - 1.0));
        q = (q - 1.0) * (t1 - 1.0) * (t2 - 1.0);
      }
      if (p > 0)
        q = -q;
      else
        p = -p;
      if (p < (0.75 * cb * q - std::fabs(tolAct * q) / 2) && p < std::fabs(prevStep * q / 2))
        newStep = p / q;
    }
    if (std::fabs(newStep) < tolAct) newStep = newStep > 0 ? tolAct : -tolAct;
    a = b;
    fa = fb;
    b += newStep;
    fb = f(b);
    if ((fb > 0 && fc > 0) || (fb < 0 && fc < 0)) {
      c = a;
      fc = fa;
    }
  }
  return b;
}

// The noncentral hypergeometric of fisher.test: x11 given the margins, over lo..hi.
struct Hypergeometric {
  int64_t lo = 0, hi = 0, x = 0;
  std::vector<double> logdc;  // dhyper(support, m, n, k, log = TRUE)

  double support(size_t i) const { return static_cast<double>(lo + static_cast<int64_t>(i)); }

  std::vector<double> density(double ncp) const {  // dnhyper
    std::vector<double> d(logdc.size());
    double mx = -kInf;
    for (size_t i = 0; i < d.size(); ++i) {
      d[i] = logdc[i] + std::log(ncp) * support(i);
      mx = std::max(mx, d[i]);
    }
    double sum = 0;
    for (double& v : d) sum += (v = std::exp(v - mx));
    for (double& v : d) v /= sum;
    return d;
  }
  double mean(double ncp) const {  // mnhyper
    if (ncp == 0) return static_cast<double>(lo);
    if (ncp == kInf) return static_cast<double>(hi);
    const auto d = density(ncp);
    double s = 0;
    for (size_t i = 0; i < d.size(); ++i) s += support(i) * d[i];
    return s;
  }
  double cdf(double q, double ncp, bool upper) const {  // pnhyper
    if (ncp == 0) return upper ? (q <= lo) : (q >= lo);
    if (ncp == kInf) return upper ? (q <= hi) : (q >= hi);
    const auto d = density(ncp);
    double s = 0;
    for (size_t i = 0; i < d.size(); ++i)
      if (upper ? support(i) >= q : support(i) <= q) s += d[i];
    return s;
  }
};

double logChoose(double n, double k) {
  return std::lgamma(n + 1) - std::lgamma(k + 1) - std::lgamma(n - k + 1);
}

}  // namespace

Result<ChiSquaredTest> chiSquaredTest(const CountTable& counts, bool correct) {
  TM_RETURN_IF_ERROR(checkShape(counts, "chisq"));
  const size_t r = counts.size(), c = counts[0].size();
  std::vector<double> rowSum(r, 0), colSum(c, 0);
  double n = 0;
  for (size_t i = 0; i < r; ++i)
    for (size_t j = 0; j < c; ++j) {
      rowSum[i] += static_cast<double>(counts[i][j]);
      colSum[j] += static_cast<double>(counts[i][j]);
      n += static_cast<double>(counts[i][j]);
    }
  for (size_t i = 0; i < r; ++i)
    if (rowSum[i] == 0)
      return Status::invalidArgument(
          "chisq: a level of the first variable has no rows (an expected count of 0)");
  for (size_t j = 0; j < c; ++j)
    if (colSum[j] == 0)
      return Status::invalidArgument(
          "chisq: a level of the second variable has no rows (an expected count of 0)");
  ChiSquaredTest t;
  t.minExpected = kInf;
  double yates = 0;
  if (correct && r == 2 && c == 2) {
    yates = 0.5;
    for (size_t i = 0; i < r; ++i)
      for (size_t j = 0; j < c; ++j) {
        const double e = rowSum[i] * colSum[j] / n;  // R: outer(sr, sc) / n
        yates = std::min(yates, std::fabs(static_cast<double>(counts[i][j]) - e));
      }
    t.yates = yates > 0;
  }
  for (size_t i = 0; i < r; ++i)
    for (size_t j = 0; j < c; ++j) {
      const double e = rowSum[i] * colSum[j] / n;
      const double d = std::fabs(static_cast<double>(counts[i][j]) - e) - yates;
      t.statistic += d * d / e;
      t.minExpected = std::min(t.minExpected, e);
    }
  t.df = static_cast<double>((r - 1) * (c - 1));
  t.p = detail::upperChiSquared(t.statistic, t.df);
  t.approximationWarning = t.minExpected < 5;
  return t;
}

Result<FisherTest> fisherTest(const CountTable& counts) {
  TM_RETURN_IF_ERROR(checkShape(counts, "fisher"));
  if (counts.size() != 2 || counts[0].size() != 2)
    return Status::invalidArgument(fmt::format(
        "fisher: only 2 x 2 tables are supported (this one is {} x {}); use chisq for larger "
        "tables",
        counts.size(), counts[0].size()));
  // R: m = column 1 total, n = column 2 total, k = row 1 total, x = x[1, 1].
  const int64_t m = counts[0][0] + counts[1][0];
  const int64_t n = counts[0][1] + counts[1][1];
  const int64_t k = counts[0][0] + counts[0][1];
  Hypergeometric h;
  h.x = counts[0][0];
  h.lo = std::max<int64_t>(0, k - n);
  h.hi = std::min(k, m);
  for (int64_t s = h.lo; s <= h.hi; ++s) {
    h.logdc.push_back(logChoose(static_cast<double>(m), static_cast<double>(s)) +
                      logChoose(static_cast<double>(n), static_cast<double>(k - s)) -
                      logChoose(static_cast<double>(m + n), static_cast<double>(k)));
  }
  const double x = static_cast<double>(h.x);
  FisherTest t;
  {  // two-sided p: the tables no more likely than the observed one (relErr 1 + 1e-7)
    const auto d = h.density(1);
    const double cut = d[static_cast<size_t>(h.x - h.lo)] * (1 + 1e-7);
    for (double v : d)
      if (v <= cut) t.p += v;
    t.p = std::min(1.0, t.p);
  }
  // mle
  if (h.x == h.lo) {
    t.oddsRatio = 0;
  } else if (h.x == h.hi) {
    t.oddsRatio = kInf;
  } else {
    const double mu = h.mean(1);
    if (mu > x) {
      t.oddsRatio = zeroin([&](double v) { return h.mean(v) - x; }, 0, 1);
    } else if (mu < x) {
      t.oddsRatio = 1 / zeroin([&](double v) { return h.mean(1 / v) - x; }, DBL_EPSILON, 1);
    } else {
      t.oddsRatio = 1;
    }
  }
  const double alpha = (1 - 0.95) / 2;
  // ncp.L
  if (h.x == h.lo) {
    t.confLow = 0;
  } else {
    const double p = h.cdf(x, 1, true);
    if (p > alpha) {
      t.confLow = zeroin([&](double v) { return h.cdf(x, v, true) - alpha; }, 0, 1);
    } else if (p < alpha) {
      t.confLow =
          1 / zeroin([&](double v) { return h.cdf(x, 1 / v, true) - alpha; }, DBL_EPSILON, 1);
    } else {
      t.confLow = 1;
    }
  }
  // ncp.U
  if (h.x == h.hi) {
    t.confHigh = kInf;
  } else {
    const double p = h.cdf(x, 1, false);
    if (p < alpha) {
      t.confHigh = zeroin([&](double v) { return h.cdf(x, v, false) - alpha; }, 0, 1);
    } else if (p > alpha) {
      t.confHigh =
          1 / zeroin([&](double v) { return h.cdf(x, 1 / v, false) - alpha; }, DBL_EPSILON, 1);
    } else {
      t.confHigh = 1;
    }
  }
  return t;
}

}  // namespace trialmesh::stats
