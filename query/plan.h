// Internal to tm_query: the bound form of a query that the engine and finalize work from.
// Not part of the public interface.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "query/query.h"
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
  uint32_t levels = 0;  // declared levels (boolean: 2)
  bool hasNa = false;   // an extra "NA" level at index `levels`
  uint32_t width() const { return levels + (hasNa ? 1 : 0); }
};

struct BoundAggregate {
  AggFn fn = AggFn::kCount;
  bool hasVar = false;  // false: bare count
  size_t var = 0;
  size_t event = 0;  // km
  storage::VariableType type = storage::VariableType::kReal;
  // hist: breaks[0..bins] with bin k = [breaks[k], breaks[k+1]). Uniform breaks are
  // from + k * width, with the last one `to`.
  std::vector<double> breaks;
  bool uniform = false;
  double from = 0, width = 0;
  // Index of an earlier select entry computing the same state (mean/var/sd of one variable),
  // or -1. The engine computes it once and copies.
  int sameStateAs = -1;
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
  std::vector<size_t> columns;  // every variable the query reads, ascending
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
