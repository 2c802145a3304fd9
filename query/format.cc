#include "query/format.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

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

std::string formatJson(const ResultTable& table) {
  nlohmann::json j;
  j["columns"] = table.columns;
  nlohmann::json rows = nlohmann::json::array();
  for (const auto& r : table.rows) {
    nlohmann::json row = nlohmann::json::array();
    for (const auto& v : r) {
      if (const auto* i = std::get_if<int64_t>(&v)) {
        row.push_back(*i);
      } else if (const auto* d = std::get_if<double>(&v)) {
        row.push_back(std::isfinite(*d) ? nlohmann::json(*d) : nlohmann::json());
      } else if (const auto* s = std::get_if<std::string>(&v)) {
        row.push_back(*s);
      } else {
        row.push_back(nullptr);
      }
    }
    rows.push_back(std::move(row));
  }
  j["rows"] = std::move(rows);
  j["notes"] = table.notes;
  return j.dump();
}

std::string formatCsv(const ResultTable& table) {
  auto field = [](const std::string& s) {
    if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
    std::string q = "\"";
    for (char c : s) {
      if (c == '"') q.push_back('"');
      q.push_back(c);
    }
    return q + "\"";
  };
  std::string out;
  for (size_t c = 0; c < table.columns.size(); ++c) {
    if (c) out += ",";
    out += field(table.columns[c]);
  }
  out += "\r\n";
  for (const auto& r : table.rows) {
    for (size_t c = 0; c < r.size(); ++c) {
      if (c) out += ",";
      out += field(exactText(r[c]));
    }
    out += "\r\n";
  }
  return out;
}

}  // namespace trialmesh::query
