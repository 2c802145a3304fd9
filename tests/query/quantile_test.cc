// The count-only select of query/quantile.h against R's type-7 formula applied to the pooled
// sorted values (quantile.h type7, itself checked against Rscript in quantile_r_test.cc).
#include "query/quantile.h"

#include "query/disclosure.h"
#include "query/quantile_query.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "query_test_util.h"

namespace trialmesh::query {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// Splits `values` round-robin over `sites` sites and returns a counter summing their counts
// and, with `reportDecimals`, the pooled counts of values that are not q-place decimals (as
// sites report them over a federation).
struct Federation {
  std::vector<QuantileSite> sites;
  std::vector<uint64_t> notDecimal;
  BucketCounter counter() {
    return [this](const SelectRound& round) -> Result<RoundCounts> {
      std::vector<uint64_t> total;
      for (auto& s : sites) {
        TM_ASSIGN_OR_RETURN(std::vector<uint64_t> c, s.count(round));
        if (total.empty()) total.assign(c.size(), 0);
        for (size_t i = 0; i < c.size(); ++i) total[i] += c[i];
      }
      return RoundCounts{std::move(total), notDecimal};
    };
  }
};

Federation realFederation(const std::vector<double>& values, size_t sites,
                          bool reportDecimals = false) {
  std::vector<std::vector<uint64_t>> keys(sites);
  std::vector<uint64_t> notDecimal(kDecimalTests, 0);
  for (size_t i = 0; i < values.size(); ++i) {
    if (std::isnan(values[i])) continue;
    keys[i % sites].push_back(quantileKey(values[i]));
    for (size_t q = 0; q < kDecimalTests; ++q) notDecimal[q] += decimalPlaces(values[i]) > q;
  }
  Federation f;
  for (auto& k : keys) f.sites.emplace_back(std::move(k));
  if (reportDecimals) f.notDecimal = std::move(notDecimal);
  return f;
}

bool sameBits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

// The select against type7 on the pooled sorted non-missing values, for every p.
void expectLikeR(const std::vector<double>& values, const std::vector<double>& probs,
                 size_t sites = 3) {
  std::vector<double> sorted;
  for (double v : values)
    if (!std::isnan(v)) sorted.push_back(v == 0 ? 0.0 : v);
  std::sort(sorted.begin(), sorted.end());
  // Without and with the counts of values that are not q-place decimals (which let the select
  // stop early when one is 0): the same bits either way.
  for (bool reportDecimals : {false, true}) {
    SCOPED_TRACE(reportDecimals ? "decimal counts reported" : "no decimal counts");
    Federation f = realFederation(values, sites, reportDecimals);
    Result<QuantileResult> q = federatedQuantile(probs, KeyKind::kReal, f.counter());
    ASSERT_TRUE(q.isOk()) << q.status().toString();
    EXPECT_EQ(q->n, sorted.size());
    EXPECT_LE(q->rounds, 6u);
    ASSERT_EQ(q->values.size(), probs.size());
    for (size_t i = 0; i < probs.size(); ++i) {
      std::optional<double> want = type7(sorted, probs[i]);
      ASSERT_EQ(q->values[i].has_value(), want.has_value()) << "p = " << probs[i];
      if (want) {
        EXPECT_TRUE(sameBits(*q->values[i], *want))
            << "p = " << probs[i] << ": " << *q->values[i] << " vs " << *want;
      }
    }
  }
}

TEST(QuantileKey, RealOrderIsNumericOrder) {
  const double d = std::numeric_limits<double>::denorm_min();
  const double big = std::numeric_limits<double>::max();
  std::vector<double> v = {-kInf, -big,   -1e300, -1.5, -1,    -1e-300, -d,  0.0,
                           d,     1e-300, 1,      1.5,  1e300, big,     kInf};
  for (size_t i = 1; i < v.size(); ++i)
    EXPECT_LT(quantileKey(v[i - 1]), quantileKey(v[i])) << v[i - 1] << " < " << v[i];
  for (double x : v) EXPECT_TRUE(sameBits(realOfKey(quantileKey(x)), x)) << x;
  // -0.0 is 0.0: one key, and it maps back to +0.0.
  EXPECT_EQ(quantileKey(-0.0), quantileKey(0.0));
  EXPECT_TRUE(sameBits(realOfKey(quantileKey(-0.0)), 0.0));
}

TEST(QuantileKey, IntegerOrderIsNumericOrder) {
  std::vector<int64_t> v = {std::numeric_limits<int64_t>::min(), -1000000, -1, 0, 1, 42,
                            std::numeric_limits<int64_t>::max()};
  for (size_t i = 1; i < v.size(); ++i) EXPECT_LT(quantileKey(v[i - 1]), quantileKey(v[i]));
  for (int64_t x : v) EXPECT_EQ(integerOfKey(quantileKey(x)), x);
}

TEST(QuantileSelect, SmallAndEdgeCases) {
  const std::vector<double> probs = {0, 0.1, 0.25, 0.5, 0.75, 0.9, 1, 1.0 / 3};
  expectLikeR({42}, probs);                              // n = 1
  expectLikeR({2, 1}, probs);                            // n = 2
  expectLikeR({3, 3, 3, 3, 3}, probs);                   // all equal
  expectLikeR({1, 2, 2, 2, 3, 3, 9}, probs);             // ties
  expectLikeR({-5.5, -0.0, 0.0, 2.25, -1e-310}, probs);  // negatives, -0.0, subnormal
  expectLikeR({1e308, -1e308, 1e-308, 5e-324, -kInf, kInf, 7}, probs);
  expectLikeR({NAN, 4, NAN, 1, 2}, probs);  // missing values are skipped
}

TEST(QuantileSelect, NoValuesIsNA) {
  Federation f = realFederation({NAN, NAN}, 2);
  Result<QuantileResult> q = federatedQuantile({0.5, 0.9}, KeyKind::kReal, f.counter());
  ASSERT_TRUE(q.isOk());
  EXPECT_EQ(q->n, 0u);
  EXPECT_EQ(q->rounds, 1u);
  ASSERT_EQ(q->values.size(), 2u);
  EXPECT_FALSE(q->values[0].has_value());
  EXPECT_FALSE(q->values[1].has_value());
}

TEST(QuantileSelect, RandomDataManySites) {
  std::mt19937_64 rng(11);
  std::normal_distribution<double> normal(50, 20);
  std::uniform_int_distribution<int> smallInt(-3, 3);
  for (int trial = 0; trial < 30; ++trial) {
    const size_t n = 1 + rng() % 3000;
    std::vector<double> v(n);
    for (auto& x : v) x = trial % 2 ? normal(rng) : smallInt(rng);
    if (trial % 3 == 0) v[rng() % n] = NAN;
    std::vector<double> probs = {0, 0.025, 0.25, 0.5, 0.75, 0.975, 1};
    for (int i = 0; i < 5; ++i) probs.push_back(std::uniform_real_distribution<double>(0, 1)(rng));
    expectLikeR(v, probs, 1 + trial % 10);
  }
}

TEST(QuantileSelect, IntegersInDeclaredRangeTakeFewRounds) {
  std::vector<uint64_t> a, b;
  std::vector<double> sorted;
  for (int64_t x = -20; x <= 120; x += 3) {
    (x % 2 ? a : b).push_back(quantileKey(x));
    sorted.push_back(static_cast<double>(x));
  }
  Federation f;
  f.sites.emplace_back(std::move(a));
  f.sites.emplace_back(std::move(b));
  const KeyInterval range{quantileKey(int64_t{-100}), quantileKey(int64_t{200})};
  Result<QuantileResult> q =
      federatedQuantile({0.1, 0.5, 0.9}, KeyKind::kInteger, f.counter(), range);
  ASSERT_TRUE(q.isOk()) << q.status().toString();
  EXPECT_EQ(q->rounds, 1u);  // 301 keys fit in one round's 4096 buckets
  EXPECT_EQ(q->values[0], type7(sorted, 0.1));
  EXPECT_EQ(q->values[1], type7(sorted, 0.5));
  EXPECT_EQ(q->values[2], type7(sorted, 0.9));
  // Over the full 64-bit range an integer takes at most six rounds too.
  std::vector<uint64_t> c;
  for (double x : sorted) c.push_back(quantileKey(static_cast<int64_t>(x)));
  Federation g;
  g.sites.emplace_back(std::move(c));
  q = federatedQuantile({0.5}, KeyKind::kInteger, g.counter());
  ASSERT_TRUE(q.isOk());
  EXPECT_LE(q->rounds, 6u);
  EXPECT_EQ(q->values[0], type7(sorted, 0.5));
}

TEST(QuantileSelect, DecimalPlaces) {
  EXPECT_EQ(decimalPlaces(40), 0u);
  EXPECT_EQ(decimalPlaces(-3), 0u);
  EXPECT_EQ(decimalPlaces(0.0), 0u);
  EXPECT_EQ(decimalPlaces(-0.0), 0u);
  EXPECT_EQ(decimalPlaces(kInf), 0u);
  EXPECT_EQ(decimalPlaces(1e300), 0u);
  EXPECT_EQ(decimalPlaces(23.4), 1u);
  EXPECT_EQ(decimalPlaces(-0.1), 1u);
  EXPECT_EQ(decimalPlaces(0.3), 1u);  // the double nearest 3/10, not 0.1 + 0.2
  EXPECT_EQ(decimalPlaces(0.1 + 0.2), kDecimalTests);
  EXPECT_EQ(decimalPlaces(5.25), 2u);
  EXPECT_EQ(decimalPlaces(1.234567), 6u);
  EXPECT_EQ(decimalPlaces(1.2345678), kDecimalTests);
  EXPECT_EQ(decimalPlaces(1.0 / 3), kDecimalTests);
  EXPECT_EQ(decimalPlaces(5e-324), kDecimalTests);
  // Every k / 10^q is a q-place decimal (or one with fewer places).
  std::mt19937_64 rng(3);
  const double scales[] = {1, 10, 100, 1e3, 1e4, 1e5, 1e6};
  for (int i = 0; i < 100000; ++i) {
    const size_t q = rng() % kDecimalTests;
    const auto k = static_cast<double>(static_cast<int64_t>(rng() % 2000000000) - 1000000000);
    EXPECT_LE(decimalPlaces(k / scales[q]), q) << k << " / 10^" << q;
  }
}

TEST(QuantileSelect, FewDecimalPlacesStopAtTheirBucket) {
  // Ages 18..95 over three sites keyed as doubles: the first round finds the exponent band, the
  // second a bucket holding one whole number, which (no value having decimals) is the value.
  std::mt19937_64 rng(5);
  std::vector<double> ages;
  for (int i = 0; i < 5000; ++i) ages.push_back(static_cast<double>(18 + rng() % 78));
  ages.push_back(-3);
  ages.push_back(0);
  const std::vector<double> probs = {0, 0.1, 0.25, 0.5, 0.75, 0.9, 1, 1.0 / 3};
  auto expectRounds = [&](const std::vector<double>& values, const std::vector<double>& p,
                          bool reportDecimals, uint32_t rounds) {
    std::vector<double> sorted = values;
    std::sort(sorted.begin(), sorted.end());
    Federation f = realFederation(values, 3, reportDecimals);
    Result<QuantileResult> q = federatedQuantile(p, KeyKind::kReal, f.counter());
    ASSERT_TRUE(q.isOk()) << q.status().toString();
    EXPECT_EQ(q->rounds, rounds);
    for (size_t i = 0; i < p.size(); ++i)
      EXPECT_TRUE(sameBits(*q->values[i], *type7(sorted, p[i]))) << p[i];
  };
  expectRounds(ages, probs, true, 2);
  expectRounds(ages, probs, false, 6);  // without the counts: a key at a time

  // BMI to one decimal and lab values to two: 2 and 3 rounds.
  std::vector<double> bmi, lab, big;
  for (int i = 0; i < 4000; ++i) {
    bmi.push_back(static_cast<double>(150 + rng() % 250) / 10);
    lab.push_back(static_cast<double>(rng() % 20000) / 100);
    big.push_back(static_cast<double>(rng() % 1000000));
  }
  expectRounds(bmi, probs, true, 2);
  expectRounds(lab, probs, true, 3);
  expectRounds(big, {0.5, 0.9}, true, 3);  // whole numbers up to a million: one round more

  // One value with more places anywhere: the select falls back to fewer shortcuts, still exact.
  ages.push_back(40.5);
  expectRounds(ages, probs, true, 2);  // 40.5 has one place, and so has every age
  bmi.push_back(22.123456789);
  std::vector<double> sorted = bmi;
  std::sort(sorted.begin(), sorted.end());
  Federation f = realFederation(bmi, 3, true);
  Result<QuantileResult> q = federatedQuantile(probs, KeyKind::kReal, f.counter());
  ASSERT_TRUE(q.isOk());
  EXPECT_GT(q->rounds, 3u);
  for (size_t i = 0; i < probs.size(); ++i)
    EXPECT_TRUE(sameBits(*q->values[i], *type7(sorted, probs[i]))) << probs[i];
}

TEST(QuantileSelect, CountKeysEqualsNaiveForEveryWidth) {
  // Power-of-two widths take a shift, others a division: both against a plain count.
  std::mt19937_64 rng(9);
  std::vector<uint64_t> keys(5003);  // not a multiple of the counter lanes
  for (auto& k : keys) k = rng() % 3 == 0 ? rng() : 1000 + rng() % 100000;
  for (uint32_t buckets : {2u, 7u, 4096u, 65536u}) {
    for (const std::vector<KeyInterval>& intervals :
         std::vector<std::vector<KeyInterval>>{{{0, UINT64_MAX}},
                                               {{1000, 1000 + (uint64_t{1} << 16) - 1}},
                                               {{1000, 101000}},
                                               {{1000, 5000}, {7000, 7000 + 8191}, {9000, 9999}}}) {
      const SelectRound round{intervals, buckets};
      std::vector<uint64_t> kept;
      auto got = countKeys(keys, round, &kept);
      ASSERT_TRUE(got.isOk());
      std::vector<uint64_t> want(intervals.size() * buckets, 0);
      size_t inside = 0;
      for (uint64_t key : keys)
        for (size_t i = 0; i < intervals.size(); ++i)
          if (key >= intervals[i].lo && key <= intervals[i].hi) {
            ++want[i * buckets + (key - intervals[i].lo) / bucketWidth(intervals[i], buckets)];
            ++inside;
            break;
          }
      EXPECT_EQ(*got, want) << buckets << " buckets, " << intervals.size() << " intervals";
      EXPECT_EQ(kept.size(), inside);
      // A node counts without keeping candidates (query/engine.cc): its own code path.
      auto counted = countKeys(keys, round);
      ASSERT_TRUE(counted.isOk());
      EXPECT_EQ(*counted, want) << buckets << " buckets, " << intervals.size() << " intervals";
    }
  }
}

TEST(QuantileSelect, SitesNarrowTheirCandidates) {
  std::vector<double> v;
  for (int i = 0; i < 10000; ++i) v.push_back(i * 0.37 - 100);
  Federation f = realFederation(v, 1);
  Result<QuantileResult> q = federatedQuantile({0.5}, KeyKind::kReal, f.counter());
  ASSERT_TRUE(q.isOk());
  EXPECT_LT(f.sites[0].candidates(), 10u);  // only the rows in the last buckets are kept
}

TEST(QuantileSelect, BadInputsAndInconsistentCounts) {
  Federation f = realFederation({1, 2, 3}, 1);
  EXPECT_EQ(federatedQuantile({}, KeyKind::kReal, f.counter()).status().code(),
            StatusCode::kInvalidArgument);
  Result<QuantileResult> bad = federatedQuantile({1.5}, KeyKind::kReal, f.counter());
  EXPECT_NE(bad.status().message().find("outside [0, 1]"), std::string::npos);
  EXPECT_FALSE(federatedQuantile({NAN}, KeyKind::kReal, f.counter()).isOk());
  // A counter whose data changes between rounds is caught, not answered wrongly.
  int calls = 0;
  BucketCounter drifting = [&](const SelectRound& r) -> Result<RoundCounts> {
    std::vector<uint64_t> c(r.intervals.size() * r.buckets, 0);
    c[c.size() / 2] = ++calls == 1 ? 5 : 3;
    return RoundCounts{c, {}};
  };
  Result<QuantileResult> q = federatedQuantile({0.5}, KeyKind::kReal, drifting);
  EXPECT_EQ(q.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(q.status().message().find("do not add up"), std::string::npos);
  BucketCounter failing = [](const SelectRound&) -> Result<RoundCounts> {
    return Status::unavailable("site b did not answer");
  };
  q = federatedQuantile({0.5}, KeyKind::kReal, failing);
  EXPECT_EQ(q.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(q.status().message().find("round 1: site b"), std::string::npos);
  QuantileSite s({1});
  EXPECT_FALSE(s.count({{}, 4096}).isOk());
  EXPECT_FALSE(s.count({{{5, 4}}, 4096}).isOk());
  EXPECT_FALSE(s.count({{{0, 4}}, 1}).isOk());
}

TEST(QuantileLabel, LikeRNames) {
  EXPECT_EQ(quantileLabel(0), "0%");
  EXPECT_EQ(quantileLabel(0.25), "25%");
  EXPECT_EQ(quantileLabel(1), "100%");
  EXPECT_EQ(quantileLabel(0.025), "2.5%");
  EXPECT_EQ(quantileLabel(0.1), "10%");
  EXPECT_EQ(quantileLabel(1.0 / 3), "33.33333%");
  EXPECT_EQ(quantileLabel(0.00001), "0.001%");
}

}  // namespace
}  // namespace trialmesh::query

// --- over a store, with a filter ------------------------------------------------------------

namespace trialmesh::query {
namespace {

TEST(LocalQuantile, FilteredStoreEqualsTypeSevenOnTheKeptRows) {
  using namespace testing;
  const Dictionary dict = studyDictionary();
  const std::vector<Row> rows = randomRows(5000, 3);
  auto table = makeTable(dict, rows);
  Result<Query> q = parseQuery("count where arm = \"A\" and sex = \"F\"");
  ASSERT_TRUE(q.isOk());
  const std::vector<double> probs = {0, 0.1, 0.5, 0.9, 1};
  for (size_t var : {size_t{kAge}, size_t{kBmi}}) {
    const std::string name = dict.variables()[var].name;
    std::vector<double> kept;
    for (const Row& r : rows)
      if (r[kArm].i == 0 && r[kSex].i == 0 && !r[var].missing)
        kept.push_back(cellValue(dict, var, r[var]));
    std::sort(kept.begin(), kept.end());
    Result<QuantileResult> got = localQuantile(*table, name, q->where, probs);
    ASSERT_TRUE(got.isOk()) << got.status().toString();
    EXPECT_EQ(got->n, kept.size());
    for (size_t i = 0; i < probs.size(); ++i) EXPECT_EQ(got->values[i], type7(kept, probs[i]));
    if (var == kAge) {
      EXPECT_EQ(got->rounds, 1u);  // declared 0..120: one round of 4096 buckets
    }
  }
  // The approval's minimum cell size applies to n; a categorical variable is refused.
  Result<QuantileResult> small = localQuantile(*table, "age", q->where, {0.5}, 100000);
  EXPECT_EQ(small.status().code(), StatusCode::kPermissionDenied);
  EXPECT_NE(small.status().message().find("minimum cell size"), std::string::npos);
  Result<QuantileResult> cat = localQuantile(*table, "sex", std::nullopt, {0.5});
  EXPECT_EQ(cat.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(cat.status().message().find("integer or real"), std::string::npos);
  EXPECT_FALSE(localQuantile(*table, "nosuch", std::nullopt, {0.5}).isOk());
  // Nobody is in arm C: n = 0 and NA.
  Result<Query> empty = parseQuery("count where arm = \"C\"");
  Result<QuantileResult> none = localQuantile(*table, "bmi", empty->where, {0.5});
  ASSERT_TRUE(none.isOk());
  EXPECT_EQ(none->n, 0u);
  EXPECT_FALSE(none->values[0].has_value());
}

}  // namespace
}  // namespace trialmesh::query

namespace trialmesh::query {
namespace {

// The quantile statement: every round an ordinary quantile_counts query run by the engine and
// merged; equal to type 7 on the kept rows, and refused when disclosure control withholds n.
TEST(QuantileQuery, RoundsOfCountsEqualTypeSevenOnTheKeptRows) {
  using namespace testing;
  const Dictionary dict = studyDictionary();
  const std::vector<Row> rows = randomRows(3000, 11);
  auto table = makeTable(dict, rows);
  for (const char* text : {"quantile(bmi, c(0.1, 0.5, 0.9)) where arm = \"A\"",
                           "median(age) where sex = \"F\"", "quantile(age)"}) {
    Result<Query> q = parseQuery(text);
    ASSERT_TRUE(q.isOk()) << q.status().toString();
    const Aggregate& a = q->select[0];
    const size_t var = *dict.find(a.var);
    std::vector<double> kept;
    for (const Row& r : rows) {
      const bool pass = !q->where || (q->where->var == "arm" ? r[kArm].i == 0 : r[kSex].i == 0);
      if (pass && !r[var].missing) kept.push_back(cellValue(dict, var, r[var]));
    }
    std::sort(kept.begin(), kept.end());
    Result<QuantileQueryResult> got = runQuantileQuery(*q, localRoundRunner(*table));
    ASSERT_TRUE(got.isOk()) << text << ": " << got.status().toString();
    EXPECT_EQ(got->result.n, kept.size()) << text;
    ASSERT_EQ(got->result.values.size(), a.probs.size());
    for (size_t i = 0; i < a.probs.size(); ++i)
      EXPECT_EQ(got->result.values[i], type7(kept, a.probs[i])) << text << " p=" << a.probs[i];
    // Each round is the statistic a site answers, with the query's filter.
    ASSERT_FALSE(got->roundQueries.empty());
    EXPECT_EQ(got->roundQueries[0].rfind("quantile_counts(", 0), 0u) << got->roundQueries[0];
    EXPECT_LE(got->roundQueries.size(), 6u);
    // Whole-number ages: the sites' count of values that are not whole (0) stops the select
    // at the round that finds each rank's one whole number.
    if (a.var == "age") {
      EXPECT_EQ(got->roundQueries.size(), 2u) << text;
    }
    // A site keeps the keys for the later rounds (ExecOptions::cacheKey): the same answer.
    ExecOptions cached;
    cached.cacheKey = "test@1";
    for (int pass = 0; pass < 2; ++pass) {
      Result<QuantileQueryResult> again = runQuantileQuery(*q, localRoundRunner(*table, cached));
      ASSERT_TRUE(again.isOk()) << again.status().toString();
      EXPECT_EQ(again->result.values, got->result.values) << text;
      EXPECT_EQ(again->roundQueries, got->roundQueries) << text;
    }
  }
  // A runner that releases like a coordinator: disclosure control on every round.
  DisclosurePolicy policy;
  policy.minCellSize = 100000;
  RoundRunner guarded = [&](const std::string& text) -> Result<RoundAnswer> {
    TM_ASSIGN_OR_RETURN(Query q, parseQuery(text));
    TM_ASSIGN_OR_RETURN(BoundQuery b, bindQuery(q, dict));
    TM_ASSIGN_OR_RETURN(PartialResult p, execute(b, *table));
    TM_ASSIGN_OR_RETURN(DisclosedResult d, finalizeWithDisclosureControl(p, b, policy));
    return RoundAnswer{p, d.table};
  };
  Result<QuantileQueryResult> small = runQuantileQuery(*parseQuery("median(age)"), guarded);
  EXPECT_EQ(small.status().code(), StatusCode::kPermissionDenied);
  EXPECT_NE(small.status().message().find("minimum cell size"), std::string::npos);
  // No rows: NA, like R's quantile of an empty vector with na.rm.
  Result<QuantileQueryResult> none =
      runQuantileQuery(*parseQuery("median(bmi) where arm = \"C\""), localRoundRunner(*table));
  ASSERT_TRUE(none.isOk()) << none.status().toString();
  EXPECT_EQ(none->result.n, 0u);
  EXPECT_FALSE(none->result.values[0].has_value());
  EXPECT_EQ(
      runQuantileQuery(*parseQuery("median(age) by arm"), localRoundRunner(*table)).status().code(),
      StatusCode::kInvalidArgument);
  // Output: R's layout, JSON in the documented key order.
  Result<QuantileQueryResult> r =
      runQuantileQuery(*parseQuery("quantile(age, c(0.25, 0.75))"), localRoundRunner(*table));
  ASSERT_TRUE(r.isOk());
  EXPECT_NE(formatQuantileQuery(*r).find("25%"), std::string::npos);
  EXPECT_EQ(quantileQueryJson(*r).rfind("{\"statistic\":\"quantile\",\"variable\":\"age\"", 0), 0u)
      << quantileQueryJson(*r);
}

TEST(QuantileOutput, RLayoutJsonCsv) {
  // R: print(quantile(c(1, 2, 3, 4, 10)))
  QuantileResult q{5, {0, 0.25, 0.5, 0.75, 1}, {1.0, 2.0, 3.0, 4.0, 10.0}, 1};
  EXPECT_EQ(formatQuantile(q), "  0%  25%  50%  75% 100% \n   1    2    3    4   10 \nn = 5\n");
  // R: print(quantile(c(1.5, 2, 3, 4, 1000.25), c(0.1, 1/3)))
  QuantileResult r{5, {0.1, 1.0 / 3}, {1.7, 2.3333333333333335}, 6};
  EXPECT_EQ(formatQuantile(r), "      10% 33.33333% \n 1.700000  2.333333 \nn = 5\n");
  QuantileResult none{0, {0.5}, {std::nullopt}, 1};
  EXPECT_EQ(formatQuantile(none), "50% \n NA \nn = 0\n");
  EXPECT_EQ(quantileJson(none, "bmi"), R"({"statistic":"quantile","variable":"bmi","n":0,)"
                                       R"("rows":[{"p":0.5,"name":"50%","quantile":null}]})");
  EXPECT_EQ(quantileCsv(r),
            "p,name,quantile,n\n0.1,10%,1.7,5\n"
            "0.3333333333333333,33.33333%,2.3333333333333335,5\n");
}

}  // namespace
}  // namespace trialmesh::query
