#include "query/cross_test.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cctype>
#include <cmath>
#include <vector>

#include "query/query.h"
#include "stats/contingency.h"

namespace trialmesh::query {
namespace {

std::string trim(std::string_view s) {
  size_t a = 0, b = s.size();
  while (a < b && std::isspace(static_cast<unsigned char>(s[a]))) ++a;
  while (b > a && std::isspace(static_cast<unsigned char>(s[b - 1]))) --b;
  return std::string(s.substr(a, b - a));
}

Status usage(std::string_view name, std::string_view why) {
  return Status::invalidArgument(fmt::format(
      "{}(): {}; write e.g. {}(arm, response){} where age >= 18 (docs/query-language.md)", name,
      why, name, name == "chisq" ? " or chisq(arm, response, correct = false)" : ""));
}

// The level names of a count table's group column (code as text).
std::string levelText(const ResultValue& v) {
  if (const auto* s = std::get_if<std::string>(&v)) return *s;
  if (const auto* i = std::get_if<int64_t>(&v)) return std::to_string(*i);
  if (const auto* d = std::get_if<double>(&v)) return fmt::format("{}", *d);
  return "NA";
}

ResultValue finiteOrNull(double v) { return std::isnan(v) ? ResultValue{} : ResultValue{v}; }

}  // namespace

Result<std::optional<CrossTestRequest>> parseCrossTest(std::string_view text) {
  size_t i = 0;
  while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
  std::string name;
  if (text.compare(i, 5, "chisq") == 0) {
    name = "chisq";
  } else if (text.compare(i, 6, "fisher") == 0) {
    name = "fisher";
  } else {
    return std::optional<CrossTestRequest>();
  }
  i += name.size();
  while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
  if (i >= text.size() || text[i] != '(') return std::optional<CrossTestRequest>();
  const size_t close = text.find(')', i);
  if (close == std::string_view::npos) return usage(name, "missing the closing ')'");
  std::vector<std::string> args;
  std::string_view inside = text.substr(i + 1, close - i - 1);
  for (size_t start = 0;;) {
    const size_t comma = inside.find(',', start);
    args.push_back(trim(inside.substr(
        start, comma == std::string_view::npos ? std::string_view::npos : comma - start)));
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  CrossTestRequest r;
  r.test = name == "chisq" ? CrossTestRequest::Test::kChiSquared : CrossTestRequest::Test::kFisher;
  if (args.size() < 2 || args[0].empty() || args[1].empty())
    return usage(name, "give the two variables of the table");
  for (size_t a = 2; a < args.size(); ++a) {
    const size_t eq = args[a].find('=');
    if (eq == std::string::npos)
      return usage(name,
                   fmt::format("argument '{}' is not name = value (only two variables)", args[a]));
    const std::string key = trim(std::string_view(args[a]).substr(0, eq));
    const std::string value = trim(std::string_view(args[a]).substr(eq + 1));
    if (key != "correct" || name != "chisq")
      return usage(name, fmt::format("unknown argument '{}'{}", key,
                                     name == "chisq" ? " (allowed: correct)" : ""));
    if (value == "true" || value == "TRUE") {
      r.correct = true;
    } else if (value == "false" || value == "FALSE") {
      r.correct = false;
    } else {
      return usage(name, fmt::format("correct = {} is not true or false", value));
    }
  }
  if (args[0] == args[1]) return usage(name, "the two variables must differ");
  r.countQuery = fmt::format("count {} by {}, {}", trim(text.substr(close + 1)), args[0], args[1]);
  auto parsed = parseQuery(r.countQuery);
  if (!parsed) return usage(name, parsed.status().message());
  if (parsed->by.size() != 2)
    return usage(name,
                 "it takes no 'by' clause: the table is the two variables (filter with "
                 "'where')");
  r.countQuery = canonicalQueryText(*parsed);
  return std::optional<CrossTestRequest>(std::move(r));
}

Result<ResultTable> applyCrossTest(const ResultTable& counts, const CrossTestRequest& request) {
  const bool chisq = request.test == CrossTestRequest::Test::kChiSquared;
  const char* name = chisq ? "chisq" : "fisher";
  if (counts.kind != ResultTable::Kind::kCells || counts.byVariables.size() != 2 ||
      counts.columns.size() != counts.groupColumns + 1)
    return Status::invalidArgument(
        fmt::format("{}(): the count result is not a two-way table", name));
  const std::string& a = counts.byVariables[0];
  const size_t bCol = counts.columns.size() > 1 && counts.columns[1] == a + "_label" ? 2 : 1;
  const size_t nCol = counts.groupColumns;
  std::vector<std::string> aLevels, bLevels;
  auto indexOf = [](std::vector<std::string>& v, const std::string& s) {
    for (size_t k = 0; k < v.size(); ++k)
      if (v[k] == s) return k;
    v.push_back(s);
    return v.size() - 1;
  };
  struct Cell {
    size_t a, b;
    int64_t n;
  };
  std::vector<Cell> cells;
  int64_t missing = 0;
  for (const auto& row : counts.rows) {
    const auto* n = std::get_if<int64_t>(&row[nCol]);
    if (n == nullptr) {
      // Releasing the test would release the withheld cell: with the margins (themselves
      // released by other counts) a 2 x 2 table's Fisher p or odds ratio, or a chi-squared
      // statistic, determines the cell.
      return Status::failedPrecondition(fmt::format(
          "{}(): the cell {} = {}, {} = {} was withheld by disclosure control (fewer rows than "
          "the approval's min_cell_size), and the test would give it back; the test is "
          "released only when every cell of the table is: merge levels or widen the filter",
          name, a, levelText(row[0]), counts.byVariables[1], levelText(row[bCol])));
    }
    if (levelText(row[0]) == "NA" || levelText(row[bCol]) == "NA") {
      missing += *n;  // R's table() leaves out NA
      continue;
    }
    if (*n == 0) continue;  // a level seen only in empty cells is not in R's table()
    cells.push_back(
        {indexOf(aLevels, levelText(row[0])), indexOf(bLevels, levelText(row[bCol])), *n});
  }
  stats::CountTable table(aLevels.size(), std::vector<int64_t>(bLevels.size(), 0));
  int64_t total = 0;
  for (const auto& c : cells) {
    table[c.a][c.b] += c.n;
    total += c.n;
  }
  ResultTable t;
  t.statistics = {fmt::format("{}({}, {})", name, a, counts.byVariables[1])};
  t.notes = counts.notes;
  if (missing > 0)
    t.notes.push_back(fmt::format("{} row{} with a missing {} or {} left out, as R's table() does",
                                  missing, missing == 1 ? "" : "s", a, counts.byVariables[1]));
  // Level order decides which odds ratio fisher reports (R: the factor levels' order).
  t.notes.push_back(fmt::format("table: rows {} ({}) x columns {} ({}), n = {}", a,
                                fmt::join(aLevels, ", "), counts.byVariables[1],
                                fmt::join(bLevels, ", "), total));
  if (chisq) {
    auto test = stats::chiSquaredTest(table, request.correct);
    if (!test) return test.status().withContext(a + " x " + counts.byVariables[1]);
    t.columns = {"test", "method", "statistic", "df", "p_value", "n", "min_expected", "warning"};
    const std::string method = test->yates ? "Pearson's Chi-squared test with Yates' continuity "
                                             "correction"
                                           : "Pearson's Chi-squared test";
    t.rows.push_back({std::string("chisq"), method, finiteOrNull(test->statistic), test->df,
                      finiteOrNull(test->p), total, test->minExpected,
                      test->approximationWarning
                          ? ResultValue{std::string("Chi-squared approximation may be incorrect")}
                          : ResultValue{}});
    if (test->approximationWarning)
      t.notes.push_back(fmt::format(
          "Chi-squared approximation may be incorrect (an expected count is {:.4g} < 5); "
          "consider fisher() for a 2 x 2 table",
          test->minExpected));
  } else {
    auto test = stats::fisherTest(table);
    if (!test) return test.status().withContext(a + " x " + counts.byVariables[1]);
    t.columns = {"test", "method", "p_value", "odds_ratio", "conf_low", "conf_high", "n"};
    t.rows.push_back({std::string("fisher"), std::string("Fisher's Exact Test for Count Data"),
                      test->p, test->oddsRatio, test->confLow, test->confHigh, total});
    if (std::isinf(test->oddsRatio) || std::isinf(test->confHigh))
      t.notes.push_back(
          "odds ratio or upper limit is infinite (R prints Inf): null in JSON, NA in CSV");
  }
  return t;
}

}  // namespace trialmesh::query
