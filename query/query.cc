// Names of the query language's parts and the canonical text of a query (which the parser,
// query_parser.cc, reads back to the same query).
#include "query/query.h"

#include <fmt/format.h>

#include <cctype>
#include <cmath>

#include "query/query_text.h"
#include "query/time_group.h"

namespace trialmesh::query {

namespace detail {

namespace {

constexpr std::string_view kReserved[] = {"and",   "or", "not",  "in",    "is",  "missing",
                                          "where", "by", "true", "false", "date"};

}  // namespace

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  }
  return true;
}

bool isReserved(std::string_view word) {
  for (auto r : kReserved)
    if (iequals(word, r)) return true;
  return false;
}

bool isPlainIdentifier(std::string_view s) {
  if (s.empty() || !(std::isalpha(static_cast<unsigned char>(s[0])) || s[0] == '_')) return false;
  for (char c : s)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.')) return false;
  return true;
}

std::string numberText(double v) { return fmt::format("{}", v); }

}  // namespace detail

namespace {

using detail::isPlainIdentifier;
using detail::isReserved;
using detail::numberText;

// --- canonical text -----------------------------------------------------------------------

std::string quoteName(const std::string& name) {
  if (isPlainIdentifier(name) && !isReserved(name)) return name;
  std::string out = "`";
  for (char c : name) {
    if (c == '`') out.push_back('`');
    out.push_back(c);
  }
  out.push_back('`');
  return out;
}

std::string quoteString(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  out.push_back('"');
  return out;
}

// Shortest text that reads back to the same double, always with a '.' or exponent so that a
// real literal stays real.
std::string realText(double v) {
  std::string s = fmt::format("{}", v);
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
  return s;
}

std::string literalText(const Literal& l) {
  switch (l.kind) {
    case Literal::Kind::kInteger:
      return std::to_string(l.integer);
    case Literal::Kind::kReal:
      return realText(l.real);
    case Literal::Kind::kString:
      return quoteString(l.text);
    case Literal::Kind::kDate:
      return "date " + quoteString(l.text);
    case Literal::Kind::kBool:
      return l.boolean ? "true" : "false";
  }
  return {};
}

// Precedence: or = 1, and = 2, not and predicates = 3.
void filterText(const Filter& f, std::string& out);

void childText(const Filter& child, Filter::Kind parent, std::string& out) {
  bool paren =
      child.kind == parent || (parent == Filter::Kind::kAnd && child.kind == Filter::Kind::kOr);
  if (paren) out += "(";
  filterText(child, out);
  if (paren) out += ")";
}

void filterText(const Filter& f, std::string& out) {
  switch (f.kind) {
    case Filter::Kind::kCompare:
      out += fmt::format("{} {} {}", quoteName(f.var), compareOpText(f.op),
                         f.values.empty() ? std::string("?") : literalText(f.values[0]));
      return;
    case Filter::Kind::kIn: {
      out += quoteName(f.var) + " in (";
      for (size_t i = 0; i < f.values.size(); ++i) {
        if (i) out += ", ";
        out += literalText(f.values[i]);
      }
      out += ")";
      return;
    }
    case Filter::Kind::kIsMissing:
      out += quoteName(f.var) + " is missing";
      return;
    case Filter::Kind::kIsNotMissing:
      out += quoteName(f.var) + " is not missing";
      return;
    case Filter::Kind::kAnd:
    case Filter::Kind::kOr:
      for (size_t i = 0; i < f.children.size(); ++i) {
        if (i) out += f.kind == Filter::Kind::kAnd ? " and " : " or ";
        childText(f.children[i], f.kind, out);
      }
      return;
    case Filter::Kind::kNot: {
      out += "not ";
      const Filter& c = f.children.empty() ? f : f.children[0];
      bool paren = c.kind != Filter::Kind::kNot;
      if (paren) out += "(";
      if (!f.children.empty()) filterText(c, out);
      if (paren) out += ")";
      return;
    }
  }
}

}  // namespace

const char* aggFnName(AggFn fn) {
  switch (fn) {
    case AggFn::kCount:
      return "count";
    case AggFn::kSum:
      return "sum";
    case AggFn::kMean:
      return "mean";
    case AggFn::kVar:
      return "var";
    case AggFn::kSd:
      return "sd";
    case AggFn::kMin:
      return "min";
    case AggFn::kMax:
      return "max";
    case AggFn::kHist:
      return "hist";
    case AggFn::kKm:
      return "km";
    case AggFn::kLm:
      return "lm";
    case AggFn::kGlm:
      return "glm";
    case AggFn::kCoxph:
      return "coxph";
    case AggFn::kLmSums:
      return "lm_sums";
    case AggFn::kGlmSums:
      return "glm_sums";
    case AggFn::kCoxTimes:
      return "cox_times";
    case AggFn::kCoxSums:
      return "cox_sums";
    case AggFn::kQuantile:
      return "quantile";
    case AggFn::kQuantileCounts:
      return "quantile_counts";
  }
  return "?";
}

std::string quantileArgumentError(const Aggregate& a) {
  if (a.fn == AggFn::kQuantile) {
    if (a.probs.empty() || a.probs.size() > 100) return "quantile needs 1 to 100 probabilities";
    for (double p : a.probs) {
      if (!(p > 0 && p < 1))
        return fmt::format(
            "quantile probability {} is not strictly between 0 and 1 (0 and 1 are "
            "the minimum and maximum, one patient's value: ask for min(x) or "
            "max(x) where an approval allows them)",
            numberText(p));
    }
  } else if (a.fn == AggFn::kQuantileCounts) {
    if (a.keyBounds.empty() || a.keyBounds.size() % 2 != 0 || a.keyBounds.size() > 400)
      return "quantile_counts needs 1 to 200 key intervals as [lo, hi] pairs";
    for (size_t i = 0; i < a.keyBounds.size(); i += 2)
      if (a.keyBounds[i] > a.keyBounds[i + 1])
        return "a key interval of quantile_counts has lo > hi";
    if (a.buckets < 2 || a.buckets > 65536) return "quantile_counts needs 2 to 65536 buckets";
    if (size_t{a.buckets} * (a.keyBounds.size() / 2) > (size_t{1} << 20))
      return "quantile_counts asks for more than 2^20 buckets in all";
  }
  return {};
}

bool isModel(AggFn fn) { return fn == AggFn::kLm || fn == AggFn::kGlm || fn == AggFn::kCoxph; }

bool isModelRound(AggFn fn) {
  return fn == AggFn::kLmSums || fn == AggFn::kGlmSums || fn == AggFn::kCoxTimes ||
         fn == AggFn::kCoxSums;
}

bool isSurvivalModel(AggFn fn) {
  return fn == AggFn::kCoxph || fn == AggFn::kCoxTimes || fn == AggFn::kCoxSums;
}

const char* analysisName(AggFn fn) {
  switch (fn) {
    case AggFn::kLmSums:
      return "lm";
    case AggFn::kGlmSums:
      return "glm";
    case AggFn::kCoxTimes:
    case AggFn::kCoxSums:
      return "coxph";
    case AggFn::kQuantileCounts:
      return "quantile";
    default:
      return aggFnName(fn);
  }
}

std::vector<std::string> aggregateVariables(const Aggregate& a) {
  std::vector<std::string> out;
  if (!a.var.empty()) out.push_back(a.var);
  if (!a.event.empty()) out.push_back(a.event);
  for (const auto& t : a.terms) out.push_back(t);
  if (!a.strata.empty()) out.push_back(a.strata);
  return out;
}

const char* compareOpText(CompareOp op) {
  switch (op) {
    case CompareOp::kEq:
      return "=";
    case CompareOp::kNe:
      return "!=";
    case CompareOp::kLt:
      return "<";
    case CompareOp::kLe:
      return "<=";
    case CompareOp::kGt:
      return ">";
    case CompareOp::kGe:
      return ">=";
  }
  return "?";
}

std::string aggregateText(const Aggregate& a) {
  std::string s = aggFnName(a.fn);
  if (a.fn == AggFn::kCount && a.var.empty()) return s;
  if (isModel(a.fn) || isModelRound(a.fn)) {
    auto list = [](const std::vector<double>& v) {
      std::string out = "[";
      for (size_t i = 0; i < v.size(); ++i) {
        if (i) out += ", ";
        out += numberText(v[i]);
      }
      return out + "]";
    };
    s += "(" + quoteName(a.var);
    if (isSurvivalModel(a.fn)) s += ", " + quoteName(a.event);
    s += " ~ ";
    if (a.terms.empty()) s += "1";
    for (size_t i = 0; i < a.terms.size(); ++i) {
      if (i) s += " + ";
      s += a.isFactor(a.terms[i]) ? "factor(" + quoteName(a.terms[i]) + ")" : quoteName(a.terms[i]);
    }
    if (a.fn == AggFn::kGlm) s += ", family = binomial";
    if (a.breslow) s += ", ties = breslow";
    if (!a.strata.empty()) s += ", strata = " + quoteName(a.strata);
    if (!a.beta.empty()) s += ", beta = " + list(a.beta);
    if (!a.center.empty()) s += ", center = " + list(a.center);
    if (!a.times.empty()) {
      s += ", times = [";
      for (size_t i = 0; i < a.times.size(); ++i) {
        if (i) s += ", ";
        s += list(a.times[i]);
      }
      s += "]";
    }
    return s + ")";
  }
  s += "(" + quoteName(a.var);
  auto numbers = [](const auto& v) {
    std::string out = "[";
    for (size_t i = 0; i < v.size(); ++i) {
      if (i) out += ", ";
      if constexpr (std::is_same_v<std::decay_t<decltype(v[i])>, double>) {
        out += numberText(v[i]);
      } else {
        out += std::to_string(v[i]);
      }
    }
    return out + "]";
  };
  if (a.fn == AggFn::kQuantile) return s + ", " + numbers(a.probs) + ")";
  if (a.fn == AggFn::kQuantileCounts)
    return s + ", " + numbers(a.keyBounds) + ", " + std::to_string(a.buckets) + ")";
  if (a.fn == AggFn::kKm) {
    s += ", " + quoteName(a.event);
    for (size_t i = 0; i < a.survTimes.size(); ++i)
      s += (i ? ", " : ", times = [") + numberText(a.survTimes[i]) +
           (i + 1 == a.survTimes.size() ? "]" : "");
    if (a.rmean) s += ", rmean = " + (std::isinf(*a.rmean) ? "common" : numberText(*a.rmean));
    if (!a.strata.empty()) s += ", strata = " + quoteName(a.strata);
  }
  if (a.fn == AggFn::kHist) {
    if (a.uniformBins) {
      s += fmt::format(", {}, {}, {}", numberText(a.from), numberText(a.to), numberText(a.width));
    } else {
      s += ", [";
      for (size_t i = 0; i < a.breaks.size(); ++i) {
        if (i) s += ", ";
        s += numberText(a.breaks[i]);
      }
      s += "]";
    }
  }
  return s + ")";
}

std::string canonicalQueryText(const Query& query) {
  std::string out;
  for (size_t i = 0; i < query.select.size(); ++i) {
    if (i) out += ", ";
    out += aggregateText(query.select[i]);
  }
  if (query.where) {
    out += " where ";
    filterText(*query.where, out);
  }
  if (!query.by.empty()) {
    out += " by ";
    for (size_t i = 0; i < query.by.size(); ++i) {
      if (i) out += ", ";
      auto time = parseTimeGroup(query.by[i]);
      out += time.isOk() && time->has_value() ? timeGroupText(**time) : quoteName(query.by[i]);
    }
  }
  return out;
}

}  // namespace trialmesh::query
