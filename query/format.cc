#include "query/format.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "query/disclosure.h"
#include "query/survival_report.h"

namespace trialmesh::query {

namespace {

bool isNumber(const ResultValue& v) {
  return std::holds_alternative<int64_t>(v) || std::holds_alternative<double>(v);
}

std::string displayText(const ResultValue& v, int digits) {
  if (std::holds_alternative<std::monostate>(v)) return "NA";
  if (const auto* i = std::get_if<int64_t>(&v)) return std::to_string(*i);
  if (const auto* d = std::get_if<double>(&v)) return fmt::format("{:.{}g}", *d, digits);
  return std::get<std::string>(v);
}

std::string exactText(const ResultValue& v) {
  if (std::holds_alternative<std::monostate>(v)) return {};
  if (const auto* i = std::get_if<int64_t>(&v)) return std::to_string(*i);
  if (const auto* d = std::get_if<double>(&v)) return fmt::format("{}", *d);
  return std::get<std::string>(v);
}

// Renders a grid of cells; `numeric[c][r]` right-aligns a cell.
std::string renderGrid(const std::vector<std::string>& header,
                       const std::vector<std::vector<std::string>>& rows,
                       const std::vector<std::vector<bool>>& rightAlign) {
  std::vector<size_t> width(header.size(), 0);
  for (size_t c = 0; c < header.size(); ++c) width[c] = header[c].size();
  for (const auto& r : rows)
    for (size_t c = 0; c < r.size() && c < width.size(); ++c)
      width[c] = std::max(width[c], r[c].size());
  std::string out;
  auto line = [&](const std::vector<std::string>& cells, const std::vector<bool>* right) {
    std::string s;
    for (size_t c = 0; c < width.size(); ++c) {
      const std::string& v = c < cells.size() ? cells[c] : std::string();
      if (c) s += "  ";
      bool r = right && c < right->size() && (*right)[c];
      std::string pad(width[c] - std::min(width[c], v.size()), ' ');
      s += r ? pad + v : v + pad;
    }
    while (!s.empty() && s.back() == ' ') s.pop_back();
    out += s + "\n";
  };
  std::vector<bool> headerRight(header.size(), false);
  for (size_t c = 0; c < header.size(); ++c) {
    bool allNumeric = !rows.empty();
    for (size_t r = 0; r < rows.size(); ++r) allNumeric = allNumeric && rightAlign[r][c];
    headerRight[c] = allNumeric;
  }
  line(header, &headerRight);
  std::string rule;
  for (size_t c = 0; c < width.size(); ++c) {
    if (c) rule += "  ";
    rule += std::string(width[c], '-');
  }
  out += rule + "\n";
  for (size_t r = 0; r < rows.size(); ++r) line(rows[r], &rightAlign[r]);
  return out;
}

// `count by a, b` as a two-way table with totals.
std::string crossTab(const ResultTable& t) {
  const std::string& a = t.byVariables[0];
  const std::string& b = t.byVariables[1];
  const size_t aCol = 0;
  const size_t bCol = (t.columns.size() > 1 && t.columns[1] == a + "_label") ? 2 : 1;
  const size_t countCol = t.groupColumns;
  std::vector<std::string> aLevels, bLevels;
  auto indexOf = [](std::vector<std::string>& v, const std::string& s) {
    for (size_t i = 0; i < v.size(); ++i)
      if (v[i] == s) return i;
    v.push_back(s);
    return v.size() - 1;
  };
  // A cell holding text (disclosure control's "suppressed", query/disclosure.h) is shown as
  // that text, and so is every total that would include it: its true value is not known here.
  std::vector<std::tuple<size_t, size_t, int64_t, std::string>> cells;
  for (const auto& row : t.rows) {
    size_t ai = indexOf(aLevels, exactText(row[aCol]));
    size_t bi = indexOf(bLevels, exactText(row[bCol]));
    const auto* n = std::get_if<int64_t>(&row[countCol]);
    const auto* text = std::get_if<std::string>(&row[countCol]);
    cells.emplace_back(ai, bi, n ? *n : 0, text ? *text : std::string());
  }
  std::vector<std::vector<int64_t>> grid(aLevels.size(), std::vector<int64_t>(bLevels.size(), 0));
  std::vector<std::vector<std::string>> gridText(aLevels.size(),
                                                 std::vector<std::string>(bLevels.size()));
  std::vector<std::string> rowText(aLevels.size()), colText(bLevels.size());
  std::string totalText;
  for (auto& [ai, bi, n, text] : cells) {
    grid[ai][bi] += n;
    if (!text.empty()) gridText[ai][bi] = rowText[ai] = colText[bi] = totalText = text;
  }
  std::vector<std::string> header{a + " \\ " + b};
  for (const auto& l : bLevels) header.push_back(l);
  header.push_back("total");
  std::vector<std::vector<std::string>> rows;
  std::vector<std::vector<bool>> right;
  std::vector<int64_t> colTotal(bLevels.size(), 0);
  int64_t total = 0;
  for (size_t i = 0; i < aLevels.size(); ++i) {
    std::vector<std::string> r{aLevels[i]};
    int64_t rowTotal = 0;
    for (size_t j = 0; j < bLevels.size(); ++j) {
      r.push_back(gridText[i][j].empty() ? std::to_string(grid[i][j]) : gridText[i][j]);
      rowTotal += grid[i][j];
      colTotal[j] += grid[i][j];
    }
    total += rowTotal;
    r.push_back(rowText[i].empty() ? std::to_string(rowTotal) : rowText[i]);
    rows.push_back(std::move(r));
    std::vector<bool> ra(header.size(), true);
    ra[0] = false;
    right.push_back(std::move(ra));
  }
  std::vector<std::string> last{"total"};
  for (size_t j = 0; j < colTotal.size(); ++j)
    last.push_back(colText[j].empty() ? std::to_string(colTotal[j]) : colText[j]);
  last.push_back(totalText.empty() ? std::to_string(total) : totalText);
  rows.push_back(std::move(last));
  std::vector<bool> ra(header.size(), true);
  ra[0] = false;
  right.push_back(std::move(ra));
  return renderGrid(header, rows, right);
}

}  // namespace

std::string formatTable(const ResultTable& table, const TableFormatOptions& options) {
  std::string out;
  if (options.crossTab && table.kind == ResultTable::Kind::kCells &&
      table.byVariables.size() == 2 && table.statistics.size() == 1 &&
      table.statistics[0] == "count") {
    out = crossTab(table);
  } else {
    std::vector<std::vector<std::string>> rows;
    std::vector<std::vector<bool>> right;
    for (const auto& r : table.rows) {
      std::vector<std::string> cells;
      std::vector<bool> ra;
      for (const auto& v : r) {
        cells.push_back(displayText(v, options.realDigits));
        ra.push_back(isNumber(v) || std::holds_alternative<std::monostate>(v));
      }
      rows.push_back(std::move(cells));
      right.push_back(std::move(ra));
    }
    out = renderGrid(table.columns, rows, right);
  }
  for (const auto& n : table.notes) out += "note: " + n + "\n";
  if (!table.appendix.empty()) out += "\n" + table.appendix;
  return out;
}

namespace {

using Json = nlohmann::ordered_json;

const char* kindName(ResultTable::Kind kind) {
  switch (kind) {
    case ResultTable::Kind::kHistogram:
      return "histogram";
    case ResultTable::Kind::kSurvival:
      return "survival";
    case ResultTable::Kind::kCells:
      break;
  }
  return "cells";
}

// Disclosure control writes kSuppressedMarker into a statistic column (never a group column,
// whose text is a level code that may legitimately read "suppressed").
bool isSuppressed(const ResultTable& t, size_t column, const ResultValue& v) {
  const auto* s = std::get_if<std::string>(&v);
  return column >= t.groupColumns && s != nullptr && *s == kSuppressedMarker;
}

Json jsonNumber(double v) { return std::isfinite(v) ? Json(v) : Json(); }

Json jsonValue(const ResultValue& v) {
  if (const auto* i = std::get_if<int64_t>(&v)) return *i;
  if (const auto* d = std::get_if<double>(&v)) return jsonNumber(*d);
  if (const auto* s = std::get_if<std::string>(&v)) return *s;
  return nullptr;
}

// Field names: the column names, made unique as R's make.unique does ("mean(x)", "mean(x).1")
// so that a select list naming one statistic twice still gives one field per column.
std::vector<std::string> fieldNames(const ResultTable& t) {
  std::vector<std::string> names;
  for (const auto& c : t.columns) {
    std::string name = c;
    for (int k = 1; std::find(names.begin(), names.end(), name) != names.end(); ++k)
      name = c + "." + std::to_string(k);
    names.push_back(name);
  }
  return names;
}

Json curveJson(const ResultTable& t, size_t i) {
  const stats::KmCurve& c = t.curves[i];
  const bool hidden = i < t.curveSuppressed.size() && t.curveSuppressed[i];
  Json j;
  j["group"] = c.name;
  if (hidden) {
    for (const char* k : {"n", "events", "median", "median_lower", "median_upper"}) j[k] = nullptr;
  } else {
    j["n"] = c.n;
    j["events"] = c.events;
    j["median"] = jsonNumber(c.median);
    j["median_lower"] = jsonNumber(c.medianLower);
    j["median_upper"] = jsonNumber(c.medianUpper);
  }
  j["conf_level"] = c.confLevel;
  j["conf_type"] = "log";
  j["suppressed"] = hidden;
  addReportJson(j, t, i);
  return j;
}

Json logRankJson(const stats::LogRankTest& test, const std::string& strata) {
  Json groups = Json::array();
  for (const auto& g : test.groups) {
    groups.push_back({{"group", g.name},
                      {"n", g.n},
                      {"observed", jsonNumber(g.observed)},
                      {"expected", jsonNumber(g.expected)},
                      {"variance", jsonNumber(g.variance)}});
  }
  const size_t k = test.groups.size();
  Json variance = Json::array();
  for (size_t r = 0; r < k && test.variance.size() == k * k; ++r) {
    Json row = Json::array();
    for (size_t c = 0; c < k; ++c) row.push_back(jsonNumber(test.variance[r * k + c]));
    variance.push_back(std::move(row));
  }
  Json j;
  j["test"] = "logrank";
  j["rho"] = 0;
  j["strata"] = strata.empty() ? Json() : Json(strata);  // km(..., strata = s)
  j["groups"] = std::move(groups);
  j["variance"] = std::move(variance);
  j["chi_square"] = jsonNumber(test.chiSquare);
  j["df"] = jsonNumber(test.df);
  j["p_value"] = jsonNumber(test.pValue);
  return j;
}

// The curve a survival row belongs to: its name as finalize writes it ("arm=A, sex=F", "all"
// without `by`) from the row's group columns (a "<var>_label" column after its variable is
// skipped). Returns curves.size() when there is none.
size_t curveOfRow(const ResultTable& t, const std::vector<ResultValue>& row) {
  std::string name;
  size_t col = 0;
  for (size_t gi = 0; gi < t.byVariables.size() && col < t.groupColumns; ++gi) {
    if (gi) name += ", ";
    name += t.byVariables[gi] + "=" + exactText(row[col]);
    ++col;
    if (col < t.groupColumns && t.columns[col] == t.byVariables[gi] + "_label") ++col;
  }
  if (name.empty()) name = "all";
  for (size_t i = 0; i < t.curves.size(); ++i)
    if (t.curves[i].name == name) return i;
  return t.curves.size();
}

std::string csvField(const std::string& s) {
  if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) {
    if (c == '"') q.push_back('"');
    q.push_back(c);
  }
  return q + "\"";
}

// CSV text of a number: NA for NaN and infinities (read.csv reads them back as NA).
std::string csvNumber(double v) { return std::isfinite(v) ? fmt::format("{}", v) : "NA"; }

}  // namespace

std::string formatJson(const ResultTable& table) {
  const std::vector<std::string> names = fieldNames(table);
  Json j;
  j["schema_version"] = kJsonSchemaVersion;
  j["kind"] = kindName(table.kind);
  j["columns"] = names;
  j["group_columns"] = std::vector<std::string>(
      names.begin(),
      names.begin() + static_cast<ptrdiff_t>(std::min(table.groupColumns, names.size())));
  j["by"] = table.byVariables;
  j["statistics"] = table.statistics;
  Json rows = Json::array();
  for (const auto& r : table.rows) {
    Json row = Json::object();
    Json suppressed = Json::array();
    for (size_t c = 0; c < r.size() && c < names.size(); ++c) {
      if (isSuppressed(table, c, r[c])) {
        row[names[c]] = nullptr;
        suppressed.push_back(names[c]);
      } else {
        row[names[c]] = jsonValue(r[c]);
      }
    }
    row["suppressed"] = std::move(suppressed);
    rows.push_back(std::move(row));
  }
  j["rows"] = std::move(rows);
  if (table.kind == ResultTable::Kind::kSurvival) {
    Json curves = Json::array();
    for (size_t i = 0; i < table.curves.size(); ++i) curves.push_back(curveJson(table, i));
    j["curves"] = std::move(curves);
    j["logrank"] = table.logRank ? logRankJson(*table.logRank, table.logRankStrata) : Json();
  }
  j["notes"] = table.notes;
  return j.dump();
}

std::string formatCsv(const ResultTable& table) {
  const std::vector<std::string> names = fieldNames(table);
  const bool survival = table.kind == ResultTable::Kind::kSurvival;
  std::vector<std::string> header = names;
  if (survival) {
    for (const char* c :
         {"median", "median_lower", "median_upper", "logrank_chisq", "logrank_df", "logrank_p"})
      header.push_back(c);
    for (const std::string& c : reportCsvHeader(table)) header.push_back(c);
  }
  header.push_back("suppressed");
  header.push_back("suppressed_columns");
  std::string out;
  for (size_t c = 0; c < header.size(); ++c) out += (c ? "," : "") + csvField(header[c]);
  out += "\r\n";
  for (const auto& r : table.rows) {
    std::vector<std::string> suppressed;
    for (size_t c = 0; c < r.size(); ++c) {
      if (c) out += ",";
      if (isSuppressed(table, c, r[c])) {
        out += "NA";
        suppressed.push_back(c < names.size() ? names[c] : std::to_string(c));
      } else if (std::holds_alternative<std::monostate>(r[c])) {
        out += "NA";
      } else {
        out += csvField(exactText(r[c]));
      }
    }
    if (survival) {
      const size_t curve = curveOfRow(table, r);
      const bool known = curve < table.curves.size() &&
                         !(curve < table.curveSuppressed.size() && table.curveSuppressed[curve]);
      const stats::KmCurve* k = known ? &table.curves[curve] : nullptr;
      out += "," + (k ? csvNumber(k->median) : "NA");
      out += "," + (k ? csvNumber(k->medianLower) : "NA");
      out += "," + (k ? csvNumber(k->medianUpper) : "NA");
      const auto& lr = table.logRank;
      out += "," + (lr ? csvNumber(lr->chiSquare) : "NA");
      out += "," + (lr ? csvNumber(lr->df) : "NA");
      out += "," + (lr ? csvNumber(lr->pValue) : "NA");
      for (const std::string& v : reportCsvValues(table, known ? curve : table.curves.size()))
        out += "," + v;
    }
    std::string list;
    for (size_t i = 0; i < suppressed.size(); ++i) list += (i ? ";" : "") + suppressed[i];
    out += suppressed.empty() ? ",FALSE," : ",TRUE," + csvField(list);
    out += "\r\n";
  }
  return out;
}

}  // namespace trialmesh::query
