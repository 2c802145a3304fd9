// The Farrington family of outbreak detection methods on one pooled weekly count series, equal to
// R's surveillance 1.20 farringtonFlexible(): the original method with the package defaults and
// the improved variant of Noufaily et al. (2013). Formulas and the R calls: docs/surveillance.md.
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "common/status.h"
#include "stats/surveillance.h"

namespace trialmesh::stats {

enum class FarringtonThreshold : uint8_t {
  kDelta,     // "delta": delta method on the power-transformed scale (the original method)
  kNbPlugin,  // "nbPlugin": negative binomial quantile at the fitted mean
  kMuan,      // "muan": negative binomial quantile at the upper (1 - alpha) bound of the mean
};

enum class PowerTransform : uint8_t { kNone, kHalf, kTwoThirds };

struct FarringtonOptions {
  int b = 5;  // years back (the package default)
  int w = 3;  // weeks each side of the reference weeks
  bool reweight = true;
  double weightsThreshold = 2.58;  // Anscombe residuals above it are down-weighted
  double alpha = 0.05;
  bool trend = true;
  double pThresholdTrend = 0.05;
  int limitCases = 5;  // limit54: no alarm (and no bound) with fewer than 5 cases ...
  int limitWeeks = 4;  // ... in the last 4 weeks, the current one included
  PowerTransform powertrans = PowerTransform::kTwoThirds;
  FarringtonThreshold thresholdMethod = FarringtonThreshold::kDelta;
  int noPeriods = 1;
  std::optional<int> pastWeeksNotIncluded;  // default w
  int periodsPerYear = 52;

  // noPeriods = 10, pastWeeksNotIncluded = 26, thresholdMethod = "nbPlugin".
  static FarringtonOptions improved();
};

// farringtonFlexible(sts(counts, frequency = 52), control): points before
// periodsPerYear * b + w + 1 (1-based) are not assessed. An assessed point whose GLM does not
// converge has a NaN bound and alarm NA; one failing limit54 has a NaN bound and alarm false,
// as the package.
Result<std::vector<Signal>> farringtonFlexible(std::span<const double> counts,
                                               const FarringtonOptions& options);

}  // namespace trialmesh::stats
