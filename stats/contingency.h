// Tests of a cross-table (R's chisq.test and fisher.test) from its counts. The coordinator runs
// them on the pooled, released table of `count by a, b` (query/cross_test.h); formulas follow R's
// source (stats:::chisq.test, stats:::fisher.test) and are documented in docs/statistics.md.
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <vector>

#include "common/status.h"

namespace trialmesh::stats {

// counts[i][j]: rows are the levels of the first variable, columns those of the second.
using CountTable = std::vector<std::vector<int64_t>>;

struct ChiSquaredTest {
  double statistic = 0;  // X-squared
  double df = 0;         // (r - 1)(c - 1)
  double p = 0;          // pchisq(statistic, df, lower.tail = FALSE)
  bool yates = false;    // Yates' continuity correction applied (2 x 2, correct, and |O - E| > 0)
  double minExpected = 0;
  // R's warning "Chi-squared approximation may be incorrect": some expected count below 5.
  bool approximationWarning = false;
};

// Pearson's chi-squared test of independence, as chisq.test(table): with `correct` a 2 x 2
// table gets Yates' correction min(0.5, |O - E|). Errors: fewer than two rows or columns, a
// negative count, an empty row or column (R's expected count 0 gives NaN).
Result<ChiSquaredTest> chiSquaredTest(const CountTable& counts, bool correct);

struct FisherTest {
  double p = 0;          // two-sided, R's relErr = 1 + 1e-7 rule
  double oddsRatio = 0;  // conditional MLE (0 or +inf at the ends of the support)
  double confLow = 0;    // 95% conditional limits (0 and +inf at the ends)
  double confHigh = 0;
};

// Fisher's exact test of a 2 x 2 table, as fisher.test(table) (two-sided, conf.level 0.95). The
// odds ratio and limits are roots found by R's uniroot (Brent's zeroin with tol
// .Machine$double.eps^0.25), reproduced step by step so that the figures are R's printed ones,
// not a more precise root R does not report.
Result<FisherTest> fisherTest(const CountTable& counts);

}  // namespace trialmesh::stats
