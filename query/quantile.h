// Exact quantiles over a federation from counts only: a coordinator-driven radix select.
//
// Every value is mapped to an order-preserving 64-bit key (integers: the two's-complement bit
// pattern with the sign bit flipped; doubles: the IEEE bit pattern with the sign bit flipped
// for positives and all bits flipped for negatives, so key order = numeric order). Each round
// asks every site for the counts of its rows whose key falls in each of `buckets` equal-width
// buckets of one or more key intervals; the coordinator adds the counts (plainly or by secure
// aggregation, like any count), finds the bucket holding each target order statistic and asks
// about that bucket next. With 4096 buckets a double is pinned to its exact key in at most six
// rounds (64 bits / 12 per round), an integer of a narrow declared range in fewer, and a double
// variable whose values all have few decimal places in 2 or 3 (kDecimalTests), so the result is
// exact, not approximate. The quantile is then R's type 7 (quantile.default), bit for bit.
//
//   QuantileSite siteA(keysOfSiteA), siteB(keysOfSiteB);           // at each site
//   auto counts = [&](const SelectRound& r) -> Result<RoundCounts> {
//     auto c = siteA.count(r); for (size_t i = 0; ...) c[i] += siteB.count(r)[i];
//     return RoundCounts{c, {}}; };
//   TM_ASSIGN_OR_RETURN(QuantileResult q,
//                       federatedQuantile({0.25, 0.5, 0.75}, KeyKind::kReal, counts));
//
// Disclosure: the coordinator learns n and pooled counts in buckets around the target ranks
// (never a site's own count in secure mode); the released result is n and the quantiles, each
// one patient's value or a mix of two as in R (docs/statistics.md).
//
// Thread-safety: plain values and pure functions; a QuantileSite is used by one thread.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"
#include "query/query.h"
#include "storage/column.h"

namespace trialmesh::query {

// How keys map back to values.
enum class KeyKind : uint8_t { kInteger, kReal };

// Order-preserving keys. quantileKey(-0.0) == quantileKey(0.0) (R treats them as equal); NaN
// is a missing value and must be dropped by the caller (REQUIRES: !isnan(v)).
uint64_t quantileKey(int64_t v);
uint64_t quantileKey(double v);
int64_t integerOfKey(uint64_t key);
double realOfKey(uint64_t key);

// Inclusive key interval [lo, hi].
struct KeyInterval {
  uint64_t lo = 0;
  uint64_t hi = UINT64_MAX;
  bool operator==(const KeyInterval&) const = default;
};

// One round of the select: every interval split into `buckets` buckets of width
// bucketWidth(interval, buckets) (the last ones may be empty). The answer has
// intervals.size() * buckets counts, interval-major.
struct SelectRound {
  std::vector<KeyInterval> intervals;
  uint32_t buckets = 4096;
};
uint64_t bucketWidth(const KeyInterval& interval, uint32_t buckets);

// Values with few decimal places. A "q-place decimal" is a double k / 10^q (correctly
// rounded) for an integer k: what 23.4 reads as for q >= 1, 40 for every q (the q-place
// decimals include the (q-1)-place ones). A site also counts, for q = 0 .. kDecimalTests - 1,
// its values that are not q-place decimals. When one of these pooled counts is 0 in the first
// round, a bucket holding exactly one q-place decimal holds only that value, and the select
// stops there instead of narrowing to a single key: ages, counts and days (q = 0) and values
// recorded to one or two decimals (BMI, most lab values) are pinned in 2 or 3 rounds instead
// of 6, with the same bits.
inline constexpr size_t kDecimalTests = 7;  // q = 0 .. 6
// The smallest q < kDecimalTests for which `v` is a q-place decimal (found by the test
// nearbyint(v * 10^q) / 10^q == v), or kDecimalTests when none is. REQUIRES: !isnan(v).
size_t decimalPlaces(double v);

// Pooled counts of one round (the sum over sites): intervals.size() * buckets counts,
// interval-major, and, when the counter knows them, kDecimalTests counts of the rows counted
// (inside the intervals or not) whose value does not have q decimal places, q = 0, 1, ...
// (empty: not known; every round is then narrowed to a single key).
struct RoundCounts {
  std::vector<uint64_t> buckets;
  std::vector<uint64_t> notDecimal;
};
// Errors abort the select.
using BucketCounter = std::function<Result<RoundCounts>(const SelectRound&)>;

// Counts per (interval, bucket) of `keys`, interval-major; with `kept`, also the keys inside
// some interval (the candidates of later rounds). Errors: InvalidArgument for an empty or
// malformed round (no intervals, buckets outside [2, 65536], lo > hi).
Result<std::vector<uint64_t>> countKeys(std::span<const uint64_t> keys, const SelectRound& round,
                                        std::vector<uint64_t>* kept = nullptr);

// The site side: the keys of the rows that passed the filter and have a value, narrowed round
// by round to those inside the intervals asked (later rounds only ask inside earlier buckets),
// so only the first two rounds visit every row.
class QuantileSite {
 public:
  explicit QuantileSite(std::vector<uint64_t> keys) : keys_(std::move(keys)) {}
  // Counts per (interval, bucket). Errors: InvalidArgument for an empty or malformed round
  // (no intervals, buckets outside [2, 65536], lo > hi).
  Result<std::vector<uint64_t>> count(const SelectRound& round);
  size_t candidates() const { return keys_.size(); }

 private:
  std::vector<uint64_t> keys_;
};

struct QuantileResult {
  uint64_t n = 0;                             // pooled non-missing rows
  std::vector<double> probs;                  // as asked
  std::vector<std::optional<double>> values;  // nullopt (NA) when n = 0
  uint32_t rounds = 0;                        // rounds of counts run
};

// Checks probabilities (finite, in [0, 1], 1 to 100 of them). Errors: InvalidArgument naming
// the bad one.
Status checkProbabilities(const std::vector<double>& probs);

// Runs the select with `counter` from the full key range (or `range`, e.g. an integer
// variable's declared bounds) and applies R's type-7 formula. Errors: those of
// checkProbabilities, the counter's first error prefixed "round N: ", InvalidArgument when the
// counts are inconsistent between rounds (a site changed its data mid-select), and
// PermissionDenied when 0 < n < minCount (the approval's minimum cell size), decided on the
// first round's total before any round narrows on a rank.
Result<QuantileResult> federatedQuantile(const std::vector<double>& probs, KeyKind kind,
                                         const BucketCounter& counter, KeyInterval range = {},
                                         uint32_t buckets = 4096, uint64_t minCount = 0);

// R's type 7 on sorted values: the reference the select is tested against.
std::optional<double> type7(const std::vector<double>& sorted, double p);

// R's names(quantile(x, p)): formatC(100 * p, format = "fg", digits = 7) then "%" ("25%",
// "2.5%", "33.33333%").
std::string quantileLabel(double p);

// What one site holds for a quantile of `variable` over the rows passing `where`: the keys of
// its non-missing values, how they map back, and the key range every site shares (an integer
// variable's declared [min, max]; else the full range), so all sites bucket alike.
struct SiteKeys {
  std::vector<uint64_t> keys;
  KeyKind kind = KeyKind::kReal;
  KeyInterval range;
};
// Errors: those of binding (unknown variable, bad filter) as InvalidArgument; InvalidArgument
// when the variable is not integer or real ("quantile needs an integer or real variable");
// a read error of the store.
Result<SiteKeys> siteQuantileKeys(const storage::ColumnSource& source, const std::string& variable,
                                  const std::optional<Filter>& where);

// quantile(variable, probs) where `where` over one store (the pooled reference, and
// the local query path): the select above with one site. `minCount` as federatedQuantile's
// (n = 0 gives NA).
Result<QuantileResult> localQuantile(const storage::ColumnSource& source,
                                     const std::string& variable,
                                     const std::optional<Filter>& where,
                                     const std::vector<double>& probs, uint64_t minCount = 0);

// Output of a quantile result for `variable` (the released figures only: n and the values;
// never a round's counts). Text: R's print(quantile(...)) (names over values, one common width,
// 7 significant digits, NA for n = 0, wrapped at 80 columns) then "n = <n>". JSON:
// {"statistic": "quantile", "variable", "n", "rows": [{"p", "name", "quantile"}]} with null for
// NA. CSV: header p,name,quantile,n, one row per probability, NA for NA.
std::string formatQuantile(const QuantileResult& result);
std::string quantileJson(const QuantileResult& result, const std::string& variable);
std::string quantileCsv(const QuantileResult& result);

}  // namespace trialmesh::query
