// The additive encoding: encode at every site, add the words modulo 2^128, decode; the result
// must equal query::mergeInto of the site partials (counts exactly, reals to the fixed-point
// precision of docs/privacy.md).
#include "query/additive.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "crypto/identity.h"
#include "crypto/mask.h"
#include "query/model_runner.h"
#include "query_test_util.h"

namespace trialmesh::query::testing {
namespace {

using Word = AdditiveWord;

struct Sites {
  std::vector<Row> rows;
  std::vector<std::unique_ptr<InMemoryTable>> tables;
};

Sites splitRows(const Dictionary& dict, size_t n, size_t sites, uint32_t seed) {
  Sites s;
  s.rows = randomRows(n, seed);
  std::vector<std::vector<Row>> parts(sites);
  std::mt19937 rng(seed + 1);
  for (const auto& r : s.rows) parts[rng() % sites].push_back(r);
  for (const auto& p : parts) s.tables.push_back(makeTable(dict, p));
  return s;
}

BoundQuery bound(const std::string& text, const Dictionary& dict) {
  auto q = parseQuery(text);
  EXPECT_TRUE(q.isOk()) << q.status().toString();
  auto b = bindQuery(*q, dict);
  EXPECT_TRUE(b.isOk()) << text << ": " << b.status().toString();
  return *b;
}

std::vector<Word> sumOf(const std::vector<std::vector<Word>>& vectors) {
  std::vector<Word> sum(vectors.at(0).size(), 0);
  for (const auto& v : vectors)
    for (size_t k = 0; k < v.size(); ++k) sum[k] += v[k];
  return sum;
}

// |got - want| <= rel * |want| + abs, element-wise.
::testing::AssertionResult close(const std::vector<double>& got, const std::vector<double>& want,
                                 double rel, double abs) {
  if (got.size() != want.size())
    return ::testing::AssertionFailure() << "length " << got.size() << " vs " << want.size();
  for (size_t i = 0; i < got.size(); ++i) {
    if (!(std::fabs(got[i] - want[i]) <= rel * std::fabs(want[i]) + abs))
      return ::testing::AssertionFailure()
             << "index " << i << ": got " << got[i] << ", want " << want[i];
  }
  return ::testing::AssertionSuccess();
}

// Counts, bins, integer sums and km exactly; real sums and means to 1e-12 relative plus the
// fixed-point quantum of every site; M2 to m2Rel relative (docs/privacy.md "Precision").
void expectDecodedEqualsMerged(const PartialResult& got, const PartialResult& want, size_t sites,
                               double m2Rel) {
  const double quantum = std::ldexp(1.0, -kFixedPointFractionBits) * static_cast<double>(sites);
  EXPECT_EQ(got.shape, want.shape);
  EXPECT_EQ(got.rowsScanned, want.rowsScanned);
  EXPECT_EQ(got.cellRows, want.cellRows);
  ASSERT_EQ(got.stats.size(), want.stats.size());
  for (size_t i = 0; i < got.stats.size(); ++i) {
    SCOPED_TRACE("statistic " + std::to_string(i));
    const StatPartial& g = got.stats[i];
    const StatPartial& w = want.stats[i];
    EXPECT_EQ(g.n, w.n);
    EXPECT_EQ(g.missing, w.missing);
    EXPECT_EQ(g.intSum, w.intSum);
    EXPECT_EQ(g.bins, w.bins);
    EXPECT_EQ(g.binCounts, w.binCounts);
    EXPECT_EQ(g.km, w.km);
    EXPECT_TRUE(g.min.empty() && g.max.empty());
    EXPECT_TRUE(close(g.sum, w.sum, 1e-12, quantum));
    EXPECT_TRUE(close(g.mean, w.mean, 1e-12, quantum));
    EXPECT_TRUE(close(g.m2, w.m2, m2Rel, quantum));
  }
}

struct Case {
  const char* text;
  AdditiveOptions options;
  // M2 and variances: 1e-11 relative; for data far from zero (1e9 + unit noise) a site's mean
  // is a double rounded at ulp(1e9), so, exactly as for the plain merge (query/partial.h), the
  // variance agrees to about 1e-9.
  double m2Rel = 1e-11;
};

std::vector<Case> cases() {
  std::vector<Case> out;
  out.push_back(
      {"count, count(bmi), sum(age), sum(bmi), sum(big), sum(lab), mean(bmi), "
       "var(bmi), sd(bmi), mean(age), var(visits) by arm, ecog",
       {}});
  out.push_back(
      {"count, mean(bmi), sd(age), var(visits), sum(big) where age >= 40 and sex = \"F\"", {}});
  out.push_back({"hist(bmi, 15, 35, 0.5) by smoker", {}});
  out.push_back({"hist(age, 0, 120, 10)", {}});
  AdditiveOptions km;
  km.kmTimeBin = 1;
  out.push_back({"km(os_days, death) by sex", km});
  out.push_back({"km(os_days, status) where status != 0 by arm", km});
  // Data far from zero needs a shift near its mean (docs/privacy.md "Precision").
  AdditiveOptions lab;
  lab.shifts["lab"] = 1e9;
  out.push_back({"count, mean(lab), var(lab) by sex", lab, 1e-9});
  return out;
}

TEST(Additive, SumOfSiteEncodingsDecodesToTheMergedPartial) {
  Dictionary dict = studyDictionary();
  for (size_t siteCount : {3u, 7u}) {
    Sites sites = splitRows(dict, 30000, siteCount, static_cast<uint32_t>(40 + siteCount));
    for (const Case& c : cases()) {
      SCOPED_TRACE(std::string(c.text) + " sites=" + std::to_string(siteCount));
      BoundQuery b = bound(c.text, dict);
      auto layout = AdditiveLayout::create(b, c.options);
      ASSERT_TRUE(layout.isOk()) << layout.status().toString();
      std::vector<std::vector<Word>> encoded;
      PartialResult merged;
      for (size_t s = 0; s < siteCount; ++s) {
        auto p = execute(b, *sites.tables[s], {});
        ASSERT_TRUE(p.isOk()) << p.status().toString();
        auto words = encodeAdditive(*p, *layout);
        ASSERT_TRUE(words.isOk()) << words.status().toString();
        EXPECT_EQ(words->size(), layout->words());
        encoded.push_back(std::move(words).value());
        if (s == 0) {
          merged = *p;
        } else {
          ASSERT_TRUE(mergeInto(merged, *p).isOk());
        }
      }
      auto decoded = decodeAdditive(sumOf(encoded), *layout, static_cast<uint32_t>(siteCount));
      ASSERT_TRUE(decoded.isOk()) << decoded.status().toString();
      expectDecodedEqualsMerged(*decoded, merged, siteCount, c.m2Rel);

      // The finalized table equals the finalized plain merge, and for cell queries also the
      // independent row-by-row reference on all rows.
      auto got = finalize(*decoded, b);
      ASSERT_TRUE(got.isOk()) << got.status().toString();
      auto want = finalize(merged, b);
      ASSERT_TRUE(want.isOk());
      ASSERT_EQ(got->rows.size(), want->rows.size());
      for (size_t r = 0; r < want->rows.size(); ++r)
        for (size_t k = 0; k < want->rows[r].size(); ++k)
          EXPECT_TRUE(valuesMatch(got->rows[r][k], want->rows[r][k], c.m2Rel)) << r << "," << k;
      if (got->kind == ResultTable::Kind::kCells) {
        auto naive = naiveCells(*parseQuery(c.text), dict, sites.rows);
        ASSERT_EQ(naive.size(), got->rows.size());
        for (size_t r = 0; r < naive.size(); ++r)
          for (size_t k = 0; k < naive[r].size(); ++k)
            EXPECT_TRUE(valuesMatch(got->rows[r][got->groupColumns + k], naive[r][k], 1e-9))
                << r << "," << k;
      }
    }
  }
}

TEST(Additive, PairwiseMasksCancelInTheSum) {
  Dictionary dict = studyDictionary();
  const size_t n = 4;
  Sites sites = splitRows(dict, 8000, n, 77);
  BoundQuery b = bound("count, mean(bmi), var(age) by arm", dict);
  auto layout = AdditiveLayout::create(b);
  ASSERT_TRUE(layout.isOk());
  std::vector<crypto::Identity> ids;
  for (size_t s = 0; s < n; ++s) ids.push_back(crypto::generateIdentity());
  std::vector<crypto::PublicKey> keys;
  for (const auto& id : ids) keys.push_back(id.pub);
  std::sort(keys.begin(), keys.end());
  const std::vector<uint8_t> nonce = {9, 8, 7, 6, 5, 4, 3, 2, 1};
  std::vector<std::vector<Word>> plain, masked;
  for (size_t s = 0; s < n; ++s) {
    auto words = encodeAdditive(*execute(b, *sites.tables[s], {}), *layout);
    ASSERT_TRUE(words.isOk());
    plain.push_back(*words);
    auto masker = crypto::PairwiseMasker::create(ids[s], keys, nonce);
    ASSERT_TRUE(masker.isOk()) << masker.status().toString();
    ASSERT_TRUE(masker->addMask(*words).isOk());
    for (size_t k = 0; k < words->size(); ++k) EXPECT_FALSE((*words)[k] == plain.back()[k]);
    masked.push_back(std::move(words).value());
  }
  EXPECT_EQ(sumOf(masked), sumOf(plain));
  auto viaMasks = decodeAdditive(sumOf(masked), *layout, n);
  ASSERT_TRUE(viaMasks.isOk()) << viaMasks.status().toString();
  EXPECT_EQ(*viaMasks, *decodeAdditive(sumOf(plain), *layout, n));

  // Three of four masked vectors (a site dropped out): the masks do not cancel and the decoder
  // refuses the garbage instead of returning numbers.
  std::vector<std::vector<Word>> partial(masked.begin(), masked.begin() + 3);
  auto dropped = decodeAdditive(sumOf(partial), *layout, 3);
  ASSERT_FALSE(dropped.isOk());
  EXPECT_EQ(dropped.status().code(), StatusCode::kCorruption);
  EXPECT_NE(dropped.status().message().find("masked for different rounds"), std::string::npos);
}

TEST(Additive, CoarseKmGridCountsTimesAtTheNextGridPoint) {
  Dictionary dict = studyDictionary();
  Sites sites = splitRows(dict, 5000, 3, 5);
  BoundQuery b = bound("km(os_days, death)", dict);
  AdditiveOptions options;
  options.kmTimeBin = 7;
  auto layout = AdditiveLayout::create(b, options);
  ASSERT_TRUE(layout.isOk()) << layout.status().toString();
  EXPECT_EQ(layout->kmGridPoints(), 716u);  // ceil(5000 / 7) + 1: 0, 7, ..., 5005
  std::vector<std::vector<Word>> encoded;
  for (const auto& t : sites.tables)
    encoded.push_back(*encodeAdditive(*execute(b, *t, {}), *layout));
  auto decoded = decodeAdditive(sumOf(encoded), *layout, 3);
  ASSERT_TRUE(decoded.isOk()) << decoded.status().toString();
  // Naive: bin every row with both values to ceil(t / 7) * 7.
  std::map<double, std::pair<uint64_t, uint64_t>> want;
  uint64_t rowsWithBoth = 0;
  for (const Row& r : sites.rows) {
    if (r[kOsDays].missing || r[kDeath].missing) continue;
    ++rowsWithBoth;
    const double t = std::ceil(static_cast<double>(r[kOsDays].i) / 7) * 7;
    (r[kDeath].i ? want[t].first : want[t].second) += 1;
  }
  const StatPartial& s = decoded->stats[0];
  EXPECT_EQ(s.n[0], rowsWithBoth);
  ASSERT_EQ(s.km[0].size(), want.size());
  size_t k = 0;
  for (const auto& [t, ec] : want) {
    EXPECT_EQ(s.km[0][k].time, t);
    EXPECT_EQ(s.km[0][k].events, ec.first) << t;
    EXPECT_EQ(s.km[0][k].censored, ec.second) << t;
    ++k;
  }
  EXPECT_TRUE(finalize(*decoded, b).isOk());

  // A grid shorter than the data: the site refuses rather than dropping rows.
  options.kmTimeMax = 100;
  auto shortLayout = AdditiveLayout::create(b, options);
  ASSERT_TRUE(shortLayout.isOk());
  auto refused = encodeAdditive(*execute(b, *sites.tables[0], {}), *shortLayout);
  ASSERT_FALSE(refused.isOk());
  EXPECT_NE(refused.status().message().find(
                "km(os_days, death): cell 0 has a time 106 outside the secure-aggregation time "
                "grid [0, 105]"),
            std::string::npos)
      << refused.status().message();
}

// Without noise, a km cell's events and censorings share one word per grid point (half the
// words); with noise (secure-dp) they stay in two runs. Both decode to the same curve, and a
// paired sum that counts more rows than the cell has is refused.
TEST(Additive, KmCountsArePairedPerWordUnlessNoisy) {
  Dictionary dict = studyDictionary();
  Sites sites = splitRows(dict, 4000, 3, 9);
  BoundQuery b = bound("km(os_days, death) by sex", dict);
  AdditiveOptions paired;
  paired.kmTimeBin = 1;
  AdditiveOptions unpaired = paired;
  unpaired.noisyCounts = true;
  auto pairedLayout = AdditiveLayout::create(b, paired);
  auto unpairedLayout = AdditiveLayout::create(b, unpaired);
  ASSERT_TRUE(pairedLayout.isOk() && unpairedLayout.isOk());
  const size_t gridWords = 2 * pairedLayout->kmGridPoints();  // 2 cells
  EXPECT_EQ(unpairedLayout->words() - pairedLayout->words(), gridWords);
  std::vector<std::optional<PartialResult>> decoded;
  for (const AdditiveLayout* layout : {&*pairedLayout, &*unpairedLayout}) {
    std::vector<std::vector<Word>> encoded;
    for (const auto& t : sites.tables)
      encoded.push_back(*encodeAdditive(*execute(b, *t, {}), *layout));
    auto d = decodeAdditive(sumOf(encoded), *layout, 3);
    ASSERT_TRUE(d.isOk()) << d.status().toString();
    decoded.push_back(*d);
  }
  EXPECT_EQ(decoded[0]->stats[0].km, decoded[1]->stats[0].km);
  EXPECT_EQ(decoded[0]->stats[0].n, decoded[1]->stats[0].n);
  EXPECT_FALSE(decoded[0]->stats[0].km[0].empty());

  // One extra censoring in cell 0 beyond the rows it has.
  std::vector<std::vector<Word>> encoded;
  for (const auto& t : sites.tables)
    encoded.push_back(*encodeAdditive(*execute(b, *t, {}), *pairedLayout));
  std::vector<Word> sum = sumOf(encoded);
  for (const auto& seg : pairedLayout->segments()) {
    if (seg.field == AdditiveLayout::Field::kKmPairs) sum[seg.offset] += Word(1) << 64;
  }
  auto bad = decodeAdditive(sum, *pairedLayout, 3);
  ASSERT_FALSE(bad.isOk());
  EXPECT_EQ(bad.status().code(), StatusCode::kCorruption);
  EXPECT_NE(bad.status().message().find("counts"), std::string::npos) << bad.status().message();
}

TEST(Additive, QueriesThatCannotBeSecurelyAggregatedAreRefused) {
  Dictionary dict = studyDictionary();
  auto expectRefused = [&](const std::string& text, const AdditiveOptions& options,
                           const std::string& fragment) {
    auto layout = AdditiveLayout::create(bound(text, dict), options);
    ASSERT_FALSE(layout.isOk()) << text;
    EXPECT_EQ(layout.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(layout.status().message().find(fragment), std::string::npos)
        << layout.status().message();
  };
  expectRefused("count, min(age) by sex", {},
                "min(age): min/max reveal single values and cannot be securely aggregated; ask "
                "for an approval in plain mode");
  expectRefused("max(enrolled)", {}, "max(enrolled): min/max reveal single values");
  expectRefused("km(os_days, death)", {},
                "km(os_days, death): secure aggregation counts "
                "survival times on a fixed grid");
  AdditiveOptions km;
  km.kmTimeBin = 1;
  expectRefused("km(big, death)", km,
                "km(big, death): the time grid is unbounded because big has no maximum in the "
                "dictionary");
  km.kmTimeBin = 0;
  expectRefused("km(os_days, death)", km, "time grid width (time_bin) must be > 0, got 0");
  km.kmTimeBin = 1e-6;  // 5e9 grid points
  expectRefused("km(os_days, death)", km, "choose a larger time_bin");
  AdditiveOptions noisy;
  noisy.noisyCounts = true;
  expectRefused("quantile_counts(age, [0, 18446744073709551615], 4096)", noisy,
                "an exact quantile needs exact counts, and secure-dp adds noise");
  EXPECT_TRUE(
      AdditiveLayout::create(bound("quantile_counts(age, [0, 18446744073709551615], 4096)", dict))
          .isOk());
}

TEST(Additive, OutOfRangeSiteValuesAreRefusedNotWrapped) {
  Dictionary dict = studyDictionary();
  auto table = makeTable(dict, randomRows(500, 8));
  BoundQuery b = bound("sum(bmi), sum(big), mean(bmi) by sex", dict);
  auto layout = AdditiveLayout::create(b);
  ASSERT_TRUE(layout.isOk());
  const PartialResult good = *execute(b, *table, {});
  ASSERT_TRUE(encodeAdditive(good, *layout).isOk());
  auto expectRefused = [&](const PartialResult& p, const std::string& fragment) {
    auto r = encodeAdditive(p, *layout);
    ASSERT_FALSE(r.isOk()) << fragment;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find(fragment), std::string::npos) << r.status().message();
  };
  PartialResult p = good;
  p.stats[0].sum[1] = 3e20;  // just above 2^68 = 2.95e20
  expectRefused(p,
                "sum(bmi): the sum of cell 1 is 3e+20, outside the range secure aggregation "
                "can encode exactly (|value| < 2^68 = 2.95e+20)");
  p = good;
  p.stats[0].sum[0] = -2.9e20;  // just inside
  EXPECT_TRUE(encodeAdditive(p, *layout).isOk());
  p.stats[0].sum[0] = std::nan("");
  expectRefused(p, "sum(bmi): the sum of cell 0 is nan");
  p = good;
  p.stats[1].sum[0] = 5e18;  // beyond 2^62: intSum may have wrapped at the site
  expectRefused(p, "sum(big): the sum of cell 0 is 5e+18, outside the range");
  p = good;
  p.stats[2].mean[0] = 1e10;  // n (mean - 0)^2 far above 2^68
  expectRefused(p, "mean(bmi): the sum of (x - c)^2 of cell 0 is");

  PartialResult other = *execute(bound("sum(bmi) by arm", dict), *table, {});
  auto mismatch = encodeAdditive(other, *layout);
  ASSERT_FALSE(mismatch.isOk());
  EXPECT_NE(mismatch.status().message().find("not for the query"), std::string::npos);
}

TEST(Additive, DecoderDetectsSumsNoInRangeSitesCanProduce) {
  Dictionary dict = studyDictionary();
  BoundQuery b = bound("count, sum(age), sum(bmi)", dict);
  auto layout = AdditiveLayout::create(b);
  ASSERT_TRUE(layout.isOk());
  // rows scanned, cell rows, count n, sum(age): n missing sum, sum(bmi): n missing sum
  ASSERT_EQ(layout->words(), 9u);
  ASSERT_TRUE(decodeAdditive(std::vector<Word>(9, 0), *layout, 3).isOk());
  auto expectBad = [&](size_t index, Word value, uint32_t participants, StatusCode code,
                       const std::string& fragment) {
    std::vector<Word> sum(9, 0);
    sum[index] = value;
    auto r = decodeAdditive(sum, *layout, participants);
    ASSERT_FALSE(r.isOk()) << fragment;
    EXPECT_EQ(r.status().code(), code);
    EXPECT_NE(r.status().message().find(fragment), std::string::npos) << r.status().message();
  };
  const Word two64 = Word{1} << 64;
  // A negative count (a site sent -1) and more than 3 sites can count.
  expectBad(2, Word(0) - 1, 3, StatusCode::kCorruption, "count: the summed n at index 0 is");
  expectBad(2, 3 * (two64 - 1) + 1, 3, StatusCode::kCorruption,
            "which 3 in-range site vectors cannot produce");
  // A legitimate sum that does not fit the partial's 64-bit counts.
  expectBad(2, two64, 3, StatusCode::kInvalidArgument, "does not fit in 64 bits");
  // Integer sum: 3 sites x 2^62 is the limit, in either direction.
  expectBad(5, 3 * (Word{1} << 62), 3, StatusCode::kCorruption, "sum(age): the summed sum");
  expectBad(5, Word(0) - 3 * (Word{1} << 62), 3, StatusCode::kCorruption, "out of range for 3");
  std::vector<Word> edge(9, 0);
  edge[5] = 3 * (Word{1} << 62) - 1;
  EXPECT_TRUE(decodeAdditive(edge, *layout, 3).isOk());
  // Fixed point: 2 sites x 2^100.
  expectBad(8, Word{1} << 101, 2, StatusCode::kCorruption, "sum(bmi): the summed sum");
  expectBad(8, Word{1} << 127, 1000, StatusCode::kCorruption, "sum(bmi)");

  auto wrongLength = decodeAdditive(std::vector<Word>(8, 0), *layout, 3);
  ASSERT_FALSE(wrongLength.isOk());
  EXPECT_NE(wrongLength.status().message().find("has 8 words, not 9"), std::string::npos);
  auto noSites = decodeAdditive(std::vector<Word>(9, 0), *layout, 0);
  ASSERT_FALSE(noSites.isOk());
  EXPECT_EQ(noSites.status().code(), StatusCode::kInvalidArgument);
}

// Model rounds of issue #6 carry a fixed-length real vector (StatPartial::vec).
TEST(Additive, LinearModelRoundSumsDecodeToTheMergedSums) {
  Dictionary dict = studyDictionary();
  Sites sites = splitRows(dict, 6000, 3, 31);
  BoundQuery b = bound("lm_sums(bmi ~ age + sex)", dict);
  auto layout = AdditiveLayout::create(b);
  ASSERT_TRUE(layout.isOk()) << layout.status().toString();
  std::vector<std::vector<Word>> encoded;
  PartialResult merged;
  for (size_t s = 0; s < 3; ++s) {
    auto p = execute(b, *sites.tables[s], {});
    ASSERT_TRUE(p.isOk()) << p.status().toString();
    auto words = encodeAdditive(*p, *layout);
    ASSERT_TRUE(words.isOk()) << words.status().toString();
    encoded.push_back(std::move(words).value());
    if (s == 0) {
      merged = *p;
    } else {
      ASSERT_TRUE(mergeInto(merged, *p).isOk());
    }
  }
  // Design columns (intercept, age, sexM): 9 + 3 + 2 sums.
  EXPECT_EQ(merged.stats[0].vec.size(), 14u);
  auto decoded = decodeAdditive(sumOf(encoded), *layout, 3);
  ASSERT_TRUE(decoded.isOk()) << decoded.status().toString();
  EXPECT_EQ(decoded->stats[0].n, merged.stats[0].n);
  EXPECT_EQ(decoded->stats[0].missing, merged.stats[0].missing);
  EXPECT_TRUE(close(decoded->stats[0].vec, merged.stats[0].vec, 1e-12,
                    3 * std::ldexp(1.0, -kFixedPointFractionBits)));

  auto model = AdditiveLayout::create(bound("lm(bmi ~ age)", dict));
  ASSERT_FALSE(model.isOk());
  EXPECT_NE(model.status().message().find("is fitted by the coordinator from rounds"),
            std::string::npos)
      << model.status().message();
}

// A secure federation without network: every round is executed at each site with its times
// binned on the grid, encoded, summed modulo 2^128 and decoded, as node/site.cc and
// node/coordinator.cc do around the masks.
RoundRunner secureSplitRunner(const std::vector<std::unique_ptr<InMemoryTable>>& tables,
                              double timeBin) {
  return [&tables, timeBin](const std::string& text) -> Result<RoundAnswer> {
    TM_ASSIGN_OR_RETURN(Query q, parseQuery(text));
    TM_ASSIGN_OR_RETURN(BoundQuery b, bindQuery(q, tables.front()->dictionary()));
    AdditiveOptions options;
    options.kmTimeBin = timeBin;
    TM_ASSIGN_OR_RETURN(AdditiveLayout layout, AdditiveLayout::create(b, options));
    std::vector<std::vector<Word>> encoded;
    for (const auto& t : tables) {
      ExecOptions exec;
      exec.survivalTimeBin = timeBin;
      TM_ASSIGN_OR_RETURN(PartialResult p, execute(b, *t, exec));
      TM_ASSIGN_OR_RETURN(std::vector<Word> words, encodeAdditive(p, layout));
      encoded.push_back(std::move(words));
    }
    RoundAnswer out;
    TM_ASSIGN_OR_RETURN(
        out.merged, decodeAdditive(sumOf(encoded), layout, static_cast<uint32_t>(tables.size())));
    TM_ASSIGN_OR_RETURN(out.table, finalize(out.merged, b));
    return out;
  };
}

// Secure Cox (issue #5 and #6): the rounds carry event counts on a weekly grid, and the fit
// equals the pooled fit on times rounded up to whole weeks by hand, while differing from the fit
// on exact days (so the binning is really applied, at both the grid and the Newton rounds).
TEST(Additive, SecureCoxRoundsOnAWeeklyGridEqualThePooledFitOnBinnedTimes) {
  Dictionary dict = studyDictionary();
  Sites sites = splitRows(dict, 3000, 3, 47);
  std::vector<Row> binned = sites.rows;
  for (Row& r : binned) {
    if (r[kOsDays].missing) continue;
    const int64_t days = r[kOsDays].i;
    r[kOsDays] = Cell::integer((days + 6) / 7 * 7);
  }
  auto pooledBinned = makeTable(dict, binned);
  auto pooledExact = makeTable(dict, sites.rows);
  for (const char* text : {"coxph(os_days, death ~ age + sex + bmi)",
                           "coxph(os_days, death ~ age + bmi, ties = breslow, strata = sex)"}) {
    SCOPED_TRACE(text);
    auto q = parseQuery(text);
    ASSERT_TRUE(q.isOk());
    auto secure = fitModel(*q, secureSplitRunner(sites.tables, 7.0));
    ASSERT_TRUE(secure.isOk()) << secure.status().toString();
    auto want = fitModel(*q, localRoundRunner(*pooledBinned));
    ASSERT_TRUE(want.isOk()) << want.status().toString();
    auto exact = fitModel(*q, localRoundRunner(*pooledExact));
    ASSERT_TRUE(exact.isOk()) << exact.status().toString();
    ASSERT_TRUE(secure->cox && want->cox && exact->cox);
    EXPECT_EQ(secure->cox->n, want->cox->n);
    EXPECT_EQ(secure->cox->events, want->cox->events);
    EXPECT_EQ(secure->cox->iterations, want->cox->iterations);
    ASSERT_EQ(secure->cox->coefficients.size(), want->cox->coefficients.size());
    double binningEffect = 0;
    for (size_t j = 0; j < want->cox->coefficients.size(); ++j) {
      const auto& got = secure->cox->coefficients[j];
      const auto& ref = want->cox->coefficients[j];
      EXPECT_NEAR(got.coef, ref.coef, 1e-6 * std::fabs(ref.coef) + 1e-12) << ref.name;
      EXPECT_NEAR(got.stdError, ref.stdError, 1e-6 * ref.stdError) << ref.name;
      binningEffect =
          std::max(binningEffect, std::fabs(exact->cox->coefficients[j].coef - ref.coef) /
                                      exact->cox->coefficients[j].stdError);
    }
    EXPECT_NEAR(secure->cox->loglik, want->cox->loglik, 1e-6 * std::fabs(want->cox->loglik));
    EXPECT_GT(binningEffect, 1e-4) << "weekly binning should move the estimates";
    // The grid round's times are whole weeks.
    ASSERT_GE(secure->roundQueries.size(), 2u);
    EXPECT_NE(secure->roundQueries[1].find("times = [[0, 7, 14, 21, 28,"), std::string::npos)
        << secure->roundQueries[1].substr(0, 200);
  }

  // A time the grid cannot hold is refused with the row named, not binned silently.
  std::vector<Row> negative = {sites.rows.front()};
  negative[0][kOsDays] = Cell::integer(-3);
  negative[0][kDeath] = Cell::integer(1);
  negative[0][kAge] = Cell::integer(50);
  auto bad = makeTable(dict, negative);
  auto b = bound("cox_times(os_days, death ~ age)", dict);
  ExecOptions exec;
  exec.survivalTimeBin = 7.0;
  auto p = execute(b, *bad, exec);
  ASSERT_FALSE(p.isOk());
  EXPECT_NE(p.status().message().find("the time -3 in row 1"), std::string::npos)
      << p.status().message();
}

TEST(Additive, LayoutSharesStateOfOneVariableAndDocumentsItsShift) {
  Dictionary dict = studyDictionary();
  auto layout = AdditiveLayout::create(bound("mean(age), var(age), sd(age), mean(bmi)", dict));
  ASSERT_TRUE(layout.isOk());
  // rows scanned + cell rows + mean(age): n, missing, Σ(x-c), Σ(x-c)^2 + mean(bmi): the same.
  EXPECT_EQ(layout->words(), 2u + 4u + 4u);
  EXPECT_EQ(layout->shift(0), 60.0);  // midpoint of age's range [0, 120]
  EXPECT_EQ(layout->shift(1), 60.0);
  EXPECT_EQ(layout->shift(3), 0.0);  // bmi has no declared range
  size_t offset = 0;
  for (const auto& seg : layout->segments()) {
    EXPECT_EQ(seg.offset, offset);
    offset += seg.length;
  }
  EXPECT_EQ(offset, layout->words());
}

}  // namespace
}  // namespace trialmesh::query::testing
