// Row-level reference evaluators: the sums of regression.h and cox.h computed from rows. The
// site engine calls these on its own rows each round; tests use them to show that sums over
// any split of the rows add up to the sums over all rows.
//
// Missing values are NaN. A row with a missing value in any variable the model uses is dropped
// (complete-case analysis) and counted in `missing`.
//
// Thread-safety: pure functions over caller-owned data.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "common/status.h"
#include "stats/cox.h"
#include "stats/km.h"
#include "stats/regression.h"

namespace trialmesh::stats {

// A design matrix: rows x cols, row-major; NaN marks a missing value. An intercept is an
// explicit column of ones (see regression.h).
struct DesignMatrix {
  size_t rows = 0;
  size_t cols = 0;
  std::vector<double> values;
  double at(size_t r, size_t c) const { return values[r * cols + c]; }
};

// The row indices 0 .. n-1, for evaluating over all rows.
std::vector<size_t> allRows(size_t n);

// Sums over `rows` (indices into x and y). Errors: InvalidArgument when y's length or a row
// index does not fit x.
Result<LinearSums> linearSumsFromRows(const DesignMatrix& x, std::span<const double> y,
                                      std::span<const size_t> rows);

// Sums at `beta` (x.cols entries). y must be 0 or 1 (or NaN = missing). Errors:
// InvalidArgument naming the row and value otherwise.
Result<LogisticSums> logisticSumsFromRows(const DesignMatrix& x, std::span<const double> y,
                                          std::span<const size_t> rows,
                                          const std::vector<double>& beta);

// Survival data for the Cox evaluators. `event` is 1 (event) or 0 (censored), NaN = missing.
// `strata` is empty (one stratum) or holds a stratum index per row (< grids.size()).
struct SurvivalRows {
  const DesignMatrix* x = nullptr;
  std::span<const double> time;
  std::span<const double> event;
  std::span<const uint32_t> strata;
};

// The distinct event times per stratum among the complete-case `rows`, ascending: what a site
// contributes to the coordinator's grid (the union over sites). `strataCount` sets the number
// of strata (1 when data.strata is empty).
Result<std::vector<std::vector<double>>> coxEventTimes(const SurvivalRows& data,
                                                       std::span<const size_t> rows,
                                                       size_t strataCount);

// Cox sums at `beta` over the complete-case `rows`, on the coordinator's per-stratum grids,
// with covariates centred by `center` (x.cols entries). Errors: InvalidArgument when an event
// time is not on its stratum's grid, a stratum index is out of range, event is not 0/1, or a
// length mismatches.
Result<CoxSums> coxSumsFromRows(const SurvivalRows& data, std::span<const size_t> rows,
                                const std::vector<double>& beta, const std::vector<double>& center,
                                const std::vector<std::vector<double>>& grids);

// The complete-case rows of a survival data set arranged for repeated Cox evaluations (one per
// Newton round): per stratum, the covariates copied in order of their grid slot (the last grid
// time at or before the row's time), so coxSumsOrdered is one sequential sweep from the last
// grid time down, O(n·p² + m·p²), with no search and no scattered writes. A site builds it once
// per dataset version and grid and reuses it every round. Errors: as coxSumsFromRows.
struct CoxOrder {
  struct Stratum {
    std::vector<double> times;   // the grid
    uint64_t n = 0;              // complete-case rows of the stratum
    std::vector<size_t> start;   // m + 1: rows of slot t are [start[t], start[t+1])
    std::vector<double> x;       // rows in slot order, p per row (uncentred)
    std::vector<uint8_t> event;  // 1 = event
  };
  size_t p = 0;
  uint64_t missing = 0;
  std::vector<Stratum> strata;
};
Result<CoxOrder> coxOrder(const SurvivalRows& data, std::span<const size_t> rows,
                          const std::vector<std::vector<double>>& grids);
// The sums of coxSumsFromRows from an ordered data set. Errors: InvalidArgument when beta or
// center do not have p entries.
Result<CoxSums> coxSumsOrdered(const CoxOrder& order, const std::vector<double>& beta,
                               const std::vector<double>& center);

// Kaplan–Meier counts (time ascending) of the complete-case `rows` (x is not used and may be
// null; strata are ignored: pass one group's rows). Errors: as coxEventTimes.
Result<std::vector<SurvivalPoint>> survivalPointsFromRows(const SurvivalRows& data,
                                                          std::span<const size_t> rows);

}  // namespace trialmesh::stats
