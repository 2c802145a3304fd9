// bindQuery: resolves a Query against a dictionary into a detail::Plan.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "query/engine.h"
#include "query/plan.h"

namespace trialmesh::query {

using storage::Dictionary;
using storage::Variable;
using storage::VariableType;

const Query& BoundQuery::query() const { return plan_->query; }
const std::string& BoundQuery::canonicalText() const { return plan_->canonical; }
const std::string& BoundQuery::dictionaryHash() const { return plan_->dictionaryHash; }
uint32_t BoundQuery::cellCount() const { return plan_->cells; }
PartialShape BoundQuery::shape() const {
  return PartialShape{plan_->dictionaryHash, plan_->canonical, plan_->cells,
                      static_cast<uint32_t>(plan_->aggregates.size())};
}

namespace detail {

Status eventCodingError(std::string_view what, const Variable& event, const EventCoding& coding,
                        std::vector<double> bad) {
  std::sort(bad.begin(), bad.end());
  bad.erase(std::unique(bad.begin(), bad.end()), bad.end());
  std::string found;
  for (size_t i = 0; i < bad.size() && i < 5; ++i) {
    if (i) found += ", ";
    // Categorical values are level indices: show the code a person wrote in the CSV.
    const auto k = static_cast<size_t>(bad[i]);
    found += event.type == VariableType::kCategorical && k < event.levels.size()
                 ? event.levels[k].code
                 : fmt::format("{}", bad[i]);
  }
  if (bad.size() > 5) found += fmt::format(", ... ({} distinct values)", bad.size());
  const std::string censored =
      event.type == VariableType::kCategorical
          ? event.levels[static_cast<size_t>(coding.censored)].code
          : (event.type == VariableType::kBoolean ? "FALSE" : fmt::format("{}", coding.censored));
  const std::string ev =
      event.type == VariableType::kCategorical
          ? event.levels[static_cast<size_t>(coding.event)].code
          : (event.type == VariableType::kBoolean ? "TRUE" : fmt::format("{}", coding.event));
  return Status::invalidArgument(fmt::format(
      "{}: the event variable {} is coded {} by the dictionary ({} = censored, {} = event) but "
      "holds the value(s) {} in this site's selected rows; exclude them with a 'where' filter "
      "or correct the data or the dictionary",
      what, event.name, coding.text, censored, ev, found));
}

}  // namespace detail

namespace {

constexpr uint32_t kMaxCells = 1u << 20;
// An integer used in `by` has one cell per value of its declared range: bounded so that a
// grouping by a continuous-looking integer (days, a lab count) is refused, not a huge table.
constexpr double kMaxIntegerGroupValues = 1000;
// factor(x) of an integer: one design column per declared value after the first (models allow
// at most 200 columns).
constexpr double kMaxFactorValues = 200;

size_t editDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t sub = prev[j - 1] + (std::tolower(static_cast<unsigned char>(a[i - 1])) ==
                                          std::tolower(static_cast<unsigned char>(b[j - 1]))
                                      ? 0
                                      : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

class Binder {
 public:
  explicit Binder(const Dictionary& dict) : dict_(dict) {}

  Result<size_t> resolve(const std::string& name) const {
    if (auto i = dict_.find(name)) {
      if (dict_.variable(*i).type == VariableType::kIdentifier)
        return Status::invalidArgument(fmt::format(
            "variable '{}' is a subject identifier: it is checked at import and never stored "
            "or used in a query",
            name));
      return *i;
    }
    std::string best;
    size_t bestDist = std::numeric_limits<size_t>::max();
    for (const auto& v : dict_.variables()) {
      if (v.type == VariableType::kIdentifier) continue;
      size_t d = editDistance(name, v.name);
      if (d < bestDist) {
        bestDist = d;
        best = v.name;
      }
    }
    size_t limit = std::max<size_t>(1, std::min<size_t>(2, name.size() / 3));
    if (!best.empty() && bestDist <= limit)
      return Status::invalidArgument(
          fmt::format("unknown variable '{}' (did you mean '{}'?)", name, best));
    return Status::invalidArgument(fmt::format(
        "unknown variable '{}' (the study {} has no such variable)", name, dict_.study()));
  }

  const Variable& var(size_t i) const { return dict_.variable(i); }

  static std::string levelList(const Variable& v) {
    std::string s;
    for (size_t i = 0; i < v.levels.size(); ++i) {
      if (i) s += ", ";
      s += v.levels[i].code;
      if (i == 20 && v.levels.size() > 22) {
        s += fmt::format(", ... ({} levels)", v.levels.size());
        break;
      }
    }
    return s;
  }

  static std::string literalForMessage(const Literal& l) {
    switch (l.kind) {
      case Literal::Kind::kInteger:
        return std::to_string(l.integer);
      case Literal::Kind::kReal:
        return fmt::format("{}", l.real);
      case Literal::Kind::kString:
        return fmt::format("\"{}\"", l.text);
      case Literal::Kind::kDate:
        return fmt::format("date \"{}\"", l.text);
      case Literal::Kind::kBool:
        return l.boolean ? "true" : "false";
    }
    return {};
  }

  // The literal as an exact integer in the column's domain, or a real for real variables.
  struct Typed {
    bool isInt = true;
    int64_t i = 0;
    double d = 0;
  };

  Result<Typed> typedValue(const Variable& v, const Literal& l) const {
    Typed t;
    switch (v.type) {
      case VariableType::kInteger:
      case VariableType::kReal:
        if (l.kind == Literal::Kind::kInteger) {
          t.isInt = true;
          t.i = l.integer;
          t.d = static_cast<double>(l.integer);
          if (v.type == VariableType::kReal) t.isInt = false;
          return t;
        }
        if (l.kind == Literal::Kind::kReal) {
          t.isInt = false;
          t.d = l.real;
          return t;
        }
        return Status::invalidArgument(fmt::format("{} is {}: compare it with a number, not {}",
                                                   v.name, storage::variableTypeName(v.type),
                                                   literalForMessage(l)));
      case VariableType::kCategorical: {
        if (l.kind != Literal::Kind::kString)
          return Status::invalidArgument(
              fmt::format("{} is categorical: compare it with a quoted level (levels: {}), not {}",
                          v.name, levelList(v), literalForMessage(l)));
        auto idx = v.levelIndex(l.text);
        if (!idx)
          return Status::invalidArgument(
              fmt::format("'{}' is not a level of {} (levels: {})", l.text, v.name, levelList(v)));
        t.i = *idx;
        return t;
      }
      case VariableType::kBoolean:
        if (l.kind != Literal::Kind::kBool)
          return Status::invalidArgument(
              fmt::format("{} is boolean: compare it with true or false, not {}", v.name,
                          literalForMessage(l)));
        t.i = l.boolean ? 1 : 0;
        return t;
      case VariableType::kDate: {
        if (l.kind != Literal::Kind::kDate && l.kind != Literal::Kind::kString)
          return Status::invalidArgument(
              fmt::format("{} is a date: compare it with date \"YYYY-MM-DD\", not {}", v.name,
                          literalForMessage(l)));
        auto days = storage::parseIsoDate(l.text);
        if (!days)
          return Status::invalidArgument(
              fmt::format("'{}' is not a valid date for {}: write YYYY-MM-DD, e.g. \"2024-01-31\"",
                          l.text, v.name));
        t.i = *days;
        return t;
      }
      case VariableType::kIdentifier:
        break;  // resolve() refuses identifiers before any value is typed
    }
    return Status::internal("unknown variable type");
  }

  static int64_t saturate(double v) {
    if (v >= 9.2e18) return std::numeric_limits<int64_t>::max();
    if (v <= -9.2e18) return std::numeric_limits<int64_t>::min();
    return static_cast<int64_t>(v);
  }

  // NNF conversion; `negated` = an odd number of NOTs above this node.
  Result<detail::BoundFilter> bindFilter(const Filter& f, bool negated) const {
    using BK = detail::BoundFilter::Kind;
    detail::BoundFilter b;
    switch (f.kind) {
      case Filter::Kind::kNot:
        if (f.children.size() != 1) return Status::invalidArgument("'not' needs one operand");
        return bindFilter(f.children[0], !negated);
      case Filter::Kind::kAnd:
      case Filter::Kind::kOr: {
        if (f.children.size() < 2)
          return Status::invalidArgument("'and'/'or' need at least two operands");
        bool isAnd = (f.kind == Filter::Kind::kAnd) != negated;
        b.kind = isAnd ? BK::kAnd : BK::kOr;
        for (const auto& c : f.children) {
          TM_ASSIGN_OR_RETURN(detail::BoundFilter bc, bindFilter(c, negated));
          b.children.push_back(std::move(bc));
        }
        return b;
      }
      case Filter::Kind::kIsMissing:
      case Filter::Kind::kIsNotMissing: {
        TM_ASSIGN_OR_RETURN(b.var, resolve(f.var));
        b.kind = BK::kMissing;
        b.negate = (f.kind == Filter::Kind::kIsNotMissing) != negated;
        return b;
      }
      case Filter::Kind::kIn: {
        TM_ASSIGN_OR_RETURN(b.var, resolve(f.var));
        const Variable& v = var(b.var);
        if (f.values.empty()) return Status::invalidArgument("'in' needs at least one value");
        b.negate = negated;
        b.kind = v.type == VariableType::kReal ? BK::kRealSet : BK::kIntSet;
        for (const auto& l : f.values) {
          TM_ASSIGN_OR_RETURN(Typed t, typedValue(v, l));
          if (b.kind == BK::kRealSet) {
            b.reals.push_back(t.d);
          } else if (t.isInt) {
            b.ints.push_back(t.i);
          }  // a non-integral real never equals an integer variable
        }
        return b;
      }
      case Filter::Kind::kCompare: {
        TM_ASSIGN_OR_RETURN(b.var, resolve(f.var));
        const Variable& v = var(b.var);
        if (f.values.size() != 1) return Status::invalidArgument("a comparison needs one value");
        CompareOp op = f.op;
        if ((v.type == VariableType::kCategorical || v.type == VariableType::kBoolean) &&
            op != CompareOp::kEq && op != CompareOp::kNe) {
          return Status::invalidArgument(
              fmt::format("'{}' cannot compare {} variable {}: use =, != or in", compareOpText(op),
                          storage::variableTypeName(v.type), v.name));
        }
        TM_ASSIGN_OR_RETURN(Typed t, typedValue(v, f.values[0]));
        if (negated) {
          static constexpr CompareOp kNeg[] = {CompareOp::kNe, CompareOp::kEq, CompareOp::kGe,
                                               CompareOp::kGt, CompareOp::kLe, CompareOp::kLt};
          op = kNeg[static_cast<int>(op)];
        }
        if (v.type == VariableType::kReal) {
          b.kind = BK::kRealCmp;
          b.op = op;
          b.real = t.d;
          return b;
        }
        b.kind = BK::kIntRange;
        constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
        constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
        if (t.isInt) {
          int64_t x = t.i;
          switch (op) {
            case CompareOp::kEq:
              b.lo = b.hi = x;
              break;
            case CompareOp::kNe:
              b.lo = b.hi = x;
              b.negate = true;
              break;
            case CompareOp::kLt:
              if (x == kMin) {
                b.lo = 1;
                b.hi = 0;
              } else {
                b.lo = kMin;
                b.hi = x - 1;
              }
              break;
            case CompareOp::kLe:
              b.lo = kMin;
              b.hi = x;
              break;
            case CompareOp::kGt:
              if (x == kMax) {
                b.lo = 1;
                b.hi = 0;
              } else {
                b.lo = x + 1;
                b.hi = kMax;
              }
              break;
            case CompareOp::kGe:
              b.lo = x;
              b.hi = kMax;
              break;
          }
        } else {
          // A real literal against an integer variable: translate to integer bounds.
          double x = t.d;
          bool integral = std::floor(x) == x && std::fabs(x) < 9.2e18;
          switch (op) {
            case CompareOp::kEq:
            case CompareOp::kNe:
              if (integral) {
                b.lo = b.hi = saturate(x);
              } else {
                b.lo = 1;
                b.hi = 0;
              }
              b.negate = op == CompareOp::kNe;
              break;
            case CompareOp::kLt:  // x_col < x  <=>  x_col <= ceil(x) - 1
              b.lo = kMin;
              b.hi = saturate(std::ceil(x) - 1);
              if (std::ceil(x) - 1 < -9.2e18) {
                b.lo = 1;
                b.hi = 0;
              }
              break;
            case CompareOp::kLe:
              b.lo = kMin;
              b.hi = saturate(std::floor(x));
              if (std::floor(x) < -9.2e18) {
                b.lo = 1;
                b.hi = 0;
              }
              break;
            case CompareOp::kGt:
              b.lo = saturate(std::floor(x) + 1);
              b.hi = kMax;
              if (std::floor(x) + 1 > 9.2e18) {
                b.lo = 1;
                b.hi = 0;
              }
              break;
            case CompareOp::kGe:
              b.lo = saturate(std::ceil(x));
              b.hi = kMax;
              if (std::ceil(x) > 9.2e18) {
                b.lo = 1;
                b.hi = 0;
              }
              break;
          }
        }
        return b;
      }
    }
    return Status::internal("unknown filter kind");
  }

  // The event coding of a survival status, from its declaration only (R's Surv() decides from
  // the data's maximum, which a site holding only 1s cannot see): boolean FALSE/TRUE; integer
  // with declared max 1 -> 0/1, max 2 -> 1/2 (2 = event, as Surv() reads a status whose
  // maximum is 2), any other range refused; categorical with exactly the levels {0, 1}, {1, 2} or
  // {FALSE, TRUE}.
  static Result<detail::EventCoding> eventCodingOf(const Variable& e, const std::string& what) {
    const std::string how =
        "declare it boolean, or integer with min = 0, max = 1 (0 = censored, 1 = event) or "
        "min = 1, max = 2 (1 = censored, 2 = event, as R's Surv() reads it)";
    switch (e.type) {
      case VariableType::kBoolean:
        return detail::EventCoding{0, 1, "FALSE/TRUE"};
      case VariableType::kInteger: {
        // The declared max plays the part of R's data maximum; values outside the coding
        // (a 0 under 1/2) are refused where they are met, whatever min says.
        if (e.max && (*e.max == 1 || *e.max == 2)) {
          return *e.max == 1 ? detail::EventCoding{0, 1, "0/1"} : detail::EventCoding{1, 2, "1/2"};
        }
        std::string range = fmt::format("[{}, {}]", e.min ? fmt::format("{}", *e.min) : "-inf",
                                        e.max ? fmt::format("{}", *e.max) : "inf");
        return Status::invalidArgument(fmt::format(
            "{}: the event variable {} is an integer with the declared range {}, which does not "
            "fix its event coding; {}",
            what, e.name, range, how));
      }
      case VariableType::kCategorical: {
        auto codeIs = [&](size_t i, std::initializer_list<const char*> spellings) {
          for (const char* sp : spellings)
            if (e.levels[i].code == sp) return true;
          return false;
        };
        if (e.levels.size() == 2) {
          for (const auto& [c, ev] : {std::pair{"0", "1"}, std::pair{"1", "2"}}) {
            for (size_t first = 0; first < 2; ++first) {
              if (e.levels[first].code == c && e.levels[1 - first].code == ev)
                return detail::EventCoding{static_cast<double>(first),
                                           static_cast<double>(1 - first),
                                           fmt::format("{}/{}", c, ev)};
            }
          }
          for (size_t first = 0; first < 2; ++first) {
            if (codeIs(first, {"FALSE", "false", "False", "F"}) &&
                codeIs(1 - first, {"TRUE", "true", "True", "T"}))
              return detail::EventCoding{static_cast<double>(first), static_cast<double>(1 - first),
                                         "FALSE/TRUE"};
          }
        }
        return Status::invalidArgument(fmt::format(
            "{}: the event variable {} is categorical with the levels {}; an event indicator "
            "needs exactly the levels 0 and 1, 1 and 2 (2 = event) or FALSE and TRUE; or {}",
            what, e.name, levelList(e), how));
      }
      default:
        return Status::invalidArgument(fmt::format("{}: the event variable {} is {}; {}", what,
                                                   e.name, storage::variableTypeName(e.type), how));
    }
  }

  // factor(x) as R's model.matrix expands it, columns named "factor(x)<level>": a categorical
  // by its levels, a boolean as FALSE/TRUE, an integer by each value of its declared range
  // (the dictionary, not a site's data, fixes the levels so every site builds the same design;
  // a declared value no site holds gives an all-zero column, which the fit reports as
  // collinear; R would drop the unused level).
  static Status bindFactor(const Variable& v, const std::string& what, detail::ModelTerm& t,
                           std::vector<std::string>& columnNames) {
    const std::string prefix = "factor(" + v.name + ")";
    t.factor = true;
    switch (v.type) {
      case VariableType::kCategorical:
        t.levels = static_cast<uint32_t>(v.levels.size());
        for (size_t l = 1; l < v.levels.size(); ++l)
          columnNames.push_back(prefix + v.levels[l].code);
        break;
      case VariableType::kBoolean:
        t.levels = 2;
        columnNames.push_back(prefix + "TRUE");
        break;
      case VariableType::kInteger:
        if (!v.min || !v.max || *v.max - *v.min >= kMaxFactorValues)
          return Status::invalidArgument(fmt::format(
              "{}: factor({}) needs the declared range of {} (min and max in the dictionary, at "
              "most {} values), which fixes its levels at every site; {} {}",
              what, v.name, v.name, kMaxFactorValues, v.name,
              !v.min || !v.max ? "has no declared min and max"
                               : fmt::format("spans {} to {}", *v.min, *v.max)));
        t.offset = static_cast<int64_t>(*v.min);
        t.levels = static_cast<uint32_t>(*v.max - *v.min + 1);
        for (uint32_t l = 1; l < t.levels; ++l)
          columnNames.push_back(prefix + std::to_string(t.offset + l));
        break;
      default:
        return Status::invalidArgument(
            fmt::format("{}: factor({}): {} is {}; factor() takes an integer, categorical or "
                        "boolean variable",
                        what, v.name, v.name, storage::variableTypeName(v.type)));
    }
    if (t.levels < 2)
      return Status::invalidArgument(
          fmt::format("{}: factor({}) has {} level(s); a factor covariate needs at least two", what,
                      v.name, t.levels));
    return Status::ok();
  }

  static bool isNumeric(VariableType t) {
    return t == VariableType::kInteger || t == VariableType::kReal;
  }

  // The design of a model: response, covariates expanded to columns, strata.
  Result<detail::ModelPlan> bindModel(const Aggregate& a) const {
    detail::ModelPlan m;
    m.fn = a.fn;
    const std::string what = aggFnName(a.fn);
    const bool survival = isSurvivalModel(a.fn);
    TM_ASSIGN_OR_RETURN(m.response, resolve(a.var));
    const Variable& y = var(m.response);
    m.responseType = y.type;
    if (survival) {
      if (!isNumeric(y.type))
        return Status::invalidArgument(
            fmt::format("{}: the time variable {} is {}; it needs an integer or real time", what,
                        y.name, storage::variableTypeName(y.type)));
      TM_ASSIGN_OR_RETURN(m.event, resolve(a.event));
      const Variable& e = var(m.event);
      m.eventType = e.type;
      TM_ASSIGN_OR_RETURN(m.eventCoding, eventCodingOf(e, what));
      if (a.terms.empty())
        return Status::invalidArgument(
            fmt::format("{}: a Cox model needs at least one covariate after '~'", what));
    } else if (a.fn == AggFn::kGlm || a.fn == AggFn::kGlmSums) {
      if (y.type != VariableType::kBoolean && y.type != VariableType::kInteger)
        return Status::invalidArgument(fmt::format(
            "{}: the response {} is {}; logistic regression needs a boolean or a 0/1 integer "
            "outcome",
            what, y.name, storage::variableTypeName(y.type)));
    } else if (!isNumeric(y.type) && y.type != VariableType::kBoolean) {
      return Status::invalidArgument(
          fmt::format("{}: the response {} is {}; lm needs an integer, real or boolean response",
                      what, y.name, storage::variableTypeName(y.type)));
    }
    m.intercept = !survival;
    if (m.intercept) m.columnNames.push_back("(Intercept)");
    for (const auto& name : a.terms) {
      detail::ModelTerm t;
      TM_ASSIGN_OR_RETURN(t.var, resolve(name));
      const Variable& v = var(t.var);
      if (t.var == m.response || (survival && t.var == m.event))
        return Status::invalidArgument(
            fmt::format("{}: {} is the response and cannot also be a covariate", what, v.name));
      t.type = v.type;
      t.firstColumn = m.columnNames.size();
      if (a.isFactor(name)) {
        TM_RETURN_IF_ERROR(bindFactor(v, what, t, m.columnNames));
        t.columns = m.columnNames.size() - t.firstColumn;
        m.terms.push_back(t);
        continue;
      }
      switch (v.type) {
        case VariableType::kInteger:
        case VariableType::kReal:
          m.columnNames.push_back(v.name);
          break;
        case VariableType::kBoolean:
          m.columnNames.push_back(v.name + "TRUE");
          break;
        case VariableType::kCategorical:
          t.levels = static_cast<uint32_t>(v.levels.size());
          if (t.levels < 2)
            return Status::invalidArgument(fmt::format(
                "{}: covariate {} has {} level(s); a categorical covariate needs at least two",
                what, v.name, t.levels));
          for (size_t l = 1; l < v.levels.size(); ++l)
            m.columnNames.push_back(v.name + v.levels[l].code);
          break;
        case VariableType::kDate:
          return Status::invalidArgument(fmt::format(
              "{}: covariate {} is a date; use a numeric variable (e.g. days since an origin)",
              what, v.name));
        case VariableType::kIdentifier:  // resolve() refuses identifiers first
          return Status::invalidArgument(
              fmt::format("{}: {} is a subject identifier, not a covariate", what, v.name));
      }
      t.columns = m.columnNames.size() - t.firstColumn;
      m.terms.push_back(t);
    }
    if (m.columnNames.size() > 200)
      return Status::invalidArgument(fmt::format(
          "{}: the design has {} columns; at most 200 are supported", what, m.columnNames.size()));
    if (!a.strata.empty()) {
      TM_ASSIGN_OR_RETURN(m.strataVar, resolve(a.strata));
      const Variable& s = var(m.strataVar);
      if (s.type == VariableType::kBoolean) {
        m.strata = 2;
        m.strataNames = {"FALSE", "TRUE"};
      } else if (s.type == VariableType::kCategorical) {
        m.strata = static_cast<uint32_t>(s.levels.size());
        for (const auto& l : s.levels) m.strataNames.push_back(l.code);
      } else {
        return Status::invalidArgument(
            fmt::format("{}: strata = {}: {} is {}; strata need a categorical or boolean variable",
                        what, s.name, s.name, storage::variableTypeName(s.type)));
      }
      m.hasStrata = true;
      for (const auto& t : m.terms)
        if (t.var == m.strataVar)
          return Status::invalidArgument(
              fmt::format("{}: {} is both a covariate and the strata variable", what, s.name));
    }
    const size_t p = m.width();
    auto lengthError = [&](const char* key, size_t got) {
      std::string cols;
      for (size_t i = 0; i < m.columnNames.size(); ++i) cols += (i ? ", " : "") + m.columnNames[i];
      return Status::invalidArgument(fmt::format(
          "{}: {} has {} entries but the design has {} columns ({})", what, key, got, p, cols));
    };
    if (!a.beta.empty() && a.beta.size() != p) return lengthError("beta", a.beta.size());
    if (!a.center.empty() && a.center.size() != p) return lengthError("center", a.center.size());
    if (a.fn == AggFn::kCoxSums && a.times.size() != m.strata)
      return Status::invalidArgument(
          fmt::format("{}: times has {} event-time lists but the model has {} strata", what,
                      a.times.size(), m.strata));
    return m;
  }

  Result<detail::BoundAggregate> bindAggregate(const Aggregate& a) const {
    detail::BoundAggregate b;
    b.fn = a.fn;
    if (isModel(a.fn) || isModelRound(a.fn)) {
      TM_ASSIGN_OR_RETURN(b.var, resolve(a.var));
      b.hasVar = true;
      b.type = var(b.var).type;
      return b;
    }
    if (a.fn == AggFn::kCount && a.var.empty()) return b;
    TM_ASSIGN_OR_RETURN(b.var, resolve(a.var));
    b.hasVar = true;
    const Variable& v = var(b.var);
    b.type = v.type;
    std::string what = aggregateText(a);
    const char* fn = aggFnName(a.fn);
    auto typeError = [&](const char* needs) {
      return Status::invalidArgument(fmt::format("{}: {} is {}; {} needs {}", what, v.name,
                                                 storage::variableTypeName(v.type), fn, needs));
    };
    switch (a.fn) {
      case AggFn::kCount:
        break;
      case AggFn::kSum:
      case AggFn::kMean:
      case AggFn::kVar:
      case AggFn::kSd:
        if (!isNumeric(v.type)) return typeError("an integer or real variable");
        break;
      case AggFn::kMin:
      case AggFn::kMax:
        if (!isNumeric(v.type) && v.type != VariableType::kDate)
          return typeError("an integer, real or date variable");
        break;
      case AggFn::kHist: {
        if (!isNumeric(v.type)) return typeError("an integer or real variable");
        if (a.uniformBins) {
          if (!(a.to > a.from) || !(a.width > 0))
            return Status::invalidArgument(fmt::format("{}: needs from < to and width > 0", what));
          double span = (a.to - a.from) / a.width;
          double rounded = std::round(span);
          double count =
              std::fabs(span - rounded) <= 1e-9 * std::max(1.0, span) ? rounded : std::ceil(span);
          if (count > 1e6)
            return Status::invalidArgument(
                fmt::format("{}: more than 1000000 bins; use a larger width", what));
          uint32_t bins = static_cast<uint32_t>(std::max(1.0, count));
          b.uniform = true;
          b.from = a.from;
          b.width = a.width;
          for (uint32_t k = 0; k < bins; ++k) b.breaks.push_back(a.from + k * a.width);
          b.breaks.push_back(a.to);
        } else {
          if (a.breaks.size() < 2 || !std::is_sorted(a.breaks.begin(), a.breaks.end()) ||
              std::adjacent_find(a.breaks.begin(), a.breaks.end()) != a.breaks.end())
            return Status::invalidArgument(
                fmt::format("{}: needs at least two strictly increasing breaks", what));
          b.breaks = a.breaks;
        }
        break;
      }
      case AggFn::kLm:
      case AggFn::kGlm:
      case AggFn::kCoxph:
      case AggFn::kLmSums:
      case AggFn::kGlmSums:
      case AggFn::kCoxTimes:
      case AggFn::kCoxSums:
        break;  // handled above
      case AggFn::kQuantile:
        return Status::invalidArgument(
            fmt::format("{}: a quantile is computed by the coordinator in rounds of counts "
                        "(trialmesh query runs them); a site answers quantile_counts rounds only",
                        what));
      case AggFn::kQuantileCounts:
        if (!isNumeric(v.type)) return typeError("an integer or real variable");
        b.keyBounds = a.keyBounds;
        b.buckets = a.buckets;
        break;
      case AggFn::kKm: {
        // The coordinator runs km(..., strata = s) as two ordinary queries
        // (query/stratified_km.h); a site never executes it.
        if (!a.strata.empty())
          return Status::invalidArgument(fmt::format(
              "{}: a km with strata runs at the coordinator as two queries (trialmesh query "
              "does this); a site executes {} without strata and {} by the groups and {}",
              what, aggFnName(a.fn), aggFnName(a.fn), a.strata));
        if (!isNumeric(v.type))
          return Status::invalidArgument(
              fmt::format("{}: the time variable {} is {}; km needs an integer or real time", what,
                          v.name, storage::variableTypeName(v.type)));
        TM_ASSIGN_OR_RETURN(b.event, resolve(a.event));
        TM_ASSIGN_OR_RETURN(b.eventCoding, eventCodingOf(var(b.event), what));
        break;
      }
    }
    return b;
  }

 private:
  const Dictionary& dict_;
};

// `by week(onset_date)`: the date variable's calendar bins over the explicit range or the
// dictionary's declared one (query/time_group.h).
Result<detail::GroupVar> bindTimeGroup(const TimeGroup& time, const Dictionary& dictionary,
                                       const Binder& binder) {
  TM_ASSIGN_OR_RETURN(size_t idx, binder.resolve(time.var));
  const Variable& v = dictionary.variable(idx);
  if (v.type != VariableType::kDate)
    return Status::invalidArgument(fmt::format(
        "cannot group by {}({}): {} is {}; {}() needs a date variable", timeUnitName(time.unit),
        v.name, v.name, storage::variableTypeName(v.type), timeUnitName(time.unit)));
  int32_t from = 0, to = 0;
  if (time.from) {
    from = *time.from;
    to = *time.to;
  } else if (v.min && v.max) {
    from = static_cast<int32_t>(*v.min);
    to = static_cast<int32_t>(*v.max);
  } else {
    return Status::invalidArgument(fmt::format(
        "{}({}) needs a date range: the dictionary declares no min and max for {}; write "
        "{}({}, \"YYYY-MM-DD\", \"YYYY-MM-DD\")",
        timeUnitName(time.unit), v.name, v.name, timeUnitName(time.unit), v.name));
  }
  detail::GroupVar g;
  g.var = idx;
  g.time = true;
  g.bins = timeBins(time.unit, from, to);
  g.levels = g.bins.count;
  g.hasNa = false;
  return g;
}

}  // namespace

Result<BoundQuery> bindQuery(const Query& query, const storage::Dictionary& dictionary) {
  if (query.select.empty()) return Status::invalidArgument("a query needs at least one statistic");
  auto plan = std::make_shared<detail::Plan>();
  plan->query = query;
  plan->canonical = canonicalQueryText(query);
  plan->dictionary = dictionary;
  plan->dictionaryHash = dictionary.hashHex();
  Binder binder(dictionary);
  std::vector<size_t> columns;

  for (const auto& a : query.select) {
    if (isModel(a.fn) || isModelRound(a.fn)) {
      if (query.select.size() > 1)
        return Status::invalidArgument(fmt::format(
            "{} must be the only statistic of its query; run the other statistics as a separate "
            "query",
            aggregateText(a)));
      if (!query.by.empty())
        return Status::invalidArgument(fmt::format(
            "{} cannot be grouped with 'by': add the grouping variable as a covariate, or fit "
            "one model per group with 'where'",
            aggFnName(a.fn)));
      TM_ASSIGN_OR_RETURN(detail::ModelPlan m, binder.bindModel(a));
      columns.push_back(m.response);
      if (isSurvivalModel(a.fn)) columns.push_back(m.event);
      for (const auto& t : m.terms) columns.push_back(t.var);
      if (m.hasStrata) {
        columns.push_back(m.strataVar);
        plan->cells = m.strata;
      }
      plan->model = std::move(m);
    }
    if (a.fn == AggFn::kQuantileCounts && !query.by.empty())
      return Status::invalidArgument(
          fmt::format("{} cannot be grouped with 'by': run one quantile per group with 'where'",
                      aggregateText(a)));
    if ((a.fn == AggFn::kHist || a.fn == AggFn::kKm || a.fn == AggFn::kQuantile ||
         a.fn == AggFn::kQuantileCounts) &&
        query.select.size() > 1) {
      return Status::invalidArgument(fmt::format(
          "{} must be the only statistic of its query (it produces its own rows); run the "
          "other statistics as a separate query",
          aggregateText(a)));
    }
    TM_ASSIGN_OR_RETURN(detail::BoundAggregate b, binder.bindAggregate(a));
    if (b.hasVar) columns.push_back(b.var);
    if (b.fn == AggFn::kKm) columns.push_back(b.event);
    auto momentLike = [](AggFn f) {
      return f == AggFn::kMean || f == AggFn::kVar || f == AggFn::kSd;
    };
    for (size_t j = 0; j < plan->aggregates.size(); ++j) {
      const auto& p = plan->aggregates[j];
      if (p.sameStateAs < 0 && p.hasVar && b.hasVar && p.var == b.var &&
          (p.fn == b.fn || (momentLike(p.fn) && momentLike(b.fn)))) {
        b.sameStateAs = static_cast<int>(j);
        break;
      }
    }
    plan->aggregates.push_back(std::move(b));
  }

  uint64_t cells = plan->model ? plan->cells : 1;
  std::vector<detail::BoundFilter> timeRanges;  // each time group's range, ANDed to the filter
  for (const auto& name : query.by) {
    TM_ASSIGN_OR_RETURN(std::optional<TimeGroup> time, parseTimeGroup(name));
    if (time) {
      TM_ASSIGN_OR_RETURN(detail::GroupVar g, bindTimeGroup(*time, dictionary, binder));
      for (const auto& o : plan->groups) {
        if (o.var == g.var)
          return Status::invalidArgument(
              fmt::format("'{}' is grouped twice after 'by'", dictionary.variable(g.var).name));
      }
      cells *= g.width();
      if (cells > kMaxCells)
        return Status::invalidArgument(fmt::format(
            "grouping by {} gives more than {} cells; narrow the date range or group by fewer "
            "variables",
            name, kMaxCells));
      detail::BoundFilter range;
      range.kind = detail::BoundFilter::Kind::kIntRange;
      range.var = g.var;
      range.lo = g.bins.firstDay;
      range.hi = g.bins.lastDay;
      timeRanges.push_back(std::move(range));
      plan->groups.push_back(g);
      columns.push_back(g.var);
      continue;
    }
    TM_ASSIGN_OR_RETURN(size_t idx, binder.resolve(name));
    const Variable& v = dictionary.variable(idx);
    for (const auto& g : plan->groups) {
      if (g.var == idx)
        return Status::invalidArgument(fmt::format("'{}' appears twice after 'by'", name));
    }
    detail::GroupVar g;
    g.var = idx;
    if (v.type == VariableType::kInteger) {
      // Integer-coded categories (sex 1/2, ECOG 0-3): one cell per value of the declared range,
      // which every site shares (its own values could not fix the cells).
      if (!v.min || !v.max || *v.max - *v.min >= kMaxIntegerGroupValues)
        return Status::invalidArgument(fmt::format(
            "cannot group by {}: an integer variable is grouped by each value of its declared "
            "range, and {} {}; declare min and max in the dictionary (at most {} values)",
            v.name, v.name,
            !v.min || !v.max ? "has no declared min and max"
                             : fmt::format("spans {} to {}", *v.min, *v.max),
            kMaxIntegerGroupValues));
      g.integer = true;
      g.offset = static_cast<int64_t>(*v.min);
      g.levels = static_cast<uint32_t>(*v.max - *v.min + 1);
    } else if (v.type != VariableType::kCategorical && v.type != VariableType::kBoolean) {
      return Status::invalidArgument(
          fmt::format("cannot group by {}: {} is {}; group-by needs a categorical, boolean or "
                      "integer variable",
                      v.name, v.name, storage::variableTypeName(v.type)));
    } else {
      g.levels = v.type == VariableType::kBoolean ? 2 : static_cast<uint32_t>(v.levels.size());
    }
    g.hasNa = v.missingAllowed;
    cells *= g.width();
    if (cells > kMaxCells)
      return Status::invalidArgument(fmt::format(
          "grouping by {} gives more than {} cells; group by fewer variables", name, kMaxCells));
    plan->groups.push_back(g);
    columns.push_back(idx);
  }
  plan->cells = static_cast<uint32_t>(cells);

  if (query.where || !timeRanges.empty()) {
    if (query.where) {
      TM_ASSIGN_OR_RETURN(plan->filter, binder.bindFilter(*query.where, false));
    }
    if (!timeRanges.empty()) {
      detail::BoundFilter all;
      all.kind = detail::BoundFilter::Kind::kAnd;
      if (query.where) all.children.push_back(std::move(plan->filter));
      for (auto& r : timeRanges) all.children.push_back(std::move(r));
      plan->filter = all.children.size() == 1 ? std::move(all.children[0]) : std::move(all);
    }
    plan->hasFilter = true;
    std::vector<const detail::BoundFilter*> stack{&plan->filter};
    while (!stack.empty()) {
      const auto* f = stack.back();
      stack.pop_back();
      if (f->kind == detail::BoundFilter::Kind::kAnd || f->kind == detail::BoundFilter::Kind::kOr) {
        for (const auto& c : f->children) stack.push_back(&c);
      } else {
        columns.push_back(f->var);
      }
    }
  }
  std::sort(columns.begin(), columns.end());
  columns.erase(std::unique(columns.begin(), columns.end()), columns.end());
  plan->columns = std::move(columns);

  BoundQuery bq;
  bq.plan_ = std::move(plan);
  return bq;
}

}  // namespace trialmesh::query
