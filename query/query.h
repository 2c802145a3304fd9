// The coordinator query language: its syntax tree, the text and JSON parsers and the canonical
// text every site hashes. Grammar and examples: docs/query-language.md.
//
//   count where age >= 65 and sex = "F"
//   count, mean(bmi), var(bmi) by arm
//   hist(age, 0, 120, 10)
//   km(os_days, death) by arm
//   lm(bmi ~ age + sex)                        (models: fitted in rounds, query/model_runner.h)
//   glm(event ~ age + arm, family = binomial)
//   coxph(time, event ~ age + arm, ties = breslow, strata = site)
//   quantile(age, [0.25, 0.5, 0.75])           (exact, in rounds of counts: query/quantile.h)
//   median(age)                                (= quantile(age, [0.5]))
//
// A Query is only syntax: names are not checked against a dictionary until bindQuery
// (query/engine.h). Parse errors come back as InvalidArgument whose message names the line and
// 1-based column and shows the text with a caret under the offending token.
//
// Thread-safety: plain values; the functions are pure.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace trialmesh::query {

// Frozen: the names below are part of the canonical text.
// Appended after kKm: the models a coordinator asks for (kLm, kGlm, kCoxph; fitted in rounds by
// query/model_runner.h, never executed by a site) and the round statistics a site answers
// (kLmSums, kGlmSums, kCoxTimes, kCoxSums; layouts in query/partial.h, formulas in
// docs/statistics.md). Then kQuantile, computed by the coordinator in rounds of
// kQuantileCounts (query/quantile.h), which a site answers.
enum class AggFn : uint8_t {
  kCount,
  kSum,
  kMean,
  kVar,
  kSd,
  kMin,
  kMax,
  kHist,
  kKm,
  kLm,
  kGlm,
  kCoxph,
  kLmSums,
  kGlmSums,
  kCoxTimes,
  kCoxSums,
  kQuantile,
  kQuantileCounts
};

// "count", "sum", ..., "lm", "glm_sums", "cox_times" as written in queries.
const char* aggFnName(AggFn fn);
// lm, glm, coxph: a model the coordinator fits in rounds.
bool isModel(AggFn fn);
// lm_sums, glm_sums, cox_times, cox_sums: one round of a model fit, answered by a site.
bool isModelRound(AggFn fn);
// coxph, cox_times, cox_sums: the response is (time, event).
bool isSurvivalModel(AggFn fn);
// quantile: answered by the coordinator in rounds of quantile_counts, never by a site.
inline bool isQuantile(AggFn fn) { return fn == AggFn::kQuantile; }
// The analysis an approval must allow (ethics::kKnownAnalyses): a round statistic maps to its
// model (lm_sums -> "lm", glm_sums -> "glm", cox_times and cox_sums -> "coxph"),
// quantile_counts to "quantile"; every other statistic to aggFnName.
const char* analysisName(AggFn fn);

struct Aggregate;
// Empty when a quantile's probabilities or a quantile_counts round's intervals and buckets are
// valid (1 to 100 probabilities strictly inside (0, 1); 1 to 200 [lo, hi] pairs with lo <= hi,
// 2 to 65536 buckets, at most 2^20 in all); else why not. Other statistics: empty.
std::string quantileArgumentError(const Aggregate& a);

// One statistic of the select list.
struct Aggregate {
  AggFn fn = AggFn::kCount;
  std::string var;    // empty only for bare `count` (rows); km: the time variable
  std::string event;  // km only: the event indicator variable
  // hist only: either uniform bins [from, to) of `width`, or explicit `breaks` (ascending).
  bool uniformBins = true;
  double from = 0, to = 0, width = 0;
  std::vector<double> breaks;
  // Models and their rounds: `var` is the response (lm, glm) or the time and `event` the event
  // indicator (coxph, cox_*); `terms` are the covariates in formula order (empty: intercept
  // only, written `~ 1`).
  std::vector<std::string> terms;
  // The covariates of `terms` written factor(x) (R's factor(): an integer's declared values as
  // categories); each also listed in `terms`, in formula order. Empty for most models.
  std::vector<std::string> factors;
  bool isFactor(const std::string& term) const {
    for (const auto& f : factors)
      if (f == term) return true;
    return false;
  }
  bool breslow = false;        // coxph: ties = breslow (default efron; the round sums serve both)
  std::string strata;          // coxph, cox_*: strata = <categorical or boolean variable>
  std::vector<double> beta;    // glm_sums, cox_sums (empty: all zero)
  std::vector<double> center;  // cox_sums: covariate centring (empty: none)
  std::vector<std::vector<double>> times;  // cox_sums: event-time grid per stratum
  // km: times = [...] (summary(survfit, times =), strictly ascending) and rmean = tau
  // (print(survfit, rmean =)); +infinity stands for rmean = common. Coordinator-only figures.
  std::vector<double> survTimes;
  std::optional<double> rmean;
  // quantile: the probabilities, each strictly between 0 and 1 (0 and 1 would be the minimum
  // and maximum: one patient's value; ask for min/max). median(x) is quantile(x, [0.5]).
  std::vector<double> probs;
  // quantile_counts: inclusive key intervals [lo, hi] as pairs (query/quantile.h keys of the
  // value as a double), each split into `buckets` buckets.
  std::vector<uint64_t> keyBounds;
  uint32_t buckets = 0;

  // min and max reveal individual values: a policy layer may refuse them.
  bool disclosive() const { return fn == AggFn::kMin || fn == AggFn::kMax; }
  bool operator==(const Aggregate&) const = default;
};

struct Literal {
  enum class Kind : uint8_t { kInteger, kReal, kString, kDate, kBool };
  Kind kind = Kind::kInteger;
  int64_t integer = 0;   // kInteger
  double real = 0;       // kReal
  std::string text;      // kString; kDate as written (YYYY-MM-DD)
  bool boolean = false;  // kBool

  static Literal ofInteger(int64_t v) { return {Kind::kInteger, v, 0, {}, false}; }
  static Literal ofReal(double v) { return {Kind::kReal, 0, v, {}, false}; }
  static Literal ofString(std::string v) { return {Kind::kString, 0, 0, std::move(v), false}; }
  static Literal ofDate(std::string v) { return {Kind::kDate, 0, 0, std::move(v), false}; }
  static Literal ofBool(bool v) { return {Kind::kBool, 0, 0, {}, v}; }
  bool operator==(const Literal&) const = default;
};

enum class CompareOp : uint8_t { kEq, kNe, kLt, kLe, kGt, kGe };
const char* compareOpText(CompareOp op);  // "=", "!=", "<", ...

// A row filter. Three-valued logic: a comparison or IN on a missing value is "unknown", NOT of
// unknown is unknown, AND/OR follow Kleene's rules, and a row is kept only when the whole
// filter is true. `is missing` / `is not missing` are never unknown.
struct Filter {
  enum class Kind : uint8_t { kCompare, kIn, kIsMissing, kIsNotMissing, kAnd, kOr, kNot };
  Kind kind = Kind::kCompare;
  std::string var;                // kCompare, kIn, kIsMissing, kIsNotMissing
  CompareOp op = CompareOp::kEq;  // kCompare
  std::vector<Literal> values;    // kCompare: exactly one; kIn: one or more
  std::vector<Filter> children;   // kAnd, kOr: two or more; kNot: exactly one

  bool operator==(const Filter&) const = default;
};

struct Query {
  std::vector<Aggregate> select;  // at least one
  std::optional<Filter> where;
  std::vector<std::string> by;  // group-by variables, outermost first

  bool operator==(const Query&) const = default;
};

// Parses the text form, or the JSON form when the first non-blank character is '{'.
Result<Query> parseQuery(std::string_view text);
Result<Query> parseQueryJson(std::string_view json);

// Normalised text (lower-case keywords, single spaces, minimal parentheses, shortest
// round-trip numbers). parseQuery(canonicalQueryText(q)) == q for every parsed q.
// This is the text sites hash to check they run the same query.
std::string canonicalQueryText(const Query& query);
// Canonical text of one statistic ("mean(bmi)"); used as its result column name.
std::string aggregateText(const Aggregate& aggregate);
// The JSON form (docs/query-language.md); parseQueryJson(toJson(q)) == q.
std::string toJson(const Query& query);
// Every variable `aggregate` reads (value, event, covariates, strata), in that order.
std::vector<std::string> aggregateVariables(const Aggregate& aggregate);

}  // namespace trialmesh::query
