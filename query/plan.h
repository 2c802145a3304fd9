// Internal to tm_query: the bound form of a query that the engine and finalize work from.
// Not part of the public interface.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "query/query.h"
#include "query/time_group.h"
#include "storage/column.h"
#include "storage/dictionary.h"

namespace trialmesh::query::detail {

// A filter in negation normal form: NOT has been pushed to the leaves (De Morgan holds in
// Kleene logic), so every leaf is "known and predicate" or a missing test, and the engine needs
// only one selection mask per node.
struct BoundFilter {
  enum class Kind : uint8_t {
    kAnd,
    kOr,
    kIntRange,  // known && (lo <= x <= hi) != negate; integer, date, categorical, boolean
    kIntSet,    // known && (x in ints) != negate
    kRealCmp,   // known && x op real   (negation already folded into op)
    kRealSet,   // known && (x in reals) != negate
    kMissing,   // x missing != negate
  };
  Kind kind = Kind::kAnd;
  size_t var = 0;
  int64_t lo = 0, hi = 0;
  bool negate = false;
  CompareOp op = CompareOp::kEq;
  double real = 0;
  std::vector<int64_t> ints;
  std::vector<double> reals;
  std::vector<BoundFilter> children;
};

struct GroupVar {
  size_t var = 0;
  uint32_t levels = 0;  // declared levels (boolean: 2; integer: max - min + 1)
  bool hasNa = false;   // an extra "NA" level at index `levels`
  // by week(date) and friends (query/time_group.h): `levels` calendar bins of a date variable.
  bool time = false;
  TimeBins bins;
  // An integer variable grouped by its values (sex 1/2, ECOG 0-3): level k is the value
  // offset + k, over the declared range, so that every site reports the same cells.
  bool integer = false;
  int64_t offset = 0;
  uint32_t width() const { return levels + (hasNa ? 1 : 0); }
  // The text of level `code` (< levels) of variable v, as results name the cell.
  std::string levelText(const storage::Variable& v, uint32_t code) const {
    if (time) return timeBinLabel(bins, code);
    if (integer) return std::to_string(offset + static_cast<int64_t>(code));
    if (v.type == storage::VariableType::kBoolean) return code ? "true" : "false";
    return v.levels[code].code;
  }
};

// How an event indicator's stored values read (docs/statistics.md, "Event coding"): decided from
// the dictionary alone, so every site reads its own rows identically even when it holds only
// one of the two values. Any other stored value is an error naming the variable.
struct EventCoding {
  double censored = 0;  // the stored value meaning censored (boolean false, 0, 1 or a level)
  double event = 1;     // the stored value meaning event
  std::string text;     // "0/1", "1/2", "FALSE/TRUE" or "level <a>/<b>", for messages
};

// InvalidArgument naming the event variable, its coding and the distinct stored values in `bad`
// (at most a few listed) that are neither censored nor event.
Status eventCodingError(std::string_view what, const storage::Variable& event,
                        const EventCoding& coding, std::vector<double> bad);

struct BoundAggregate {
  AggFn fn = AggFn::kCount;
  bool hasVar = false;  // false: bare count
  size_t var = 0;
  size_t event = 0;         // km
  EventCoding eventCoding;  // km
  storage::VariableType type = storage::VariableType::kReal;
  // hist: breaks[0..bins] with bin k = [breaks[k], breaks[k+1]). Uniform breaks are
  // from + k * width, with the last one `to`.
  std::vector<double> breaks;
  bool uniform = false;
  double from = 0, width = 0;
  // quantile_counts: [lo, hi] key pairs and buckets per interval (query/quantile.h).
  std::vector<uint64_t> keyBounds;
  uint32_t buckets = 0;
  // Index of an earlier select entry computing the same state (mean/var/sd of one variable),
  // or -1. The engine computes it once and copies.
  int sameStateAs = -1;
};

// One covariate of a model and the design columns it expands to: a numeric variable is one
// column, a boolean one column (1 = true, named "<var>TRUE" as R's model.matrix), a
// categorical one indicator column per level after the first (named "<var><level>").
struct ModelTerm {
  size_t var = 0;
  storage::VariableType type = storage::VariableType::kReal;
  uint32_t levels = 0;  // categorical: declared levels
  // factor(x): one indicator per level after the first; level k of an integer is the value
  // offset + k over its declared range (a boolean: FALSE, TRUE).
  bool factor = false;
  int64_t offset = 0;
  size_t firstColumn = 0;
  size_t columns = 1;
};

// A bound model or model round (query/model_kernel.cc).
struct ModelPlan {
  AggFn fn = AggFn::kLm;
  size_t response = 0;  // y, or the time of a survival model
  storage::VariableType responseType = storage::VariableType::kReal;
  size_t event = 0;  // survival models
  storage::VariableType eventType = storage::VariableType::kBoolean;
  EventCoding eventCoding;
  bool intercept = false;  // lm, glm: a first column of ones
  std::vector<ModelTerm> terms;
  std::vector<std::string> columnNames;  // design columns, R's names
  bool hasStrata = false;
  size_t strataVar = 0;
  uint32_t strata = 1;  // strata count (the strata variable's levels; 1 without strata)
  std::vector<std::string> strataNames;
  size_t width() const { return columnNames.size(); }
};

struct Plan {
  Query query;
  std::string canonical;
  storage::Dictionary dictionary;
  std::string dictionaryHash;
  std::vector<GroupVar> groups;
  uint32_t cells = 1;
  std::vector<BoundAggregate> aggregates;
  bool hasFilter = false;
  BoundFilter filter;
  std::vector<size_t> columns;     // every variable the query reads, ascending
  std::optional<ModelPlan> model;  // set for a model or model round (the only statistic)
};

// Chan et al.: combine (n, mean, M2) of two disjoint sets of values into the first.
inline void mergeMoments(uint64_t& n, double& mean, double& m2, uint64_t nb, double meanb,
                         double m2b) {
  if (nb == 0) return;
  if (n == 0) {
    n = nb;
    mean = meanb;
    m2 = m2b;
    return;
  }
  const double na = static_cast<double>(n), nbd = static_cast<double>(nb);
  const double total = na + nbd;
  const double delta = meanb - mean;
  mean += delta * (nbd / total);
  m2 += m2b + delta * delta * (na * nbd / total);
  n += nb;
}

}  // namespace trialmesh::query::detail
