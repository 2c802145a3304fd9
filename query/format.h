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
// {"columns":[...],"rows":[[...],...],"notes":[...]}; null values are JSON null, reals are
// written with full precision.
std::string formatJson(const ResultTable& table);
// RFC 4180 CSV with a header row; null is an empty field; reals with full precision.
std::string formatCsv(const ResultTable& table);

}  // namespace trialmesh::query
