// Rendering a finalized ResultTable for people and programs.
//
// Thread-safety: pure functions.
#pragma once

#include <string>

#include "query/partial.h"

namespace trialmesh::query {

struct TableFormatOptions {
  // Show `count by a, b` (exactly two group variables, the single statistic count) as a
  // two-way table: levels of a down, levels of b across.
  bool crossTab = true;
  int realDigits = 6;  // significant digits of real values
};

// Aligned text for a terminal: header, rule, rows (numbers right-aligned, "NA" for null), then
// the notes.
std::string formatTable(const ResultTable& table, const TableFormatOptions& options = {});
// The version of the JSON layout below (docs/json-output.md); raised on any change a client
// could notice other than a new field.
inline constexpr int kJsonSchemaVersion = 1;

// {"schema_version":1,"kind":...,"columns":[...],"group_columns":[...],"by":[...],
//  "statistics":[...],"rows":[{"<column>":value,...,"suppressed":[...]}],"notes":[...]}, and
// for Kaplan–Meier also "curves" (n, events, median and limits per group) and "logrank"
// (observed, expected, variance matrix, chi-square, df, p; null with fewer than two groups or
// once a group is suppressed). Undefined values are null; a value withheld by disclosure
// control is null and its column is named in the row's "suppressed" list. Reals are written
// with full precision. Layout: docs/json-output.md.
std::string formatJson(const ResultTable& table);
// RFC 4180 CSV with a header row, loadable with R's read.csv: undefined and suppressed values
// are NA, a final "suppressed" column is TRUE/FALSE and "suppressed_columns" names the
// withheld columns (";" between them). Kaplan–Meier tables add each row's curve median and
// limits and the log-rank chi-square, df and p as columns. Reals with full precision.
std::string formatCsv(const ResultTable& table);

}  // namespace trialmesh::query
