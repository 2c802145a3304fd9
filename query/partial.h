// Mergeable partial aggregates: what one site (or one thread, or one slice of rows) computes
// for a bound query, and how partials of any split of the rows combine into the result of all
// of them. This is the contract the federation builds on: partials are plain vectors of
// numbers (no pointers) so they can travel as Cap'n Proto messages and be secret-shared.
//
// Cells: a query `... by a, b` has one cell per combination of levels, in dictionary order,
// with the last `by` variable varying fastest (cell = code_a * levels_b + code_b). A group
// variable whose dictionary allows missing values gets one extra level "NA" after its declared
// levels. Without `by` there is one cell. Empty cells are kept.
//
// Merging is exact for counts, bins, integer sums, min/max and km, and agrees with a single
// pass over all rows to about 1e-12 relative for sums and moments (Chan et al.'s pairwise
// update); for data whose mean dwarfs its spread (1e9 + unit noise) moments agree to ~1e-9,
// because a mean is stored as one double.
//
// Thread-safety: plain values. mergeInto mutates only `acc`.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "common/status.h"
#include "stats/km.h"
#include "stats/survival_summary.h"

namespace trialmesh::query {

class BoundQuery;

// What a partial is a partial of. Partials merge only when their shapes are equal.
struct PartialShape {
  std::string dictionaryHash;  // storage::Dictionary::hashHex() of the study
  std::string queryText;       // canonicalQueryText of the query
  uint32_t cells = 0;          // group combinations
  uint32_t statistics = 0;     // entries of the select list
  bool operator==(const PartialShape&) const = default;
};

// One distinct time of a Kaplan–Meier statistic. At-risk counts are derived in finalize.
struct KmPoint {
  double time = 0;
  uint64_t events = 0;
  uint64_t censored = 0;
  bool operator==(const KmPoint&) const = default;
};

// The state of one statistic of the select list, per cell. Only the vectors the statistic
// needs are filled (the others stay empty):
//   count          n (rows; count(x): non-missing x)
//   count(x)       n, missing
//   sum            n, missing, sum, intSum (integer variables only)
//   mean, var, sd  n, missing, mean, m2 (M2 = sum of squared deviations from the mean)
//   min / max      n, missing, min / max (+inf / -inf in a cell without values)
//   hist           n, missing, bins, binCounts
//   km             n (rows with both time and event), missing, km
// Model rounds (query.h; p = design columns, in the order of the round table's "term" rows;
// formulas in docs/statistics.md). n and missing count complete-case and dropped rows.
//   lm_sums        cells 1; vec = X'X (p*p, row-major), X'y (p), y'y, sum y
//   glm_sums       cells 1; vec = X'WX (p*p), X'(y - mu) (p), deviance, sum y, boundary rows
//   cox_times      cells = strata; n per stratum, missing[0] all dropped rows; km per stratum:
//                  the distinct event times with their event counts (censored 0); vec = the
//                  column sums of X over the complete-case rows (p), for the centring means
// The finalized table of a round has one row per cell holding n; its notes name the design
// columns ("design column: sexM").
//   cox_sums       cells = strata; n per stratum, missing[0] all dropped rows; vec = for each
//                  stratum s in order, with m_s = |times[s]| and q = p (p + 1) / 2: riskR (m),
//                  riskRX (m*p), riskRXX (m*q: each time's symmetric p x p block as its lower
//                  triangle, row by row), deathX summed over times (p), deathR (m), deathRX
//                  (m*p), deathRXX (m*q); deaths from cox_times (model_kernel.h coxSumsLength)
struct StatPartial {
  std::vector<uint64_t> n;
  std::vector<uint64_t> missing;  // rows that passed the filter but lacked the variable(s)
  std::vector<double> sum;
  std::vector<int64_t> intSum;  // exact modulo 2^64; exact outright while |sum| < 2^62
  std::vector<double> mean;
  std::vector<double> m2;
  std::vector<double> min;
  std::vector<double> max;
  uint32_t bins = 0;                     // hist: bins per cell; slot `bins` counts values outside
  std::vector<uint64_t> binCounts;       // hist: cells * (bins + 1), cell-major
  std::vector<std::vector<KmPoint>> km;  // km: per cell, strictly ascending time
  std::vector<double> vec;               // model rounds: additive sums, layout above
  bool operator==(const StatPartial&) const = default;
};

struct PartialResult {
  PartialShape shape;
  std::vector<uint64_t> cellRows;  // rows passing the filter, per cell
  uint64_t rowsScanned = 0;
  std::vector<StatPartial> stats;  // one per select entry, in order
  bool operator==(const PartialResult&) const = default;
};

// Adds `other` into `acc`. Errors: InvalidArgument when the shapes differ or a vector has the
// wrong length (a malformed partial from a peer); `acc` is unchanged then.
Status mergeInto(PartialResult& acc, const PartialResult& other);

// --- finalized results -----------------------------------------------------------------

// null (a statistic undefined for the cell, e.g. the mean of no values), integer, real, text.
using ResultValue = std::variant<std::monostate, int64_t, double, std::string>;

// A display-ready table. Plain query: one row per cell, columns = the group variables (code,
// plus "<var>_label" when the dictionary declares labels) then one column per statistic named
// by its canonical text. hist: one row per cell and bin ("bin", "from", "to", "count") plus an
// "outside" and a "missing" row per cell. km: one row per cell and distinct time ("time",
// "n_risk", "n_event", "n_censor", "survival", "std_err", "std_err_cumhaz", "lower_95",
// "upper_95": std_err is the Greenwood standard error of S as summary.survfit's `std.err`,
// std_err_cumhaz that of -log S as the survfit object's `$std.err`; log-transformed 95% limits
// as R's survfit), a note per curve with its median and limits, and with two or more non-empty
// groups a note with the log-rank test; `curves` and `logRank` hold the same figures as fields.
struct ResultTable {
  enum class Kind : uint8_t { kCells, kHistogram, kSurvival };
  Kind kind = Kind::kCells;
  std::vector<std::string> columns;
  size_t groupColumns = 0;               // leading columns that name the cell
  std::vector<std::string> byVariables;  // the query's `by` list
  std::vector<std::string> statistics;   // canonical text of each statistic
  std::vector<std::vector<ResultValue>> rows;
  std::vector<std::string> notes;  // e.g. how many missing values were skipped
  // Text printed after the table in R's layout (km: print(survfit) and, grouped, survdiff);
  // empty for other queries. The notes carry the same numbers for people.
  std::string appendix;
  // kSurvival: one summary per cell in cell order (print.survfit's n, events, median and its
  // limits; `rows` left empty, the table holds them), `curveSuppressed` set by disclosure
  // control for a suppressed group (its figures are then not to be shown), and with two or
  // more non-empty groups survdiff's test (disclosure control drops it once any group is
  // suppressed).
  std::vector<stats::KmCurve> curves;
  std::vector<bool> curveSuppressed;
  std::optional<stats::LogRankTest> logRank;
  std::string logRankStrata;  // km(..., strata = s): the test is stratified by s
  // km(..., times = [...], rmean = ...): per curve in curve order, survival at the times and the
  // restricted mean (query/survival_report.h); empty without those options. Disclosure control
  // clears a suppressed group's, and every group's rmean when its tau is "common".
  std::vector<stats::SurvivalReport> reports;
  std::vector<double> reportTimes;  // the times asked for
  bool reportRmean = false;
  bool reportRmeanCommon = false;  // tau = the largest time of any curve
};

// Turns a (merged) partial into the table. Errors: InvalidArgument when the partial's shape
// is not the bound query's.
Result<ResultTable> finalize(const PartialResult& partial, const BoundQuery& query);

}  // namespace trialmesh::query
