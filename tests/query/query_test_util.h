// Test fixtures for tm_query: a study dictionary, random tables with missing values, and an
// independent row-by-row reference implementation of the query semantics (written from the
// language description, not from the engine's code).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "query/engine.h"
#include "query/format.h"
#include "query/partial.h"
#include "query/query.h"
#include "storage/column.h"
#include "storage/dictionary.h"

namespace trialmesh::query::testing {

using storage::Dictionary;
using storage::InMemoryTable;
using storage::Variable;
using storage::VariableType;
using Cell = InMemoryTable::Cell;
using Row = std::vector<Cell>;

inline Variable makeVar(std::string name, VariableType type, bool missing,
                        std::vector<std::string> levels = {}, std::optional<double> min = {},
                        std::optional<double> max = {}, std::vector<std::string> labels = {}) {
  Variable v;
  v.name = name;
  v.csvColumn = name;
  v.type = type;
  v.missingAllowed = missing;
  for (size_t i = 0; i < levels.size(); ++i)
    v.levels.push_back({levels[i], i < labels.size() ? labels[i] : std::string()});
  v.min = min;
  v.max = max;
  return v;
}

// Variable indices of studyDictionary().
enum Col : size_t {
  kAge,       // integer 0..120 (int8), missing
  kBmi,       // real, missing
  kSex,       // categorical F, M (no missing)
  kArm,       // categorical A, B, C; nobody is in C
  kEcog,      // categorical 0..4 with labels, missing (NA level)
  kSmoker,    // boolean, missing
  kEnrolled,  // date, missing
  kVisits,    // integer -1000..30000 (int16), missing
  kBig,       // integer unbounded (int64), missing
  kOsDays,    // integer 0..5000 (int16), missing
  kDeath,     // boolean, missing
  kStatus,    // integer 0..2 (km event as integer), no missing
  kLab,       // real around 1e9, no missing
  kColumns
};

inline Dictionary studyDictionary(const std::string& study = "TEST-1") {
  std::vector<Variable> vars;
  vars.push_back(makeVar("age", VariableType::kInteger, true, {}, 0, 120));
  vars.push_back(makeVar("bmi", VariableType::kReal, true));
  vars.push_back(makeVar("sex", VariableType::kCategorical, false, {"F", "M"}));
  vars.push_back(makeVar("arm", VariableType::kCategorical, false, {"A", "B", "C"}));
  vars.push_back(makeVar("ecog", VariableType::kCategorical, true, {"0", "1", "2", "3", "4"}, {},
                         {}, {"Fully active", "Restricted", "Ambulatory", "Limited", "Disabled"}));
  vars.push_back(makeVar("smoker", VariableType::kBoolean, true));
  vars.push_back(makeVar("enrolled", VariableType::kDate, true));
  vars.push_back(makeVar("visits", VariableType::kInteger, true, {}, -1000, 30000));
  vars.push_back(makeVar("big", VariableType::kInteger, true));
  vars.push_back(makeVar("os_days", VariableType::kInteger, true, {}, 0, 5000));
  vars.push_back(makeVar("death", VariableType::kBoolean, true));
  vars.push_back(makeVar("status", VariableType::kInteger, false, {}, 0, 2));
  vars.push_back(makeVar("lab", VariableType::kReal, false));
  auto d = Dictionary::create(study, std::move(vars));
  EXPECT_TRUE(d.isOk()) << d.status().toString();
  return std::move(d).value();
}

inline std::vector<Row> randomRows(size_t n, uint32_t seed) {
  std::mt19937_64 rng(seed);
  auto uni = [&](int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
  };
  auto chance = [&](double p) { return std::uniform_real_distribution<double>(0, 1)(rng) < p; };
  std::normal_distribution<double> normal(0, 1);
  std::vector<Row> rows(n, Row(kColumns));
  for (auto& r : rows) {
    auto maybe = [&](Cell c) { return chance(0.1) ? Cell::none() : c; };
    r[kAge] = maybe(Cell::integer(uni(0, 120)));
    r[kBmi] = maybe(Cell::real(std::round((25 + 4 * normal(rng)) * 100) / 100));
    r[kSex] = Cell::integer(uni(0, 1));
    r[kArm] = Cell::integer(uni(0, 1));  // level C stays empty
    r[kEcog] = maybe(Cell::integer(uni(0, 4)));
    r[kSmoker] = maybe(Cell::integer(uni(0, 1)));
    r[kEnrolled] = maybe(Cell::integer(uni(19000, 19800)));
    r[kVisits] = maybe(Cell::integer(uni(-1000, 30000)));
    r[kBig] = maybe(Cell::integer(uni(-4000000000000000000LL, 4000000000000000000LL) / 1000000));
    r[kOsDays] = maybe(Cell::integer(uni(0, 400)));  // many ties
    r[kDeath] = maybe(Cell::integer(uni(0, 1)));
    r[kStatus] = Cell::integer(uni(0, 2));
    r[kLab] = Cell::real(1e9 + normal(rng));
  }
  return rows;
}

inline std::unique_ptr<InMemoryTable> makeTable(const Dictionary& dict,
                                                const std::vector<Row>& rows) {
  auto t = std::make_unique<InMemoryTable>(dict);
  for (const auto& r : rows) t->appendRow(r);
  t->finish();
  return t;
}

// --- the reference implementation ---------------------------------------------------------

enum class Tri { kFalse, kTrue, kUnknown };

inline double cellValue(const Dictionary& dict, size_t var, const Cell& c) {
  return dict.variable(var).type == VariableType::kReal ? c.d : static_cast<double>(c.i);
}

inline double literalValue(const Variable& v, const Literal& l) {
  switch (l.kind) {
    case Literal::Kind::kInteger:
      return static_cast<double>(l.integer);
    case Literal::Kind::kReal:
      return l.real;
    case Literal::Kind::kBool:
      return l.boolean ? 1 : 0;
    case Literal::Kind::kDate:
      return *storage::parseIsoDate(l.text);
    case Literal::Kind::kString:
      if (v.type == VariableType::kDate) return *storage::parseIsoDate(l.text);
      return *v.levelIndex(l.text);
  }
  return 0;
}

inline Tri naiveFilter(const Filter& f, const Row& row, const Dictionary& dict) {
  switch (f.kind) {
    case Filter::Kind::kAnd: {
      bool unknown = false;
      for (const auto& c : f.children) {
        Tri t = naiveFilter(c, row, dict);
        if (t == Tri::kFalse) return Tri::kFalse;
        if (t == Tri::kUnknown) unknown = true;
      }
      return unknown ? Tri::kUnknown : Tri::kTrue;
    }
    case Filter::Kind::kOr: {
      bool unknown = false;
      for (const auto& c : f.children) {
        Tri t = naiveFilter(c, row, dict);
        if (t == Tri::kTrue) return Tri::kTrue;
        if (t == Tri::kUnknown) unknown = true;
      }
      return unknown ? Tri::kUnknown : Tri::kFalse;
    }
    case Filter::Kind::kNot: {
      Tri t = naiveFilter(f.children[0], row, dict);
      return t == Tri::kUnknown ? t : (t == Tri::kTrue ? Tri::kFalse : Tri::kTrue);
    }
    default:
      break;
  }
  size_t var = *dict.find(f.var);
  const Cell& c = row[var];
  if (f.kind == Filter::Kind::kIsMissing) return c.missing ? Tri::kTrue : Tri::kFalse;
  if (f.kind == Filter::Kind::kIsNotMissing) return c.missing ? Tri::kFalse : Tri::kTrue;
  if (c.missing) return Tri::kUnknown;
  const double x = cellValue(dict, var, c);
  const Variable& v = dict.variable(var);
  if (f.kind == Filter::Kind::kIn) {
    for (const auto& l : f.values)
      if (x == literalValue(v, l)) return Tri::kTrue;
    return Tri::kFalse;
  }
  const double y = literalValue(v, f.values[0]);
  bool r = false;
  switch (f.op) {
    case CompareOp::kEq:
      r = x == y;
      break;
    case CompareOp::kNe:
      r = x != y;
      break;
    case CompareOp::kLt:
      r = x < y;
      break;
    case CompareOp::kLe:
      r = x <= y;
      break;
    case CompareOp::kGt:
      r = x > y;
      break;
    case CompareOp::kGe:
      r = x >= y;
      break;
  }
  return r ? Tri::kTrue : Tri::kFalse;
}

// Cells: every combination of levels (plus NA for variables that allow missing), last `by`
// variable fastest.
inline uint32_t naiveCellCount(const Query& q, const Dictionary& dict) {
  uint32_t cells = 1;
  for (const auto& name : q.by) {
    const Variable& v = dict.variable(*dict.find(name));
    uint32_t w = v.type == VariableType::kBoolean ? 2 : static_cast<uint32_t>(v.levels.size());
    cells *= w + (v.missingAllowed ? 1 : 0);
  }
  return cells;
}

inline uint32_t naiveCell(const Query& q, const Dictionary& dict, const Row& row) {
  uint32_t cell = 0;
  for (const auto& name : q.by) {
    size_t var = *dict.find(name);
    const Variable& v = dict.variable(var);
    uint32_t levels = v.type == VariableType::kBoolean ? 2 : static_cast<uint32_t>(v.levels.size());
    uint32_t w = levels + (v.missingAllowed ? 1 : 0);
    uint32_t code = row[var].missing ? levels : static_cast<uint32_t>(row[var].i);
    cell = cell * w + code;
  }
  return cell;
}

inline std::vector<double> naiveBreaks(const Aggregate& a) {
  if (!a.uniformBins) return a.breaks;
  double span = (a.to - a.from) / a.width;
  size_t bins = static_cast<size_t>(std::ceil(span - 1e-9));
  std::vector<double> b;
  for (size_t k = 0; k < bins; ++k) b.push_back(a.from + static_cast<double>(k) * a.width);
  b.push_back(a.to);
  return b;
}

// The expected statistic columns (kCells queries), one vector per cell.
// GCC 12 reports a false -Wmaybe-uninitialized for vectors of variants holding std::string.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
inline std::vector<std::vector<ResultValue>> naiveCells(const Query& q, const Dictionary& dict,
                                                        const std::vector<Row>& rows) {
  const uint32_t cells = naiveCellCount(q, dict);
  std::vector<std::vector<const Row*>> members(cells);
  for (const auto& r : rows) {
    if (q.where && naiveFilter(*q.where, r, dict) != Tri::kTrue) continue;
    members[naiveCell(q, dict, r)].push_back(&r);
  }
  std::vector<std::vector<ResultValue>> out(cells);
  for (uint32_t c = 0; c < cells; ++c) {
    for (const auto& a : q.select) {
      if (a.fn == AggFn::kCount && a.var.empty()) {
        out[c].push_back(static_cast<int64_t>(members[c].size()));
        continue;
      }
      size_t var = *dict.find(a.var);
      const Variable& v = dict.variable(var);
      std::vector<long double> xs;
      for (const Row* r : members[c])
        if (!(*r)[var].missing) xs.push_back(cellValue(dict, var, (*r)[var]));
      const size_t n = xs.size();
      long double sum = 0;
      for (auto x : xs) sum += x;
      long double mean = n ? sum / n : 0;
      long double ss = 0;
      for (auto x : xs) ss += (x - mean) * (x - mean);
      switch (a.fn) {
        case AggFn::kCount:
          out[c].push_back(static_cast<int64_t>(n));
          break;
        case AggFn::kSum:
          if (v.type == VariableType::kInteger) {
            int64_t s = 0;
            for (const Row* r : members[c])
              if (!(*r)[var].missing) s += (*r)[var].i;
            out[c].push_back(s);
          } else {
            out[c].push_back(static_cast<double>(sum));
          }
          break;
        case AggFn::kMean:
          out[c].push_back(n ? ResultValue(static_cast<double>(mean)) : ResultValue());
          break;
        case AggFn::kVar:
          out[c].push_back(n > 1 ? ResultValue(static_cast<double>(ss / (n - 1))) : ResultValue());
          break;
        case AggFn::kSd:
          out[c].push_back(n > 1 ? ResultValue(static_cast<double>(std::sqrt(ss / (n - 1))))
                                 : ResultValue());
          break;
        case AggFn::kMin:
        case AggFn::kMax: {
          if (!n) {
            out[c].push_back(ResultValue());
            break;
          }
          long double m = a.fn == AggFn::kMin ? *std::min_element(xs.begin(), xs.end())
                                              : *std::max_element(xs.begin(), xs.end());
          if (v.type == VariableType::kInteger) {
            out[c].push_back(static_cast<int64_t>(m));
          } else if (v.type == VariableType::kDate) {
            out[c].push_back(storage::formatIsoDate(static_cast<int32_t>(m)));
          } else {
            out[c].push_back(static_cast<double>(m));
          }
          break;
        }
        default:
          ADD_FAILURE() << "naiveCells does not handle " << aggFnName(a.fn);
      }
    }
  }
  return out;
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

inline ::testing::AssertionResult valuesMatch(const ResultValue& got, const ResultValue& want,
                                              double relTol) {
  if (got.index() != want.index())
    return ::testing::AssertionFailure()
           << "type differs: got index " << got.index() << ", want " << want.index();
  if (const auto* d = std::get_if<double>(&got)) {
    double w = std::get<double>(want);
    double tol = relTol * std::max(1.0, std::fabs(w));
    if (std::fabs(*d - w) <= tol) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "got " << *d << ", want " << w;
  }
  if (got == want) return ::testing::AssertionSuccess();
  if (const auto* i = std::get_if<int64_t>(&got))
    return ::testing::AssertionFailure() << "got " << *i << ", want " << std::get<int64_t>(want);
  if (const auto* s = std::get_if<std::string>(&got))
    return ::testing::AssertionFailure()
           << "got " << *s << ", want " << std::get<std::string>(want);
  return ::testing::AssertionFailure() << "values differ";
}

// Parses, binds, executes and finalizes; fails the test on any error.
inline ExecOptions threadsOnly(unsigned threads) {
  ExecOptions o;
  o.threads = threads;
  return o;
}

inline ResultTable runQuery(const std::string& text, const storage::ColumnSource& source,
                            unsigned threads, PartialResult* partialOut = nullptr) {
  auto q = parseQuery(text);
  EXPECT_TRUE(q.isOk()) << q.status().toString();
  if (!q.isOk()) return {};
  auto b = bindQuery(*q, source.dictionary());
  EXPECT_TRUE(b.isOk()) << text << ": " << b.status().toString();
  if (!b.isOk()) return {};
  auto p = execute(*b, source, threadsOnly(threads));
  EXPECT_TRUE(p.isOk()) << text << ": " << p.status().toString();
  if (!p.isOk()) return {};
  if (partialOut) *partialOut = *p;
  auto t = finalize(*p, *b);
  EXPECT_TRUE(t.isOk()) << text << ": " << t.status().toString();
  return t.isOk() ? *t : ResultTable{};
}

}  // namespace trialmesh::query::testing
