#include "query/quantile.h"

#include <bit>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <map>
#include <optional>
#include <string>

namespace trialmesh::query {

namespace {

constexpr uint64_t kSignBit = uint64_t{1} << 63;

// Shortest text that reads back as the same double.
std::string numberText(double v) {
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

// One target order statistic being narrowed: the interval holding it and how many keys lie
// below that interval.
struct Target {
  uint64_t rank = 0;  // 1-based
  KeyInterval interval;
  uint64_t below = 0;
  bool resolved = false;
};

}  // namespace

uint64_t quantileKey(int64_t v) { return static_cast<uint64_t>(v) ^ kSignBit; }

uint64_t quantileKey(double v) {
  if (v == 0) v = 0.0;  // -0.0 == 0.0 in R: one key
  const uint64_t bits = std::bit_cast<uint64_t>(v);
  return (bits & kSignBit) != 0 ? ~bits : bits | kSignBit;
}

int64_t integerOfKey(uint64_t key) { return static_cast<int64_t>(key ^ kSignBit); }

double realOfKey(uint64_t key) {
  return std::bit_cast<double>((key & kSignBit) != 0 ? key ^ kSignBit : ~key);
}

uint64_t bucketWidth(const KeyInterval& interval, uint32_t buckets) {
  const unsigned __int128 span =
      static_cast<unsigned __int128>(interval.hi - interval.lo) + 1;  // up to 2^64
  const unsigned __int128 w = (span + buckets - 1) / buckets;
  return static_cast<uint64_t>(w);
}

namespace {

// One interval of power-of-two width, as a node counts every round (query/engine.cc). Written
// for the shape of real columns, where most keys fall in few buckets (ages 18-90 share 3 of the
// first round's 4,096) and whether a key is inside the interval is a coin toss (a median's second
// round): four lanes of counters, so consecutive keys of one bucket do not wait on each other's
// increment, and a key outside the interval goes to a sink slot, chosen by a mask rather than a
// branch the CPU mispredicts half the time. 1M ages, a median's second round: 0.94 ms against
// 5.1 ms with one counter array and a branch (first round 0.93 against 1.0 ms).
void countKeysByShift(std::span<const uint64_t> keys, uint64_t lo, uint64_t span, int shift,
                      uint32_t buckets, std::vector<uint64_t>& counts) {
  constexpr size_t kLanes = 4;
  const size_t stride = size_t{buckets} + 1;  // the last slot of each lane: outside
  std::vector<uint64_t> lanes(kLanes * stride, 0);
  auto slot = [&](uint64_t key) -> size_t {
    const uint64_t off = key - lo;  // wraps for key < lo: then off > span
    const uint64_t inside = uint64_t{0} - static_cast<uint64_t>(off <= span);  // all ones or 0
    return static_cast<size_t>(((off >> shift) & inside) | (buckets & ~inside));
  };
  const size_t n = keys.size();
  size_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    ++lanes[slot(keys[i])];
    ++lanes[stride + slot(keys[i + 1])];
    ++lanes[2 * stride + slot(keys[i + 2])];
    ++lanes[3 * stride + slot(keys[i + 3])];
  }
  for (; i < n; ++i) ++lanes[slot(keys[i])];
  for (size_t b = 0; b < buckets; ++b)
    counts[b] = lanes[b] + lanes[stride + b] + lanes[2 * stride + b] + lanes[3 * stride + b];
}

}  // namespace

Result<std::vector<uint64_t>> countKeys(std::span<const uint64_t> keys, const SelectRound& round,
                                        std::vector<uint64_t>* kept) {
  const uint32_t k = round.buckets;
  if (round.intervals.empty())
    return Status::invalidArgument("quantile round: no key interval asked");
  if (k < 2 || k > 65536)
    return Status::invalidArgument("quantile round: buckets must be in [2, 65536], got " +
                                   std::to_string(k));
  for (const auto& iv : round.intervals)
    if (iv.lo > iv.hi) return Status::invalidArgument("quantile round: interval with lo > hi");
  std::vector<uint64_t> counts(round.intervals.size() * k, 0);
  if (kept) kept->clear();
  if (round.intervals.size() == 1) {
    // The common case (one interval: the first round, or a median's later rounds).
    const uint64_t lo = round.intervals[0].lo;
    const uint64_t span = round.intervals[0].hi - lo;
    const uint64_t w = bucketWidth(round.intervals[0], k);
    // Over a federation every width is a power of two (2^64 / 4096^r): a shift, not a 64-bit
    // division per key (which cost ~10 ms per million keys).
    if (std::has_single_bit(w) && kept == nullptr) {
      countKeysByShift(keys, lo, span, std::countr_zero(w), k, counts);
      return counts;
    }
    auto count = [&](auto bucketOf) {
      for (uint64_t key : keys) {
        const uint64_t off = key - lo;  // wraps for key < lo: then off > span
        if (off <= span) {
          ++counts[bucketOf(off)];
          if (kept) kept->push_back(key);
        }
      }
    };
    if (std::has_single_bit(w)) {
      const int shift = std::countr_zero(w);
      count([shift](uint64_t off) { return off >> shift; });
    } else {
      count([w](uint64_t off) { return off / w; });
    }
    return counts;
  }
  std::vector<uint64_t> widths;
  std::vector<int> shifts;  // -1: divide
  for (const auto& iv : round.intervals) {
    widths.push_back(bucketWidth(iv, k));
    shifts.push_back(std::has_single_bit(widths.back()) ? std::countr_zero(widths.back()) : -1);
  }
  for (uint64_t key : keys) {
    for (size_t i = 0; i < round.intervals.size(); ++i) {
      const uint64_t off = key - round.intervals[i].lo;
      if (off <= round.intervals[i].hi - round.intervals[i].lo) {
        ++counts[i * k + (shifts[i] >= 0 ? off >> shifts[i] : off / widths[i])];
        if (kept) kept->push_back(key);
        break;
      }
    }
  }
  return counts;
}

Result<std::vector<uint64_t>> QuantileSite::count(const SelectRound& round) {
  // Later rounds ask only inside these intervals: the other keys are never counted again.
  std::vector<uint64_t> kept;
  TM_ASSIGN_OR_RETURN(std::vector<uint64_t> counts, countKeys(keys_, round, &kept));
  keys_ = std::move(kept);
  return counts;
}

Status checkProbabilities(const std::vector<double>& probs) {
  if (probs.empty()) return Status::invalidArgument("quantile: give at least one probability");
  if (probs.size() > 100)
    return Status::invalidArgument("quantile: at most 100 probabilities, got " +
                                   std::to_string(probs.size()));
  for (double p : probs)
    if (!std::isfinite(p) || p < 0 || p > 1)
      return Status::invalidArgument("quantile: probability " + numberText(p) +
                                     " is outside [0, 1] (write 0.25 for the 25% quantile)");
  return Status::ok();
}

std::optional<double> type7(const std::vector<double>& sorted, double p) {
  const size_t n = sorted.size();
  if (n == 0) return std::nullopt;
  // R: index <- 1 + max(n - 1, 0) * probs; lo <- floor(index); hi <- ceiling(index)
  const double index = 1 + static_cast<double>(n - 1) * p;
  const double lo = std::floor(index), hi = std::ceil(index);
  double qs = sorted[static_cast<size_t>(lo) - 1];
  const double xhi = sorted[static_cast<size_t>(hi) - 1];
  if (index > lo && xhi != qs) {
    const double h = index - lo;
    qs = (1 - h) * qs + h * xhi;
  }
  return qs;
}

namespace {

constexpr double kPowersOfTen[kDecimalTests] = {1, 10, 100, 1e3, 1e4, 1e5, 1e6};

// The key of the only q-place decimal (see decimalPlaces) among the doubles with keys in
// [lo, hi], if there is exactly one (a bucket of a select whose values are all q-place
// decimals then holds only that value); nullopt for none, several, or bounds too large to
// tell.
std::optional<uint64_t> onlyDecimalValue(uint64_t lo, uint64_t hi, size_t q) {
  const double a = realOfKey(lo), b = realOfKey(hi);
  const double scale = kPowersOfTen[q];
  if (!(std::fabs(a) * scale < 0x1p52) || !(std::fabs(b) * scale < 0x1p52)) return std::nullopt;
  // The q-place decimals k / 10^q rise with k; one ulp of rounding moves k by at most 1.
  const double first = std::floor(a * scale) - 1, last = std::ceil(b * scale) + 1;
  if (last - first > 8) return std::nullopt;  // a wide bucket holds several
  std::optional<uint64_t> found;
  for (double k = first; k <= last; ++k) {
    const double v = k / scale;
    if (!(v >= a && v <= b)) continue;
    const uint64_t key = quantileKey(v);
    if (found && *found != key) return std::nullopt;
    found = key;
  }
  return found;
}

}  // namespace

size_t decimalPlaces(double v) {
  if (std::nearbyint(v) == v) return 0;  // whole (also +-inf, and every double from 2^52 up)
  auto is = [v](size_t q) {
    const double scale = kPowersOfTen[q];
    return std::nearbyint(v * scale) / scale == v;
  };
  // A value with more places than the last test fails it, and so every test: one division
  // for most values of a continuous variable.
  if (!is(kDecimalTests - 1)) return kDecimalTests;
  for (size_t q = 1; q + 1 < kDecimalTests; ++q)
    if (is(q)) return q;
  return kDecimalTests - 1;
}

Result<QuantileResult> federatedQuantile(const std::vector<double>& probs, KeyKind kind,
                                         const BucketCounter& counter, KeyInterval range,
                                         uint32_t buckets, uint64_t minCount) {
  TM_RETURN_IF_ERROR(checkProbabilities(probs));
  if (range.lo > range.hi) return Status::invalidArgument("quantile: empty key range");
  if (buckets < 2 || buckets > 65536)
    return Status::invalidArgument("quantile: buckets must be in [2, 65536]");
  QuantileResult out;
  out.probs = probs;

  // Every value has this many decimal places (the first round's pooled count of the others
  // is 0); nullopt: unknown, or some value has more.
  std::optional<size_t> places;
  // Runs one round over `intervals` and returns the counts by interval.
  auto runRound = [&](const std::vector<KeyInterval>& intervals)
      -> Result<std::map<uint64_t, std::vector<uint64_t>>> {
    SelectRound round{intervals, buckets};
    ++out.rounds;
    Result<RoundCounts> answer = counter(round);
    if (!answer.isOk()) return answer.status().withContext("round " + std::to_string(out.rounds));
    const std::vector<uint64_t>& counts = answer->buckets;
    if (counts.size() != intervals.size() * buckets)
      return Status::invalidArgument("quantile round " + std::to_string(out.rounds) + ": " +
                                     std::to_string(counts.size()) + " counts for " +
                                     std::to_string(intervals.size() * buckets) + " buckets");
    if (out.rounds == 1 && kind == KeyKind::kReal)
      for (size_t q = 0; q < answer->notDecimal.size() && q < kDecimalTests && !places; ++q)
        if (answer->notDecimal[q] == 0) places = q;
    std::map<uint64_t, std::vector<uint64_t>> byLo;
    for (size_t i = 0; i < intervals.size(); ++i)
      byLo[intervals[i].lo].assign(counts.begin() + i * buckets,
                                   counts.begin() + (i + 1) * buckets);
    return byLo;
  };

  TM_ASSIGN_OR_RETURN(auto first, runRound({range}));
  for (uint64_t c : first.begin()->second) out.n += c;
  if (out.n > 0 && out.n < minCount)
    return Status::permissionDenied("quantile: fewer non-missing rows than the minimum cell size " +
                                    std::to_string(minCount) + " of the approval");
  if (out.n == 0) {
    out.values.assign(probs.size(), std::nullopt);
    return out;
  }

  // The order statistics type 7 needs: floor and ceiling of 1 + (n - 1) p.
  std::vector<Target> targets;
  std::map<uint64_t, size_t> targetOfRank;
  auto want = [&](uint64_t rank) {
    if (targetOfRank.count(rank) == 0) {
      targetOfRank[rank] = targets.size();
      targets.push_back({rank, range, 0, false});
    }
  };
  for (double p : probs) {
    const double index = 1 + static_cast<double>(out.n - 1) * p;
    want(static_cast<uint64_t>(std::floor(index)));
    want(static_cast<uint64_t>(std::ceil(index)));
  }

  std::map<uint64_t, std::vector<uint64_t>> counts = std::move(first);
  std::map<uint64_t, uint64_t> expected;  // interval lo -> keys the previous round put in it
  expected[range.lo] = out.n;
  for (;;) {
    std::vector<KeyInterval> next;
    std::map<uint64_t, uint64_t> nextExpected;
    for (Target& t : targets) {
      if (t.resolved) continue;
      const std::vector<uint64_t>& c = counts.at(t.interval.lo);
      uint64_t total = 0;
      for (uint64_t v : c) total += v;
      if (total != expected.at(t.interval.lo))
        return Status::invalidArgument(
            "quantile round " + std::to_string(out.rounds) +
            ": the counts do not add up to the previous round's (did a site's data change "
            "during the query?)");
      const uint64_t w = bucketWidth(t.interval, buckets);
      uint64_t cum = t.below;
      size_t b = 0;
      while (b < c.size() && cum + c[b] < t.rank) cum += c[b++];
      if (b == c.size())
        return Status::invalidArgument("quantile round " + std::to_string(out.rounds) +
                                       ": fewer keys than the rank asked for");
      const uint64_t lo = t.interval.lo + b * w;
      const uint64_t hi = (t.interval.hi - lo) < w ? t.interval.hi : lo + (w - 1);
      t.interval = {lo, hi};
      t.below = cum;
      if (lo == hi) {
        t.resolved = true;
      } else if (std::optional<uint64_t> only =
                     places ? onlyDecimalValue(lo, hi, *places) : std::nullopt) {
        t.interval = {*only, *only};  // the bucket's one value with that many decimal places
        t.resolved = true;
      } else if (nextExpected.count(lo) == 0) {
        nextExpected[lo] = c[b];
        next.push_back(t.interval);
      }
    }
    if (next.empty()) break;
    expected = std::move(nextExpected);
    TM_ASSIGN_OR_RETURN(counts, runRound(next));
  }

  auto valueOfRank = [&](uint64_t rank) {
    const uint64_t key = targets[targetOfRank.at(rank)].interval.lo;
    return kind == KeyKind::kInteger ? static_cast<double>(integerOfKey(key)) : realOfKey(key);
  };
  for (double p : probs) {
    // Exactly R's arithmetic (type7 above), on the two order statistics found.
    const double index = 1 + static_cast<double>(out.n - 1) * p;
    const double lo = std::floor(index), hi = std::ceil(index);
    double qs = valueOfRank(static_cast<uint64_t>(lo));
    const double xhi = valueOfRank(static_cast<uint64_t>(hi));
    if (index > lo && xhi != qs) {
      const double h = index - lo;
      qs = (1 - h) * qs + h * xhi;
    }
    out.values.push_back(qs);
  }
  return out;
}

std::string quantileLabel(double p) {
  // formatC(x, format = "fg", digits = 7): 7 significant digits, fixed notation, no trailing
  // zeros.
  const double x = 100 * p;
  char buf[64];
  if (x == 0) return "0%";
  const int exponent = static_cast<int>(std::floor(std::log10(std::fabs(x))));
  const int decimals = std::max(0, 6 - exponent);
  std::snprintf(buf, sizeof buf, "%.*f", decimals, x);
  std::string s = buf;
  if (s.find('.') != std::string::npos) {
    while (s.back() == '0') s.pop_back();
    if (s.back() == '.') s.pop_back();
  }
  return s + "%";
}

}  // namespace trialmesh::query

// --- the site side over a store ------------------------------------------------------------

#include "query/engine.h"
#include "query/model_kernel.h"
#include "query/plan.h"

namespace trialmesh::query {

Result<SiteKeys> siteQuantileKeys(const storage::ColumnSource& source, const std::string& variable,
                                  const std::optional<Filter>& where) {
  Query q;
  Aggregate count;
  count.fn = AggFn::kCount;
  count.var = variable;
  q.select.push_back(count);
  q.where = where;
  TM_ASSIGN_OR_RETURN(BoundQuery bound, bindQuery(q, source.dictionary()));
  const size_t var = *source.dictionary().find(variable);
  const storage::Variable& v = source.dictionary().variables()[var];
  SiteKeys out;
  if (v.type == storage::VariableType::kInteger) {
    out.kind = KeyKind::kInteger;
    if (v.min && v.max)
      out.range = {quantileKey(static_cast<int64_t>(*v.min)),
                   quantileKey(static_cast<int64_t>(*v.max))};
  } else if (v.type != storage::VariableType::kReal) {
    return Status::invalidArgument("quantile needs an integer or real variable; '" + variable +
                                   "' is " + storage::variableTypeName(v.type));
  }
  for (uint32_t c = 0; c < source.chunkCount(); ++c) {
    const uint32_t rows = static_cast<uint32_t>(std::min<uint64_t>(
        storage::kChunkRows, source.rowCount() - uint64_t{c} * storage::kChunkRows));
    TM_ASSIGN_OR_RETURN(std::vector<uint8_t> sel,
                        detail::selectChunk(bound.plan(), source, c, rows));
    TM_ASSIGN_OR_RETURN(auto chunk, source.column(var, c));
    for (uint32_t r = 0; r < rows; ++r) {
      if (!sel[r] || chunk->isMissing(r)) continue;
      const double x = chunk->valueAsDouble(r);
      if (out.kind == KeyKind::kInteger)
        out.keys.push_back(quantileKey(static_cast<int64_t>(x)));
      else if (!std::isnan(x))
        out.keys.push_back(quantileKey(x));
    }
  }
  return out;
}

Result<QuantileResult> localQuantile(const storage::ColumnSource& source,
                                     const std::string& variable,
                                     const std::optional<Filter>& where,
                                     const std::vector<double>& probs, uint64_t minCount) {
  TM_RETURN_IF_ERROR(checkProbabilities(probs));
  TM_ASSIGN_OR_RETURN(SiteKeys keys, siteQuantileKeys(source, variable, where));
  const KeyKind kind = keys.kind;
  const KeyInterval range = keys.range;
  QuantileSite site(std::move(keys.keys));
  BucketCounter counter = [&](const SelectRound& round) -> Result<RoundCounts> {
    TM_ASSIGN_OR_RETURN(std::vector<uint64_t> counts, site.count(round));
    return RoundCounts{std::move(counts), {}};
  };
  Result<QuantileResult> q = federatedQuantile(probs, kind, counter, range, 4096, minCount);
  if (!q.isOk()) return q.status().withContext("quantile(" + variable + ")");
  return q;
}

}  // namespace trialmesh::query

// --- output ----------------------------------------------------------------------------------

#include <nlohmann/json.hpp>

#include "stats/format.h"

namespace trialmesh::query {

std::string formatQuantile(const QuantileResult& result) {
  std::vector<double> values;
  for (const auto& v : result.values) values.push_back(v ? *v : NAN);
  std::vector<std::string> text = stats::formatNumbers(values, 7);
  std::vector<std::string> names;
  size_t width = 0;
  for (size_t i = 0; i < result.probs.size(); ++i) {
    names.push_back(quantileLabel(result.probs[i]));
    if (!result.values[i]) text[i] = "NA";
    width = std::max({width, names[i].size(), text[i].size()});
  }
  // print.default of a named vector: every field the common width, as many per line as fit in
  // 80 columns, names line over values line.
  const size_t perLine = std::max<size_t>(1, 80 / (width + 1));
  auto pad = [&](const std::string& s) { return std::string(width - s.size(), ' ') + s + " "; };
  std::string out;
  for (size_t start = 0; start < names.size(); start += perLine) {
    const size_t end = std::min(names.size(), start + perLine);
    for (size_t i = start; i < end; ++i) out += pad(names[i]);
    out += "\n";
    for (size_t i = start; i < end; ++i) out += pad(text[i]);
    out += "\n";
  }
  return out + "n = " + std::to_string(result.n) + "\n";
}

std::string quantileJson(const QuantileResult& result, const std::string& variable) {
  // ordered_json: the documented key order (docs/json-output.md).
  using Json = nlohmann::ordered_json;
  Json rows = Json::array();
  for (size_t i = 0; i < result.probs.size(); ++i)
    rows.push_back({{"p", result.probs[i]},
                    {"name", quantileLabel(result.probs[i])},
                    {"quantile", result.values[i] ? Json(*result.values[i]) : Json(nullptr)}});
  Json j = {{"statistic", "quantile"}, {"variable", variable}, {"n", result.n}, {"rows", rows}};
  return j.dump();
}

std::string quantileCsv(const QuantileResult& result) {
  std::string out = "p,name,quantile,n\n";
  for (size_t i = 0; i < result.probs.size(); ++i)
    out += numberText(result.probs[i]) + "," + quantileLabel(result.probs[i]) + "," +
           (result.values[i] ? numberText(*result.values[i]) : std::string("NA")) + "," +
           std::to_string(result.n) + "\n";
  return out;
}

}  // namespace trialmesh::query
