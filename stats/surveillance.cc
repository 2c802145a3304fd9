#include "stats/surveillance.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "stats/distributions.h"

namespace trialmesh::stats {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

Status checkCounts(std::span<const double> counts) {
  for (size_t i = 0; i < counts.size(); ++i) {
    if (!std::isfinite(counts[i]) || counts[i] < 0)
      return Status::invalidArgument(fmt::format(
          "count {} of the series is {}; detection needs finite counts >= 0", i + 1, counts[i]));
  }
  return Status::ok();
}

// R's mean() and sd() of x[first .. first + n): mean() adds the mean residual back (its long
// double second pass), sd() is the two-pass sample standard deviation.
struct MeanSd {
  double mean, sd;
};
MeanSd meanSd(std::span<const double> x, size_t first, size_t n) {
  long double s = 0;
  for (size_t i = 0; i < n; ++i) s += x[first + i];
  long double m = s / static_cast<long double>(n);
  long double r = 0;
  for (size_t i = 0; i < n; ++i) r += x[first + i] - m;
  m += r / static_cast<long double>(n);
  const double mean = static_cast<double>(m);
  double ss = 0;
  for (size_t i = 0; i < n; ++i) {
    const double d = x[first + i] - mean;
    ss += d * d;
  }
  return {mean, std::sqrt(ss / static_cast<double>(n - 1))};
}

Signal judged(double count, double bound) {
  Signal s;
  s.assessed = true;
  s.upperBound = bound;
  if (!std::isnan(bound)) s.alarm = count > bound;
  return s;
}

}  // namespace

double quantileType7(std::vector<double> x, double p) {
  std::sort(x.begin(), x.end());
  const double n = static_cast<double>(x.size());
  // R: index <- 1 + (n - 1) * probs; lo <- floor(index); hi <- ceiling(index);
  // qs <- x[lo]; when index > lo and x[hi] != qs: h <- index - lo; qs <- (1 - h) * qs + h * x[hi]
  const double index = 1 + (n - 1) * p;
  const double lo = std::floor(index), hi = std::ceil(index);
  const double h = index - lo;
  double q = x[static_cast<size_t>(lo) - 1];
  const double up = x[static_cast<size_t>(hi) - 1];
  if (index > lo && up != q) q = (1 - h) * q + h * up;
  return q;
}

Result<std::vector<Signal>> earsC(std::span<const double> counts, const EarsOptions& options) {
  TM_RETURN_IF_ERROR(checkCounts(counts));
  if (options.baseline < 3)
    return Status::invalidArgument(
        fmt::format("earsC baseline is {}; the minimum baseline is 3 weeks", options.baseline));
  if (options.minSigma < 0) return Status::invalidArgument("earsC minSigma must be >= 0");
  const double alpha = options.alpha.value_or(options.method == EarsMethod::kC3 ? 0.025 : 0.001);
  if (!(alpha > 0 && alpha < 1))
    return Status::invalidArgument(fmt::format("earsC alpha is {}; it must be in (0, 1)", alpha));
  const double z = detail::normalQuantile(1 - alpha);
  const size_t b = static_cast<size_t>(options.baseline);
  const size_t n = counts.size();
  std::vector<Signal> out(n);
  // Reference window of point t (0-based): C1 t-b..t-1; C2 and C3 t-b-2..t-3.
  const size_t lag = options.method == EarsMethod::kC1 ? 0 : 2;
  auto ref = [&](size_t t) { return meanSd(counts, t - b - lag, b); };
  switch (options.method) {
    case EarsMethod::kC1:
    case EarsMethod::kC2:
      for (size_t t = b + lag; t < n; ++t) {
        const MeanSd m = ref(t);
        out[t] = judged(counts[t], m.mean + z * std::max(m.sd, options.minSigma));
      }
      break;
    case EarsMethod::kC3: {
      // C2 statistic of t: (x_t - mean) / max(sd, minSigma); the bound of t is
      // x_t + sigma_t * (z - (max(0, C2_{t-2} - 1) + max(0, C2_{t-1} - 1))), floored at 0.
      auto c2 = [&](size_t t) {
        const MeanSd m = ref(t);
        return (counts[t] - m.mean) / std::max(m.sd, options.minSigma);
      };
      // R's pmax(0, NaN) is NaN, so a NaN C2 propagates into the bound.
      auto part = [](double c) { return std::isnan(c) ? kNaN : std::max(0.0, c - 1); };
      for (size_t t = b + 4; t < n; ++t) {
        const double sigma = std::max(ref(t).sd, options.minSigma);
        double bound = counts[t] + sigma * (z - (part(c2(t - 2)) + part(c2(t - 1))));
        if (!std::isnan(bound)) bound = std::max(0.0, bound);
        out[t] = judged(counts[t], bound);
      }
      break;
    }
  }
  return out;
}

Result<std::vector<Signal>> movingPercentile(std::span<const double> counts,
                                             const PercentileOptions& options) {
  TM_RETURN_IF_ERROR(checkCounts(counts));
  if (options.years < 1)
    return Status::invalidArgument(
        fmt::format("the moving percentile needs at least 1 previous year, not {}", options.years));
  if (!(options.percentile > 0 && options.percentile <= 100))
    return Status::invalidArgument(
        fmt::format("the moving percentile p is {}; it must be in (0, 100]", options.percentile));
  if (options.periodsPerYear < 1 || options.halfWindow < 0 ||
      2 * options.halfWindow >= options.periodsPerYear)
    return Status::invalidArgument("the moving percentile window must be shorter than a year");
  const size_t n = counts.size();
  const size_t back =
      static_cast<size_t>(options.years) * static_cast<size_t>(options.periodsPerYear) +
      static_cast<size_t>(options.halfWindow);
  std::vector<Signal> out(n);
  std::vector<double> window;
  for (size_t t = back; t < n; ++t) {
    window.clear();
    for (int y = 1; y <= options.years; ++y) {
      for (int d = -options.halfWindow; d <= options.halfWindow; ++d) {
        const size_t i = t - static_cast<size_t>(y * options.periodsPerYear) +
                         static_cast<size_t>(static_cast<ptrdiff_t>(d));
        window.push_back(counts[i]);
      }
    }
    out[t] = judged(counts[t], quantileType7(window, options.percentile / 100));
  }
  return out;
}

Result<std::vector<Signal>> fixedThreshold(std::span<const double> counts, double n) {
  TM_RETURN_IF_ERROR(checkCounts(counts));
  if (!(std::isfinite(n) && n >= 1))
    return Status::invalidArgument(
        fmt::format("the fixed threshold is {}; it must be a number of cases >= 1", n));
  std::vector<Signal> out(counts.size());
  for (size_t t = 0; t < counts.size(); ++t) {
    out[t].assessed = true;
    out[t].upperBound = n;
    out[t].alarm = counts[t] >= n;
  }
  return out;
}

}  // namespace trialmesh::stats
