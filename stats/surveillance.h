// Outbreak detection on one pooled count series (weekly, daily or monthly counts in time
// order), each method equal to R's `surveillance` 1.20 on the same series. Formulas and the R
// calls they reproduce: docs/surveillance.md.
//
// Every method returns one Signal per time point. Points the method cannot assess (too little
// history) have `assessed` false; an assessed point has the upper bound and the alarm
// (count > upper bound, as the package; NaN upper bound -> alarm NA, as R's NA).
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "common/status.h"

namespace trialmesh::stats {

struct Signal {
  bool assessed = false;
  double upperBound = 0;      // NaN when the package's bound is NaN (e.g. C3 on a zero baseline)
  std::optional<bool> alarm;  // nullopt: not assessed, or R's NA
};

enum class EarsMethod : uint8_t { kC1, kC2, kC3 };

struct EarsOptions {
  EarsMethod method = EarsMethod::kC1;
  int baseline = 7;  // >= 3
  // Default as the package: 0.001 for C1 and C2, 0.025 for C3.
  std::optional<double> alpha;
  double minSigma = 0;
};

// earsC(sts, control = list(method, baseline, alpha, minSigma)): the first baseline (C1),
// baseline + 2 (C2) or baseline + 4 (C3) points are not assessed.
Result<std::vector<Signal>> earsC(std::span<const double> counts, const EarsOptions& options);

struct PercentileOptions {
  int years = 3;            // k previous years
  double percentile = 80;   // p, in (0, 100]
  int periodsPerYear = 52;  // 52 weeks (as surveillance treats weekly series)
  int halfWindow = 2;       // weeks t-2..t+2 of each previous year
};

// CIDARS moving percentile: the bound is quantile(x, p / 100, type = 7) of the counts at
// t - y * periodsPerYear + d for y = 1..years, d = -halfWindow..halfWindow; the alarm is
// count > bound. Points without `years` full previous years of window are not assessed.
Result<std::vector<Signal>> movingPercentile(std::span<const double> counts,
                                             const PercentileOptions& options);

// Fixed threshold (CIDARS, for cholera, plague, ...): the bound is n and the alarm count >= n.
Result<std::vector<Signal>> fixedThreshold(std::span<const double> counts, double n);

// R's quantile(x, p, type = 7) of unsorted values (x non-empty, p in [0, 1]).
double quantileType7(std::vector<double> x, double p);

}  // namespace trialmesh::stats
