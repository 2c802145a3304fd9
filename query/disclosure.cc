#include "query/disclosure.h"

#include <fmt/format.h>

#include <limits>
#include <vector>

#include "query/plan.h"

namespace trialmesh::query {
namespace {

// Counts laid out as a table (last dimension fastest, like cells) with a suppression mask.
struct Grid {
  std::vector<uint32_t> dims;
  std::vector<uint64_t> counts;
  std::vector<bool> suppressed;
};

bool isPrimary(uint64_t n, const DisclosurePolicy& p) {
  return n < p.minCellSize && (n > 0 || p.suppressZeros);
}

// Secondary suppression to a fixed point (rules in disclosure.h). Returns how many entries it
// suppressed.
uint64_t suppressSecondary(Grid& g, const DisclosurePolicy& policy) {
  const size_t total = g.counts.size();
  std::vector<size_t> stride(g.dims.size(), 1);
  for (size_t d = g.dims.size(); d-- > 1;) stride[d - 1] = stride[d] * g.dims[d];
  uint64_t added = 0;
  bool changed = true;
  while (changed) {
    changed = false;
    for (size_t d = 0; d < g.dims.size(); ++d) {
      const size_t width = g.dims[d];
      if (width < 2) continue;
      for (size_t base = 0; base < total; ++base) {
        if ((base / stride[d]) % width != 0) continue;  // one visit per line
        size_t suppressedInLine = 0;
        size_t best = total;
        size_t firstZero = total;
        uint64_t lineTotal = 0;
        for (size_t k = 0; k < width; ++k) {
          const size_t i = base + k * stride[d];
          lineTotal += g.counts[i];
          if (g.suppressed[i]) {
            ++suppressedInLine;
          } else if (g.counts[i] > 0 && (best == total || g.counts[i] < g.counts[best])) {
            best = i;
          } else if (g.counts[i] == 0 && firstZero == total) {
            firstZero = i;
          }
        }
        if (suppressedInLine != 1) continue;
        // Only zeros left: the line total equals the suppressed entry. If that total is below
        // the minimum it is suppressed wherever it is published; otherwise (a secondary entry
        // of any size) a zero is suppressed so that the total splits two unknown ways.
        if (best == total && !isPrimary(lineTotal, policy)) best = firstZero;
        if (best != total) {
          g.suppressed[best] = true;
          ++added;
          changed = true;
        }
      }
    }
  }
  return added;
}

std::vector<uint32_t> cellDims(const detail::Plan& plan) {
  std::vector<uint32_t> dims;
  for (const auto& g : plan.groups) dims.push_back(g.width());
  if (dims.empty()) dims.push_back(1);
  return dims;
}

// The same vector-length checks finalize makes, for the parts read here.
Status checkInputs(const ResultTable& table, const PartialResult& merged, const BoundQuery& query) {
  const detail::Plan& plan = query.plan();
  if (!(merged.shape == query.shape())) {
    return Status::invalidArgument(
        fmt::format("disclosure control: the partial is for '{}', not for the query '{}'",
                    merged.shape.queryText, plan.canonical));
  }
  const size_t cells = plan.cells;
  auto bad = [&](const std::string& what) {
    return Status::invalidArgument(
        fmt::format("disclosure control of '{}': {}", plan.canonical, what));
  };
  if (merged.cellRows.size() != cells || merged.stats.size() != plan.aggregates.size())
    return bad("the partial is malformed");
  for (const StatPartial& s : merged.stats) {
    if (s.n.size() != cells || (!s.missing.empty() && s.missing.size() != cells))
      return bad("the partial is malformed");
  }
  const AggFn first = plan.aggregates.front().fn;
  size_t rows = cells;
  ResultTable::Kind kind = ResultTable::Kind::kCells;
  if (first == AggFn::kHist) {
    const StatPartial& s = merged.stats.front();
    if (s.binCounts.size() != cells * (size_t{s.bins} + 1) || s.missing.size() != cells)
      return bad("the partial is malformed");
    rows = cells * (size_t{s.bins} + 2);
    kind = ResultTable::Kind::kHistogram;
  } else if (first == AggFn::kKm) {
    const StatPartial& s = merged.stats.front();
    if (s.km.size() != cells) return bad("the partial is malformed");
    rows = 0;
    for (const auto& list : s.km) rows += list.size();
    kind = ResultTable::Kind::kSurvival;
  }
  // Survival tables carry as many columns per time as finalize gives them (at least "time").
  const bool columnsOk = kind == ResultTable::Kind::kCells
                             ? table.columns.size() == table.groupColumns + plan.aggregates.size()
                         : kind == ResultTable::Kind::kHistogram
                             ? table.columns.size() == table.groupColumns + 4
                             : table.columns.size() > table.groupColumns;
  if (table.kind != kind || table.rows.size() != rows || !columnsOk ||
      table.statistics.size() != plan.aggregates.size()) {
    return bad("the table is not the finalized result of this partial");
  }
  for (const auto& row : table.rows) {
    if (row.size() != table.columns.size())
      return bad("the table is not the finalized result of this partial");
  }
  return Status::ok();
}

ResultValue marker() { return std::string(kSuppressedMarker); }

// finalize's survival extras describe every group: a note "<curve>: n = ..., events = ...,
// median = ..." per curve, a log-rank note, and the printed survfit/survdiff text (appendix).
// For a suppressed group its note becomes "<curve>: suppressed"; as the log-rank statistic and
// the printed text combine every group's counts, both are withheld once any group is.
void withholdSurvivalSummaries(ResultTable& table, const detail::Plan& plan,
                               const std::vector<bool>& mask) {
  bool any = false;
  for (uint32_t c = 0; c < plan.cells; ++c) {
    if (!mask[c]) continue;
    any = true;
    // The curve's name as finalize writes it: "arm=A" (", " between group variables).
    std::string name;
    uint32_t rest = c;
    std::vector<std::string> parts(plan.groups.size());
    for (size_t gi = plan.groups.size(); gi-- > 0;) {
      const auto& g = plan.groups[gi];
      const auto& v = plan.dictionary.variable(g.var);
      const uint32_t code = rest % g.width();
      rest /= g.width();
      std::string value = code == g.levels ? std::string("NA") : g.levelText(v, code);
      parts[gi] = v.name + "=" + value;
    }
    for (size_t gi = 0; gi < parts.size(); ++gi) name += (gi ? ", " : "") + parts[gi];
    if (name.empty()) name = "all";
    if (c < table.curveSuppressed.size()) {
      table.curveSuppressed[c] = true;
      // Keep only the name: n, events and the median would tell the group's size.
      stats::KmCurve hidden;
      hidden.name = table.curves[c].name;
      table.curves[c] = std::move(hidden);
      if (c < table.reports.size()) table.reports[c] = {};
    }
    const std::string prefix = name + ": n = ";
    for (std::string& note : table.notes) {
      if (note.compare(0, prefix.size(), prefix) == 0)
        note = name + ": " + std::string(kSuppressedMarker);
    }
  }
  if (!any) return;
  // rmean = common integrates every curve up to the largest time of any, a suppressed group's
  // included: the limit (and so every rmean) would tell that group's last time.
  if (table.reportRmeanCommon) {
    for (auto& r : table.reports) r.rmean.reset();
    table.notes.push_back(
        "rmean: withheld because a group is suppressed and its upper limit is "
        "common (give rmean = <time>)");
  }
  std::vector<std::string> kept;
  bool droppedTest = false;
  for (std::string& note : table.notes) {
    if (note.compare(0, 15, "log-rank test: ") == 0) {
      droppedTest = true;
    } else {
      kept.push_back(std::move(note));
    }
  }
  table.notes = std::move(kept);
  table.logRank.reset();
  if (droppedTest) table.notes.push_back("log-rank test: withheld because a group is suppressed");
  if (!table.appendix.empty()) {
    table.appendix.clear();
    table.notes.push_back(
        "the printed survfit/survdiff summary is withheld because a group is suppressed");
  }
}

}  // namespace

Result<DisclosureReport> applyDisclosureControl(ResultTable& table, const PartialResult& merged,
                                                const BoundQuery& query,
                                                const DisclosurePolicy& policy) {
  TM_RETURN_IF_ERROR(checkInputs(table, merged, query));
  const detail::Plan& plan = query.plan();
  const uint32_t cells = plan.cells;
  DisclosureReport report;

  // Cells: primary on the row counts, then secondary over the `by` table.
  Grid cellGrid{cellDims(plan), merged.cellRows, std::vector<bool>(cells, false)};
  for (uint32_t c = 0; c < cells; ++c) {
    if (isPrimary(merged.cellRows[c], policy)) {
      cellGrid.suppressed[c] = true;
      ++report.primaryCells;
    }
  }
  report.secondaryCells = static_cast<uint32_t>(suppressSecondary(cellGrid, policy));
  const std::vector<bool>& cellMask = cellGrid.suppressed;

  // A statistic's own counts, starting from the cell decisions.
  auto statisticMask = [&](const StatPartial& s) {
    Grid g{cellDims(plan), s.n, cellMask};
    for (uint32_t c = 0; c < cells; ++c) {
      if (isPrimary(s.n[c], policy)) g.suppressed[c] = true;
    }
    suppressSecondary(g, policy);
    for (uint32_t c = 0; c < cells; ++c) {
      if (g.suppressed[c] && !cellMask[c]) ++report.statisticValues;
    }
    return g.suppressed;
  };

  const AggFn first = plan.aggregates.front().fn;
  if (first == AggFn::kHist) {
    const StatPartial& s = merged.stats.front();
    const uint32_t slots = s.bins + 2;  // bins, outside, missing
    Grid g;
    g.dims = cellDims(plan);
    g.dims.push_back(slots);
    g.counts.resize(size_t{cells} * slots);
    g.suppressed.assign(g.counts.size(), false);
    for (uint32_t c = 0; c < cells; ++c) {
      for (uint32_t k = 0; k <= s.bins; ++k)
        g.counts[size_t{c} * slots + k] = s.binCounts[size_t{c} * (s.bins + 1) + k];
      g.counts[size_t{c} * slots + s.bins + 1] = s.missing[c];
      for (uint32_t k = 0; k < slots; ++k) {
        const size_t i = size_t{c} * slots + k;
        if (cellMask[c]) {
          g.suppressed[i] = true;
        } else if (isPrimary(g.counts[i], policy)) {
          g.suppressed[i] = true;
          ++report.primaryBins;
        }
      }
    }
    report.secondaryBins = static_cast<uint32_t>(suppressSecondary(g, policy));
    const size_t countColumn = table.groupColumns + 3;
    for (size_t i = 0; i < g.suppressed.size(); ++i) {
      if (!g.suppressed[i]) continue;
      table.rows[i][countColumn] = marker();
      ++report.suppressedValues;
    }
  } else if (first == AggFn::kKm) {
    const StatPartial& s = merged.stats.front();
    const std::vector<bool> mask = statisticMask(s);
    std::vector<std::vector<ResultValue>> rows;
    rows.reserve(table.rows.size());
    size_t at = 0;
    for (uint32_t c = 0; c < cells; ++c) {
      const size_t count = s.km[c].size();
      if (mask[c] && count > 0) {
        // One row of markers: the number of distinct times would itself be disclosive.
        std::vector<ResultValue> row(
            table.rows[at].begin(),
            table.rows[at].begin() + static_cast<ptrdiff_t>(table.groupColumns));
        row.resize(table.columns.size(), marker());
        report.suppressedValues += table.columns.size() - table.groupColumns;
        rows.push_back(std::move(row));
      } else {
        for (size_t k = 0; k < count; ++k) rows.push_back(std::move(table.rows[at + k]));
      }
      at += count;
    }
    table.rows = std::move(rows);
    withholdSurvivalSummaries(table, plan, mask);
  } else {
    for (size_t i = 0; i < plan.aggregates.size(); ++i) {
      const std::vector<bool> mask = statisticMask(merged.stats[i]);
      for (uint32_t c = 0; c < cells; ++c) {
        if (!mask[c]) continue;
        table.rows[c][table.groupColumns + i] = marker();
        ++report.suppressedValues;
      }
    }
  }

  // finalize's notes state how many rows lacked a variable; a small total is a count too.
  for (size_t i = 0; i < merged.stats.size(); ++i) {
    uint64_t missing = 0;
    for (uint64_t m : merged.stats[i].missing) missing += m;
    if (missing == 0 || !isPrimary(missing, policy)) continue;
    const std::string before = fmt::format("{}: {} row{} with missing ", table.statistics[i],
                                           missing, missing == 1 ? "" : "s");
    const std::string after = fmt::format("{}: fewer than {} rows with missing ",
                                          table.statistics[i], policy.minCellSize);
    for (std::string& note : table.notes) {
      if (note.compare(0, before.size(), before) == 0) note = after + note.substr(before.size());
    }
  }

  if (report.suppressedValues > 0) {
    std::string what = fmt::format("{} cell{} below the minimum", report.primaryCells,
                                   report.primaryCells == 1 ? "" : "s");
    if (report.secondaryCells > 0)
      what += fmt::format(", {} more to protect totals", report.secondaryCells);
    if (report.statisticValues > 0)
      what += fmt::format(", {} statistic value{} with too few values", report.statisticValues,
                          report.statisticValues == 1 ? "" : "s");
    if (report.primaryBins > 0 || report.secondaryBins > 0)
      what +=
          fmt::format(", {} bin count{} below the minimum and {} more to protect totals",
                      report.primaryBins, report.primaryBins == 1 ? "" : "s", report.secondaryBins);
    table.notes.push_back(
        fmt::format("disclosure control (minimum cell size {}): {}; {} value{} shown as \"{}\"",
                    policy.minCellSize, what, report.suppressedValues,
                    report.suppressedValues == 1 ? "" : "s", kSuppressedMarker));
  }
  return report;
}

Result<DisclosedResult> finalizeWithDisclosureControl(const PartialResult& merged,
                                                      const BoundQuery& query,
                                                      const DisclosurePolicy& policy) {
  TM_ASSIGN_OR_RETURN(ResultTable table, finalize(merged, query));
  TM_ASSIGN_OR_RETURN(DisclosureReport report,
                      applyDisclosureControl(table, merged, query, policy));
  return DisclosedResult{std::move(table), report};
}

}  // namespace trialmesh::query
