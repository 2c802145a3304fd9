// Merging partials of any split of the rows equals computing on all rows.
#include <gtest/gtest.h>

#include "query_test_util.h"

namespace trialmesh::query::testing {
namespace {

::testing::AssertionResult closeRel(const std::vector<double>& got, const std::vector<double>& want,
                                    double rel) {
  if (got.size() != want.size()) return ::testing::AssertionFailure() << "length differs";
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::isinf(want[i]) && got[i] == want[i]) continue;
    double tol = rel * std::max(std::fabs(want[i]), 1e-300);
    if (!(std::fabs(got[i] - want[i]) <= tol))
      return ::testing::AssertionFailure()
             << "index " << i << ": got " << got[i] << ", want " << want[i];
  }
  return ::testing::AssertionSuccess();
}

void expectEquivalent(const PartialResult& got, const PartialResult& want) {
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
    EXPECT_EQ(g.min, w.min);
    EXPECT_EQ(g.max, w.max);
    EXPECT_EQ(g.bins, w.bins);
    EXPECT_EQ(g.binCounts, w.binCounts);
    EXPECT_EQ(g.km, w.km);
    EXPECT_TRUE(closeRel(g.sum, w.sum, 1e-12));
    EXPECT_TRUE(closeRel(g.mean, w.mean, 1e-12));
    EXPECT_TRUE(closeRel(g.m2, w.m2, 1e-12));
  }
}

Result<PartialResult> partialOf(const std::string& text, const storage::ColumnSource& source,
                                unsigned threads) {
  TM_ASSIGN_OR_RETURN(Query q, parseQuery(text));
  TM_ASSIGN_OR_RETURN(BoundQuery b, bindQuery(q, source.dictionary()));
  return execute(b, source, threadsOnly(threads));
}

const char* kQueries[] = {
    ("count, count(bmi), sum(age), sum(bmi), mean(bmi), var(bmi), min(age), max(enrolled) by "
     "arm, ecog"),
    "count, mean(bmi), sd(age), var(visits), sum(big) where age >= 40 and sex = \"F\"",
    "hist(bmi, 15, 35, 0.5) by smoker",
    "km(os_days, death) by sex",
};

TEST(Merge, RandomSplitsEqualTheWhole) {
  Dictionary dict = studyDictionary();
  const size_t n = storage::kChunkRows + 5000;
  std::vector<Row> rows = randomRows(n, 11);
  auto whole = makeTable(dict, rows);
  std::mt19937 rng(5);
  for (int trial = 0; trial < 6; ++trial) {
    const int parts = 1 + trial % 5;
    std::vector<std::vector<Row>> split(parts);
    // Contiguous and interleaved splits alike: each row goes to a random part.
    for (const auto& r : rows) split[rng() % parts].push_back(r);
    std::vector<std::unique_ptr<InMemoryTable>> tables;
    for (const auto& s : split) tables.push_back(makeTable(dict, s));
    for (const char* text : kQueries) {
      SCOPED_TRACE(std::string(text) + " parts=" + std::to_string(parts));
      auto want = partialOf(text, *whole, 2);
      ASSERT_TRUE(want.isOk()) << want.status().toString();
      std::vector<PartialResult> partials;
      for (size_t p = 0; p < tables.size(); ++p) {
        auto r = partialOf(text, *tables[p], 1 + p % 3);
        ASSERT_TRUE(r.isOk()) << r.status().toString();
        partials.push_back(std::move(r).value());
      }
      std::shuffle(partials.begin(), partials.end(), rng);
      PartialResult acc = partials[0];
      for (size_t p = 1; p < partials.size(); ++p) ASSERT_TRUE(mergeInto(acc, partials[p]).isOk());
      expectEquivalent(acc, *want);
    }
  }
}

// Data far from zero (1e9 + unit noise): the stored means round at ulp(1e9), so merged
// variances agree to about 1e-9 relative rather than 1e-12 (documented in partial.h).
TEST(Merge, DataFarFromZeroStaysAccurate) {
  Dictionary dict = studyDictionary();
  std::vector<Row> rows = randomRows(50000, 13);
  auto whole = makeTable(dict, rows);
  std::vector<Row> a(rows.begin(), rows.begin() + 20000), b(rows.begin() + 20000, rows.end());
  auto ta = makeTable(dict, a);
  auto tb = makeTable(dict, b);
  PartialResult p = *partialOf("var(lab) by sex", *ta, 1);
  ASSERT_TRUE(mergeInto(p, *partialOf("var(lab) by sex", *tb, 2)).isOk());
  PartialResult w = *partialOf("var(lab) by sex", *whole, 1);
  EXPECT_EQ(p.stats[0].n, w.stats[0].n);
  EXPECT_TRUE(closeRel(p.stats[0].m2, w.stats[0].m2, 1e-9));
  EXPECT_TRUE(closeRel(p.stats[0].mean, w.stats[0].mean, 1e-15));
}

TEST(Merge, OrderDoesNotMatter) {
  Dictionary dict = studyDictionary();
  std::vector<Row> rows = randomRows(30000, 12);
  std::vector<std::unique_ptr<InMemoryTable>> tables;
  for (size_t p = 0; p < 4; ++p) {
    std::vector<Row> part(rows.begin() + p * 7500, rows.begin() + (p + 1) * 7500);
    tables.push_back(makeTable(dict, part));
  }
  for (const char* text : kQueries) {
    std::vector<PartialResult> partials;
    for (const auto& t : tables) partials.push_back(*partialOf(text, *t, 1));
    PartialResult forward = partials[0];
    for (size_t p = 1; p < 4; ++p) ASSERT_TRUE(mergeInto(forward, partials[p]).isOk());
    PartialResult backward = partials[3];
    for (size_t p = 3; p-- > 0;) ASSERT_TRUE(mergeInto(backward, partials[p]).isOk());
    // Tree order: (0+1) + (2+3).
    PartialResult left = partials[0], right = partials[2];
    ASSERT_TRUE(mergeInto(left, partials[1]).isOk());
    ASSERT_TRUE(mergeInto(right, partials[3]).isOk());
    ASSERT_TRUE(mergeInto(left, right).isOk());
    expectEquivalent(backward, forward);
    expectEquivalent(left, forward);
  }
}

TEST(Merge, MergingAnEmptyPartialChangesNothing) {
  Dictionary dict = studyDictionary();
  auto data = makeTable(dict, randomRows(1000, 3));
  auto empty = makeTable(dict, {});
  for (const char* text : kQueries) {
    PartialResult a = *partialOf(text, *data, 1);
    const PartialResult before = a;
    ASSERT_TRUE(mergeInto(a, *partialOf(text, *empty, 1)).isOk());
    EXPECT_EQ(a, before);
  }
}

TEST(Merge, MismatchedShapesAreRefused) {
  Dictionary dict = studyDictionary();
  auto table = makeTable(dict, randomRows(100, 4));
  PartialResult a = *partialOf("count, mean(bmi) by arm", *table, 1);
  const PartialResult before = a;

  PartialResult otherQuery = *partialOf("count, mean(bmi) by sex", *table, 1);
  Status s = mergeInto(a, otherQuery);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("different shapes"), std::string::npos);

  Dictionary other = studyDictionary("OTHER");
  auto otherTable = makeTable(other, randomRows(100, 4));
  s = mergeInto(a, *partialOf("count, mean(bmi) by arm", *otherTable, 1));
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);

  PartialResult truncated = *partialOf("count, mean(bmi) by arm", *table, 1);
  truncated.stats[1].m2.pop_back();
  s = mergeInto(a, truncated);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("wrong length"), std::string::npos);

  PartialResult lying = *partialOf("count, mean(bmi) by arm", *table, 1);
  lying.shape.cells = 5;
  s = mergeInto(a, lying);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(a, before);  // untouched on every refusal

  auto b = bindQuery(*parseQuery("count by sex"), dict);
  ASSERT_TRUE(b.isOk());
  auto f = finalize(a, *b);
  EXPECT_FALSE(f.isOk());
}

TEST(Merge, FinalizedMergeMatchesWholeTable) {
  Dictionary dict = studyDictionary();
  std::vector<Row> rows = randomRows(20000, 21);
  auto whole = makeTable(dict, rows);
  std::vector<Row> first(rows.begin(), rows.begin() + 12345),
      second(rows.begin() + 12345, rows.end());
  auto t1 = makeTable(dict, first);
  auto t2 = makeTable(dict, second);
  const std::string text = "km(os_days, status) where status != 0 by arm";
  auto b = *bindQuery(*parseQuery(text), dict);
  PartialResult p = *execute(b, *t1, {});
  ASSERT_TRUE(mergeInto(p, *execute(b, *t2, {})).isOk());
  ResultTable merged = *finalize(p, b);
  ResultTable all = runQuery(text, *whole, 1);
  ASSERT_EQ(merged.rows.size(), all.rows.size());
  for (size_t r = 0; r < all.rows.size(); ++r) {
    for (size_t c = 0; c < all.rows[r].size(); ++c)
      EXPECT_TRUE(valuesMatch(merged.rows[r][c], all.rows[r][c], 1e-12)) << r << "," << c;
  }
}

}  // namespace
}  // namespace trialmesh::query::testing
