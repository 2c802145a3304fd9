// chisq(a, b) / fisher(a, b): the rewrite to `count by a, b`, the test on the released table
// (equal to the test on a table counted row by row here, stats/contingency.h being compared with
// R in tests/stats/contingency_r_test.cc), R's table() handling of missing and empty levels, and
// the disclosure rule (no test once a cell is withheld).
#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "query/cross_test.h"
#include "query/disclosure.h"
#include "query_test_util.h"
#include "stats/contingency.h"

namespace trialmesh::query {
namespace {

using namespace testing;

TEST(CrossTestTest, RewritesToATwoWayCount) {
  auto r = parseCrossTest("chisq(arm, smoker) where age >= 18");
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  ASSERT_TRUE(r->has_value());
  EXPECT_EQ((*r)->countQuery, "count where age >= 18 by arm, smoker");
  EXPECT_TRUE((*r)->correct);
  EXPECT_EQ((*r)->test, CrossTestRequest::Test::kChiSquared);
  auto u = parseCrossTest("chisq(arm, smoker, correct = false)");
  ASSERT_TRUE(u.isOk() && u->has_value());
  EXPECT_FALSE((*u)->correct);
  EXPECT_EQ((*u)->countQuery, "count by arm, smoker");
  auto f = parseCrossTest("  fisher(ph.ecog, sex)");
  ASSERT_TRUE(f.isOk() && f->has_value()) << f.status().toString();
  EXPECT_EQ((*f)->test, CrossTestRequest::Test::kFisher);
  auto other = parseCrossTest("count by arm");
  ASSERT_TRUE(other.isOk());
  EXPECT_FALSE(other->has_value());
}

TEST(CrossTestTest, RejectsBadArguments) {
  for (const char* bad :
       {"chisq(arm)", "chisq(arm, sex", "chisq(arm, sex, correct = maybe)",
        "fisher(arm, sex, correct = false)", "chisq(arm, sex, smoker)", "chisq(arm, arm)",
        "chisq(arm, sex) by ecog", "chisq(arm, sex, simulate = true)"}) {
    auto r = parseCrossTest(bad);
    EXPECT_FALSE(r.isOk()) << bad;
  }
}

// The table as R's table(a, b) builds it from the rows: NA left out, unseen levels absent.
stats::CountTable naiveTable(const std::vector<Row>& rows, size_t a, size_t b) {
  std::map<int64_t, std::map<int64_t, int64_t>> m;
  std::set<int64_t> bLevels;
  for (const auto& r : rows) {
    if (r[a].missing || r[b].missing) continue;
    ++m[r[a].i][r[b].i];
    bLevels.insert(r[b].i);
  }
  stats::CountTable t;
  for (const auto& [ai, row] : m) {
    std::vector<int64_t> line;
    for (int64_t bi : bLevels) line.push_back(row.count(bi) ? row.at(bi) : 0);
    t.push_back(line);
  }
  return t;
}

Result<ResultTable> runCross(const std::string& text, const std::vector<Row>& rows,
                             uint32_t minCell) {
  const auto dict = studyDictionary();
  auto table = makeTable(dict, rows);
  TM_ASSIGN_OR_RETURN(auto request, parseCrossTest(text));
  TM_ASSIGN_OR_RETURN(Query q, parseQuery(request->countQuery));
  TM_ASSIGN_OR_RETURN(BoundQuery bound, bindQuery(q, dict));
  TM_ASSIGN_OR_RETURN(PartialResult partial, execute(bound, *table));
  TM_ASSIGN_OR_RETURN(DisclosedResult released,
                      finalizeWithDisclosureControl(partial, bound, {minCell, false}));
  return applyCrossTest(released.table, *request);
}

TEST(CrossTestTest, EqualsTheTestOfTheRowTable) {
  const auto rows = randomRows(700, 11);
  // arm: level C is declared but empty (R's table() on the values has no C); smoker has NA.
  auto got = runCross("chisq(arm, smoker)", rows, 5);
  ASSERT_TRUE(got.isOk()) << got.status().toString();
  auto want = stats::chiSquaredTest(naiveTable(rows, kArm, kSmoker), true);
  ASSERT_TRUE(want.isOk());
  ASSERT_EQ(got->rows.size(), 1u);
  const auto& row = got->rows[0];
  EXPECT_EQ(got->columns[2], "statistic");
  EXPECT_DOUBLE_EQ(std::get<double>(row[2]), want->statistic);
  EXPECT_DOUBLE_EQ(std::get<double>(row[3]), 1.0);
  EXPECT_DOUBLE_EQ(std::get<double>(row[4]), want->p);
  EXPECT_EQ(std::get<std::string>(row[1]),
            "Pearson's Chi-squared test with Yates' continuity correction");
  int64_t n = 0;
  for (const auto& r : rows) n += !r[kSmoker].missing;
  EXPECT_EQ(std::get<int64_t>(row[5]), n);

  auto ecog = runCross("chisq(ecog, sex, correct = false) where age < 60", rows, 5);
  ASSERT_TRUE(ecog.isOk()) << ecog.status().toString();
  std::vector<Row> young;
  for (const auto& r : rows)
    if (!r[kAge].missing && r[kAge].i < 60) young.push_back(r);
  auto want2 = stats::chiSquaredTest(naiveTable(young, kEcog, kSex), false);
  ASSERT_TRUE(want2.isOk());
  EXPECT_DOUBLE_EQ(std::get<double>(ecog->rows[0][2]), want2->statistic);
  EXPECT_DOUBLE_EQ(std::get<double>(ecog->rows[0][3]), 4.0);

  auto fisher = runCross("fisher(sex, death)", rows, 5);
  ASSERT_TRUE(fisher.isOk()) << fisher.status().toString();
  auto want3 = stats::fisherTest(naiveTable(rows, kSex, kDeath));
  ASSERT_TRUE(want3.isOk());
  EXPECT_EQ(fisher->columns, (std::vector<std::string>{"test", "method", "p_value", "odds_ratio",
                                                       "conf_low", "conf_high", "n"}));
  EXPECT_DOUBLE_EQ(std::get<double>(fisher->rows[0][2]), want3->p);
  EXPECT_DOUBLE_EQ(std::get<double>(fisher->rows[0][3]), want3->oddsRatio);
  // --json: named fields, no cells.
  const auto json = nlohmann::json::parse(formatJson(*fisher));
  EXPECT_DOUBLE_EQ(json["rows"][0]["odds_ratio"].get<double>(), want3->oddsRatio);
  EXPECT_EQ(json["rows"][0]["test"], "fisher");
}

TEST(CrossTestTest, SmallExpectedCountsCarryRsWarning) {
  auto rows = randomRows(60, 3);
  auto got = runCross("chisq(ecog, sex)", rows, 0);
  ASSERT_TRUE(got.isOk()) << got.status().toString();
  EXPECT_EQ(std::get<std::string>(got->rows[0][7]), "Chi-squared approximation may be incorrect");
  bool noted = false;
  for (const auto& n : got->notes) noted = noted || n.find("may be incorrect") != std::string::npos;
  EXPECT_TRUE(noted);
}

TEST(CrossTestTest, RefusedWhenACellIsWithheld) {
  auto rows = randomRows(700, 11);
  // Few rows below age 3: the cells of sex x death fall under min_cell_size 5.
  auto got = runCross("fisher(sex, death) where age < 3", rows, 5);
  ASSERT_FALSE(got.isOk());
  EXPECT_NE(got.status().message().find("withheld by disclosure control"), std::string::npos)
      << got.status().message();
  // Not a 2 x 2 table: an actionable error.
  auto big = runCross("fisher(ecog, sex)", rows, 5);
  ASSERT_FALSE(big.isOk());
  EXPECT_NE(big.status().message().find("use chisq"), std::string::npos);
}

}  // namespace
}  // namespace trialmesh::query
