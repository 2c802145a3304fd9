// Disclosure control on a combined (merged) result: what may leave the federation.
//
//   TM_ASSIGN_OR_RETURN(ResultTable t, finalize(merged, bound));
//   TM_ASSIGN_OR_RETURN(DisclosureReport r,
//                       applyDisclosureControl(t, merged, bound, {grant.minCellSize}));
//
// Decisions are made on the merged partial's exact counts (rows per cell, values per statistic,
// histogram bin counts); the finalized table is then edited in place. Rules, with m the
// approval's minimum cell size:
//
// Primary suppression. A cell (one combination of the `by` levels) whose row count n satisfies
// 0 < n < m is suppressed: every statistic of it is replaced by the marker. A statistic whose
// own count of values is 0 < k < m (e.g. mean(bmi) over 2 non-missing values in a cell of 40
// rows) is suppressed in that cell. A histogram bin, "outside" or "missing" count below m is
// suppressed. A Kaplan–Meier group (cell) below m loses all its rows: they are replaced by one
// row of markers, because even the number of distinct times would tell how many people it has.
//
// Zeros are released by default (DisclosurePolicy::suppressZeros = false): a zero count is
// about nobody, structural zeros (e.g. "male" × "pregnant") are common and suppressing them
// would blank most sparse tables, and a suppressed zero cannot be told apart from a small
// count anyway. The price is group attribute disclosure (a zero next to a non-zero cell says
// that everybody in the line shares an attribute); approvals that need protection from it set
// suppressZeros, which treats zeros as primary suppressions.
//
// Secondary suppression. Margins and totals (from this table or other queries, e.g. the same
// query without `by`) must not give a suppressed value back by subtraction. The counts are
// viewed as a table with one dimension per `by` variable (histograms add the slot dimension:
// bins, outside, missing, whose total is the cell's row count). Along every line of that
// table — all cells that differ only in one dimension — with exactly one suppressed entry, the
// smallest unsuppressed non-zero entry of the line is suppressed as well (lowest index on ties);
// this repeats until no line has exactly one suppressed entry (a fixed point). When the rest of
// such a line is all zeros, its total equals the suppressed entry: if that total is below m it
// is itself suppressed wherever it is published and nothing more is needed; otherwise (the
// entry is a secondary one) a zero of the line is suppressed, so that the total splits between
// two unknowns. Cell-level decisions use the cells'
// row counts and apply to every statistic; a statistic's own value counts then get the same
// treatment, so sums cannot be recovered from the sum over all cells either.
//
// What this does not do: it does not audit combinations of different queries beyond
// margins (differencing "age < 50" and "age < 51" is limited by the approval's analyses,
// query budget and, in secure-dp mode, the noise); a Kaplan–Meier curve of a group at or above
// m still shows each event time (coarsen times with the approval's time_bin); min and max reveal
// single values by design (disclosive analyses).
//
// Representation. A suppressed value becomes the string kSuppressedMarker ("suppressed") in
// its column; formatTable, formatJson and formatCsv print it as that text (JSON: a string),
// and formatTable's two-way `count by a, b` view prints it in the cell and in every total
// that would include it. Values that are undefined (null, printed "NA") stay null. A note on
// the table says how many cells and values were suppressed; a note's total of missing values
// below m reads "fewer than m".
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"
#include "query/engine.h"
#include "query/partial.h"

namespace trialmesh::query {

inline constexpr std::string_view kSuppressedMarker = "suppressed";

struct DisclosurePolicy {
  // The approval's min_cell_size. 0 suppresses nothing; 1 suppresses only zeros, and only
  // with suppressZeros (every count >= 1 is allowed).
  uint32_t minCellSize = 0;
  // Treat zero counts as primary suppressions too (see above). Default false.
  bool suppressZeros = false;
};

struct DisclosureReport {
  uint32_t primaryCells = 0;    // cells below the minimum
  uint32_t secondaryCells = 0;  // further cells suppressed to protect margins
  // Statistic values suppressed in cells that were not suppressed as a whole (a statistic's own
  // count below the minimum, or its secondary suppression).
  uint64_t statisticValues = 0;
  uint32_t primaryBins = 0;       // hist: bins/outside/missing counts below the minimum
  uint32_t secondaryBins = 0;     // hist: further bins suppressed to protect cell totals
  uint64_t suppressedValues = 0;  // table entries replaced by kSuppressedMarker
  // For the audit log's "suppressed cells": primaryCells + secondaryCells.
  uint32_t suppressedCells() const { return primaryCells + secondaryCells; }
};

// Applies the rules above to `table`, which must be finalize(merged, query) unmodified.
// Errors: InvalidArgument when the partial is not of this query or the table does not have the
// shape finalize gives it (then `table` is unchanged).
Result<DisclosureReport> applyDisclosureControl(ResultTable& table, const PartialResult& merged,
                                                const BoundQuery& query,
                                                const DisclosurePolicy& policy);

// finalize() followed by applyDisclosureControl().
struct DisclosedResult {
  ResultTable table;
  DisclosureReport report;
};
Result<DisclosedResult> finalizeWithDisclosureControl(const PartialResult& merged,
                                                      const BoundQuery& query,
                                                      const DisclosurePolicy& policy);

}  // namespace trialmesh::query
