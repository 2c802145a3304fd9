#include "stats/farrington.h"

#include <fmt/format.h>

#include <algorithm>
#include <boost/math/special_functions/beta.hpp>
#include <boost/math/special_functions/gamma.hpp>
#include <cmath>
#include <limits>

#include "stats/distributions.h"

namespace trialmesh::stats {

namespace {

constexpr double kEps = std::numeric_limits<double>::epsilon();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// R's max(x, 1): NaN propagates.
double rMax1(double x) { return std::isnan(x) ? x : std::max(x, 1.0); }

// The log link of R's quasipoisson(): linkinv and mu.eta are both pmax(exp(eta), DBL_EPSILON).
double linkinv(double eta) { return std::max(std::exp(eta), kEps); }

// One regression problem: columns of the design (column-major), the response and the prior
// weights.
struct GlmData {
  std::vector<std::vector<double>> x;
  std::vector<double> y, weights;
};

struct GlmFit {
  bool converged = false;
  std::vector<double> beta, mu;
  std::vector<double> rInv;  // p x p row-major inverse of the last IRLS step's R factor
  std::vector<double> hat;   // hatvalues(): from the last IRLS step's QR, as R
  double dispersion = kNaN;  // summary.glm()'s estimate, not yet floored at 1
  // The same sum with the prior weights in place of the working weights: the package stores the
  // Anscombe weights in model$weights, so the trend test and predict(se.fit = TRUE) of a
  // reweighted model see this value.
  double priorWeightedDispersion = kNaN;
  double df = 0;
};

long double deviance(const std::vector<double>& y, const std::vector<double>& mu,
                     const std::vector<double>& w) {
  long double d = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    const double r =
        y[i] > 0 ? w[i] * (y[i] * std::log(y[i] / mu[i]) - (y[i] - mu[i])) : mu[i] * w[i];
    d += 2 * r;
  }
  return d;
}

// Householder least squares of a (columns, modified) on b. R's Cdqrls (LINPACK dqrdc2) uses
// the same reflections; it pivots only columns whose remaining norm falls below 1e-11 of the
// original, which we report as rank deficiency (false) instead.
bool leastSquares(std::vector<std::vector<double>>& a, std::vector<double>& b,
                  std::vector<double>& beta, std::vector<double>& r) {
  const size_t p = a.size(), n = b.size();
  if (n < p) return false;
  std::vector<double> norm0(p);
  for (size_t j = 0; j < p; ++j) {
    double s = 0;
    for (double v : a[j]) s += v * v;
    norm0[j] = std::sqrt(s);
  }
  std::vector<double> v(n);
  for (size_t j = 0; j < p; ++j) {
    double s = 0;
    for (size_t i = j; i < n; ++i) s += a[j][i] * a[j][i];
    const double norm = std::sqrt(s);
    if (!(norm > 1e-11 * norm0[j])) return false;
    const double alpha = a[j][j] > 0 ? -norm : norm;
    double vv = 0;
    for (size_t i = j; i < n; ++i) {
      v[i] = a[j][i] - (i == j ? alpha : 0);
      vv += v[i] * v[i];
    }
    auto reflect = [&](std::vector<double>& c) {
      double d = 0;
      for (size_t i = j; i < n; ++i) d += v[i] * c[i];
      const double f = 2 * d / vv;
      for (size_t i = j; i < n; ++i) c[i] -= f * v[i];
    };
    for (size_t k = j + 1; k < p; ++k) reflect(a[k]);
    reflect(b);
    a[j][j] = alpha;
  }
  r.assign(p * p, 0);
  for (size_t j = 0; j < p; ++j)
    for (size_t k = j; k < p; ++k) r[j * p + k] = a[k][j];
  beta.assign(p, 0);
  for (size_t j = p; j-- > 0;) {
    double s = b[j];
    for (size_t k = j + 1; k < p; ++k) s -= r[j * p + k] * beta[k];
    beta[j] = s / r[j * p + j];
  }
  return true;
}

std::vector<double> invertUpper(const std::vector<double>& r, size_t p) {
  std::vector<double> inv(p * p, 0);
  for (size_t c = 0; c < p; ++c) {
    for (size_t j = c + 1; j-- > 0;) {
      double s = j == c ? 1 : 0;
      for (size_t k = j + 1; k <= c; ++k) s -= r[j * p + k] * inv[k * p + c];
      inv[j * p + c] = s / r[j * p + j];
    }
  }
  return inv;
}

// ||x' R^-1||^2: x' (X'WX)^-1 x.
double quadForm(const std::vector<double>& rInv, const std::vector<double>& x) {
  const size_t p = x.size();
  double s = 0;
  for (size_t k = 0; k < p; ++k) {
    double u = 0;
    for (size_t j = 0; j <= k; ++j) u += x[j] * rInv[j * p + k];
    s += u * u;
  }
  return s;
}

// glm(y ~ X - 1, family = quasipoisson(link = "log"), weights) by R's glm.fit IRLS: the same
// start (mu = y + 0.1), the same stopping rule (|dev - devold| / (|dev| + 0.1) < 1e-8, at most
// 25 iterations), so the same iterates and not just the same optimum. nullopt: rank deficient.
std::optional<GlmFit> fitQuasiPoisson(const GlmData& d) {
  const size_t n = d.y.size(), p = d.x.size();
  GlmFit f;
  std::vector<double> eta(n), mu(n), w(n), z(n), beta, r;
  for (size_t i = 0; i < n; ++i) {
    mu[i] = d.y[i] + 0.1;
    eta[i] = std::log(mu[i]);
    mu[i] = linkinv(eta[i]);
  }
  long double devold = deviance(d.y, mu, d.weights);
  std::vector<std::vector<double>> a(p, std::vector<double>(n));
  for (int iter = 1; iter <= 25; ++iter) {
    for (size_t i = 0; i < n; ++i) {
      const double me = linkinv(eta[i]);
      z[i] = eta[i] + (d.y[i] - mu[i]) / me;
      w[i] = std::sqrt(d.weights[i] * me * me / mu[i]);
    }
    for (size_t j = 0; j < p; ++j)
      for (size_t i = 0; i < n; ++i) a[j][i] = d.x[j][i] * w[i];
    std::vector<double> b(n);
    for (size_t i = 0; i < n; ++i) b[i] = z[i] * w[i];
    if (!leastSquares(a, b, beta, r)) return std::nullopt;
    for (size_t i = 0; i < n; ++i) {
      double e = 0;
      for (size_t j = 0; j < p; ++j) e += d.x[j][i] * beta[j];
      eta[i] = e;
      mu[i] = linkinv(e);
    }
    const long double dev = deviance(d.y, mu, d.weights);
    // R halves the step on a non-finite deviance; counts never overflow exp() in practice, so
    // such a fit is reported as not converged.
    if (!std::isfinite(static_cast<double>(dev))) break;
    if (std::fabs(static_cast<double>(dev - devold)) / (std::fabs(static_cast<double>(dev)) + 0.1) <
        1e-8) {
      f.converged = true;
      break;
    }
    devold = dev;
  }
  f.beta = beta;
  f.mu = mu;
  f.rInv = invertUpper(r, p);
  // summary.glm(): sum(working weights * working residuals^2) / df.residual, the working
  // weights being those of the last IRLS step (computed before its update, as R stores them).
  size_t ok = 0;
  long double ss = 0, ssPrior = 0;
  for (size_t i = 0; i < n; ++i) {
    if (d.weights[i] != 0) ++ok;
    const double wt = w[i] * w[i];
    const double res = (d.y[i] - mu[i]) / linkinv(eta[i]);
    if (wt > 0) ss += wt * res * res;
    if (d.weights[i] > 0) ssPrior += d.weights[i] * res * res;
  }
  f.df = static_cast<double>(ok) - static_cast<double>(p);
  f.dispersion = f.df > 0 ? static_cast<double>(ss / f.df) : kNaN;
  f.priorWeightedDispersion = f.df > 0 ? static_cast<double>(ssPrior / f.df) : kNaN;
  f.hat.resize(n);
  std::vector<double> row(p);
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = 0; j < p; ++j) row[j] = d.x[j][i] * w[i];
    double h = quadForm(f.rInv, row);
    if (h > 1 - 10 * kEps) h = 1;
    f.hat[i] = h;
  }
  return f;
}

struct Model {
  GlmFit fit;
  double phi;
  bool trend;
  double dispersion;  // what summary.glm() and predict.glm() of the package's model use
};

// algo.farrington.fitGLM.flexible: fit (without the trend if it does not converge with it),
// then refit with the Anscombe-residual weights.
std::optional<Model> fitFlexible(GlmData data, bool trend, const FarringtonOptions& o) {
  auto drop = [&] { data.x.erase(data.x.begin() + 1); };  // column 1 is wtime
  auto fit = fitQuasiPoisson(data);
  if (!fit || !fit->converged) {
    if (!trend) return std::nullopt;
    trend = false;
    drop();
    fit = fitQuasiPoisson(data);
    if (!fit || !fit->converged) return std::nullopt;
  }
  double phi = rMax1(fit->dispersion);
  if (!o.reweight) return Model{*fit, phi, trend, fit->dispersion};
  {
    const size_t n = data.y.size();
    std::vector<double> s(n);
    for (size_t i = 0; i < n; ++i) {
      const double mu = fit->mu[i];
      s[i] = 1.5 * (std::pow(data.y[i], 2.0 / 3) * std::pow(mu, -1.0 / 6) - std::sqrt(mu)) /
             std::sqrt(phi * (1 - fit->hat[i]));
    }
    // algo.farrington.assign.weights: s^-2 above the threshold, 1 below, scaled to mean 1.
    long double sum = 0;
    for (double v : s) sum += v > o.weightsThreshold ? std::pow(v, -2) : 1;
    const double gamma = static_cast<double>(n) / static_cast<double>(sum);
    for (size_t i = 0; i < n; ++i)
      data.weights[i] = s[i] > o.weightsThreshold ? gamma * std::pow(s[i], -2) : gamma;
    // The package does not check the convergence of the reweighted fit.
    fit = fitQuasiPoisson(data);
    if (!fit) return std::nullopt;
    phi = rMax1(fit->dispersion);
  }
  return Model{*fit, phi, trend, fit->priorWeightedDispersion};
}

// Smallest y with cdf(y) >= p, with R's fuzz for left continuity, searched from a start.
template <class Cdf>
double discreteQuantile(double p, double start, Cdf cdf) {
  p *= 1 - 64 * kEps;
  double y = std::max(0.0, std::floor(start));
  if (cdf(y) >= p) {
    while (y > 0 && cdf(y - 1) >= p) --y;
  } else {
    do ++y;
    while (cdf(y) < p);
  }
  return y;
}

double qpois(double p, double lambda) {
  if (lambda == 0) return 0;
  const double start = lambda + detail::normalQuantile(p) * std::sqrt(lambda);
  return discreteQuantile(p, start, [&](double y) { return boost::math::gamma_q(y + 1, lambda); });
}

// qnbinom(p, size, prob): cdf(y) = I_prob(size, y + 1).
double qnbinom(double p, double size, double prob) {
  if (size == 0) return 0;
  const double mean = size * (1 - prob) / prob;
  const double start = mean + detail::normalQuantile(p) * std::sqrt(mean / prob);
  return discreteQuantile(p, start,
                          [&](double y) { return boost::math::ibeta(size, y + 1, prob); });
}

struct Bound {
  double upper, score;
};

// algo.farrington.threshold.farrington: the delta method on the power-transformed scale.
Bound deltaBound(double mu0, double seFit, double phi, double y, const FarringtonOptions& o) {
  const double tau = phi + seFit * seFit / mu0;
  double se = 0, e = 1;
  switch (o.powertrans) {
    case PowerTransform::kNone:
      se = std::sqrt(mu0 * tau);
      break;
    case PowerTransform::kHalf:
      se = std::sqrt(0.25 * tau);
      e = 0.5;
      break;
    case PowerTransform::kTwoThirds:
      se = std::sqrt(4.0 / 9 * std::pow(mu0, 1.0 / 3) * tau);
      e = 2.0 / 3;
      break;
  }
  const double z = detail::normalQuantile(1 - o.alpha);
  const double lo = std::pow(std::pow(mu0, e) - z * se, 1 / e);
  const double hi = std::pow(std::pow(mu0, e) + z * se, 1 / e);
  // sort(c(lo, hi), na.last = FALSE)[2]: the larger, or the one that is not NaN.
  const double upper = std::isnan(hi) ? lo : std::isnan(lo) ? hi : std::max(lo, hi);
  return {upper, std::isnan(upper) ? kNaN : (y - mu0) / (upper - mu0)};
}

// algo.farrington.threshold.noufaily: negative binomial (Poisson when phi <= 1) quantile at the
// fitted mean (nbPlugin) or at its upper 1 - alpha bound (muan). As in the package, the score
// compares y with the linear predictor.
Bound nbBound(double eta0, double seEta, double phi, double y, const FarringtonOptions& o) {
  const double mu = o.thresholdMethod == FarringtonThreshold::kNbPlugin
                        ? std::exp(eta0)
                        : std::exp(eta0 + detail::normalQuantile(1 - o.alpha) * seEta);
  if (std::isinf(mu)) return {kNaN, kNaN};
  const double upper =
      phi > 1 ? qnbinom(1 - o.alpha, mu / (phi - 1), 1 / phi) : qpois(1 - o.alpha, mu);
  return {upper, (y - eta0) / (upper - eta0)};
}

Status validate(const FarringtonOptions& o) {
  auto bad = [](std::string m) { return Status::invalidArgument("farrington: " + m); };
  if (o.periodsPerYear < 2) return bad("periodsPerYear must be >= 2");
  if (o.b < 1) return bad(fmt::format("b is {}; use at least 1 year back", o.b));
  if (o.w < 0 || 2 * o.w + 1 >= o.periodsPerYear)
    return bad(fmt::format("w is {}; the window 2w + 1 must be shorter than a year", o.w));
  if (!(o.alpha > 0 && o.alpha < 0.5))
    return bad(fmt::format("alpha is {}; it must be in (0, 0.5)", o.alpha));
  if (!(o.weightsThreshold > 0)) return bad("weightsThreshold must be > 0");
  if (!(o.pThresholdTrend > 0 && o.pThresholdTrend <= 1))
    return bad("pThresholdTrend must be in (0, 1]");
  if (o.limitCases < 0 || o.limitWeeks < 1)
    return bad("limit54 needs cases >= 0 and weeks >= 1 (as the package)");
  if (o.limitWeeks > o.periodsPerYear * o.b + o.w + 1)
    return bad("limit54's weeks exceed the history before the first assessed week");
  const int gap = o.periodsPerYear - 2 * o.w - 1;
  if (o.noPeriods < 1 || (o.noPeriods > 1 && o.noPeriods - 1 > gap))
    return bad(
        fmt::format("noPeriods is {}; it must be in 1..{} (one season block of >= 1 week each)",
                    o.noPeriods, gap + 1));
  const int past = o.pastWeeksNotIncluded.value_or(o.w);
  if (past < 0 || past > o.periodsPerYear - o.w - 1)
    return bad(fmt::format("pastWeeksNotIncluded is {}; it must be in 0..{}", past,
                           o.periodsPerYear - o.w - 1));
  return Status::ok();
}

}  // namespace

FarringtonOptions FarringtonOptions::improved() {
  FarringtonOptions o;
  o.noPeriods = 10;
  o.pastWeeksNotIncluded = 26;
  o.thresholdMethod = FarringtonThreshold::kNbPlugin;
  return o;
}

Result<std::vector<Signal>> farringtonFlexible(std::span<const double> counts,
                                               const FarringtonOptions& o) {
  for (size_t i = 0; i < counts.size(); ++i) {
    if (!std::isfinite(counts[i]) || counts[i] < 0)
      return Status::invalidArgument(fmt::format(
          "count {} of the series is {}; detection needs finite counts >= 0", i + 1, counts[i]));
  }
  TM_RETURN_IF_ERROR(validate(o));
  const size_t n = counts.size();
  const int freq = o.periodsPerYear, w = o.w, p = o.noPeriods;
  const int past = o.pastWeeksNotIncluded.value_or(o.w);
  const bool factors = p != 1;
  std::vector<Signal> out(n);
  std::vector<int> block(n);
  // 1-based week k, as the package's range (freq * b + w + 1):length.
  for (int k = freq * o.b + w + 1; k <= static_cast<int>(n); ++k) {
    // blocks(): the current and reference windows get factor p; with noPeriods > 1 the weeks
    // between two reference windows are cut into p - 1 blocks (the first `rest` one longer).
    std::fill(block.begin(), block.end(), 0);
    auto set = [&](int from, int to, int v) {
      for (int i = from; i <= to; ++i) block[static_cast<size_t>(i - 1)] = v;
    };
    set(k - w, k, p);
    for (int i = 1; i <= o.b; ++i) {
      const int ref = k - freq * i, prev = k - freq * (i - 1);
      set(ref - w, ref + w, p);
      if (factors) {
        const int period = prev - 2 * w - 1 - ref;
        const int len = period / (p - 1), rest = period % (p - 1);
        int start = ref + w + 1;
        for (int j = 1; j <= p - 1; ++j) {
          const int l = len + (j <= rest ? 1 : 0);
          set(start, start + l - 1, j);
          start += l;
        }
      }
    }
    set(k - past, k, 0);
    GlmData d;
    std::vector<int> levels;
    for (int i = 1; i <= static_cast<int>(n); ++i) {
      const int g = block[static_cast<size_t>(i - 1)];
      if (g == 0) continue;
      levels.push_back(g);
      d.y.push_back(counts[static_cast<size_t>(i - 1)]);
    }
    const size_t m = d.y.size();
    d.weights.assign(m, 1);
    d.x.push_back(std::vector<double>(m, 1));
    {
      std::vector<double> wtime;
      for (int i = 1; i <= static_cast<int>(n); ++i)
        if (block[static_cast<size_t>(i - 1)] != 0) wtime.push_back(i);
      d.x.push_back(std::move(wtime));
    }
    // Treatment contrasts of as.factor(): one indicator per level but the smallest.
    std::vector<int> present = levels;
    std::sort(present.begin(), present.end());
    present.erase(std::unique(present.begin(), present.end()), present.end());
    std::vector<double> x0Levels;
    if (factors) {
      for (size_t l = 1; l < present.size(); ++l) {
        std::vector<double> col(m);
        for (size_t i = 0; i < m; ++i) col[i] = levels[i] == present[l] ? 1 : 0;
        d.x.push_back(std::move(col));
        x0Levels.push_back(present[l] == p ? 1 : 0);
      }
    }
    if (!o.trend) d.x.erase(d.x.begin() + 1);
    const double y = counts[static_cast<size_t>(k - 1)];
    Signal& s = out[static_cast<size_t>(k - 1)];
    s.assessed = true;
    s.upperBound = kNaN;
    auto x0 = [&](bool trend) {
      std::vector<double> x{1};
      if (trend) x.push_back(k);
      x.insert(x.end(), x0Levels.begin(), x0Levels.end());
      return x;
    };
    auto eta = [&](const Model& model, const std::vector<double>& x) {
      double e = 0;
      for (size_t j = 0; j < x.size(); ++j) e += x[j] * model.fit.beta[j];
      return e;
    };
    auto model = fitFlexible(d, o.trend, o);
    if (!model) continue;  // no convergence: bound and alarm NA
    if (model->trend) {
      // algo.farrington.glm: keep the trend when b >= 3, its t-test p-value is below
      // pThresholdTrend and the prediction does not exceed the largest reference count.
      const double slope = model->fit.beta[1];
      std::vector<double> unit(model->fit.beta.size(), 0);
      unit[1] = 1;
      const double se = std::sqrt(quadForm(model->fit.rInv, unit) * model->dispersion);
      const bool significant = detail::twoSidedT(slope / se, model->fit.df) < o.pThresholdTrend;
      const double pred = linkinv(eta(*model, x0(true)));
      const bool noExtrapolation = pred <= *std::max_element(d.y.begin(), d.y.end());
      if (!(o.b >= 3 && significant && noExtrapolation)) {
        GlmData noTrend = d;
        noTrend.x.erase(noTrend.x.begin() + 1);
        model = fitFlexible(std::move(noTrend), false, o);
        if (!model) continue;
      }
    }
    const std::vector<double> x = x0(model->trend);
    const double eta0 = eta(*model, x);
    // predict.glm(se.fit = TRUE) scales by summary()'s dispersion, not by phi.
    const double seEta = std::sqrt(quadForm(model->fit.rInv, x) * model->dispersion);
    const Bound bound = o.thresholdMethod == FarringtonThreshold::kDelta
                            ? deltaBound(linkinv(eta0), seEta * linkinv(eta0), model->phi, y, o)
                            : nbBound(eta0, seEta, model->phi, y, o);
    double recent = 0;
    for (int i = k - o.limitWeeks + 1; i <= k; ++i) recent += counts[static_cast<size_t>(i - 1)];
    const bool enough = recent >= o.limitCases;
    s.upperBound = enough ? bound.upper : kNaN;
    s.alarm = enough && !std::isnan(bound.score) && bound.score > 1 && y != 0;
  }
  return out;
}

}  // namespace trialmesh::stats
