// stats/survival_summary.h on hand-computed cases and its errors; the comparison with R on
// pooled rows is tests/query/survival_report_r_test.cc.
#include "stats/survival_summary.h"

#include <gtest/gtest.h>

#include <cmath>

namespace trialmesh::stats {
namespace {

KmCurve curve(const std::vector<SurvivalPoint>& points) {
  auto c = kaplanMeier("g", points);
  EXPECT_TRUE(c.isOk()) << c.status().toString();
  return *c;
}

TEST(RestrictedMean, HandComputedAreaAndVariance) {
  // Two subjects dying at 2 and 4: S = 1 on [0, 2), 0.5 on [2, 4), 0 after.
  const KmCurve k = curve({{2, 1, 0}, {4, 1, 0}});
  const RestrictedMean r = restrictedMean(k, 5, 0);
  EXPECT_DOUBLE_EQ(r.rmean, 2 * 1.0 + 2 * 0.5);
  // Time 2: d / (n (n - d)) = 1/2, area after it up to 5 = 1; time 4 has n = d: no term.
  EXPECT_DOUBLE_EQ(r.stdErr, std::sqrt(0.5));
  // A limit between rows cuts the last rectangle; beyond the last row the curve stays flat.
  EXPECT_DOUBLE_EQ(restrictedMean(k, 3, 0).rmean, 2 + 0.5);
  EXPECT_DOUBLE_EQ(restrictedMean(k, 3, 0).stdErr, std::sqrt(0.5) * 0.5);
  // Without events the mean is the limit itself (minus a negative start), with no variance.
  const KmCurve censored = curve({{1, 0, 3}, {7, 0, 1}});
  EXPECT_DOUBLE_EQ(restrictedMean(censored, 10, 0).rmean, 10);
  EXPECT_DOUBLE_EQ(restrictedMean(censored, 10, 0).stdErr, 0);
}

TEST(SurvivalAtTimes, StartRowEventsBetweenTimesAndTimesPastTheEnd) {
  const KmCurve k = curve({{2, 1, 0}, {3, 0, 1}, {4, 1, 0}, {6, 0, 1}});  // n = 4
  const auto at = survivalAtTimes(k, {-1, 2, 3.5, 6, 6.5}, 0);
  ASSERT_EQ(at.size(), 4u);    // 6.5 is after the last time
  EXPECT_EQ(at[0].nRisk, 4u);  // before the first time: the start row, S = 1
  EXPECT_EQ(at[0].nEvent, 0u);
  EXPECT_EQ(at[0].survival, 1);
  EXPECT_EQ(at[1].nRisk, 4u);  // at risk just before 2
  EXPECT_EQ(at[1].nEvent, 1u);
  EXPECT_DOUBLE_EQ(at[1].survival, 0.75);
  EXPECT_EQ(at[2].nRisk, 2u);  // the first row at or after 3.5 is 4, with 2 at risk
  EXPECT_EQ(at[2].nEvent, 0u);
  EXPECT_EQ(at[3].nEvent, 1u);  // the event at 4, after 3.5
  EXPECT_DOUBLE_EQ(at[3].survival, 0.75 * 0.5);
  EXPECT_TRUE(survivalAtTimes(KmCurve{}, {1}, 0).empty());
}

TEST(StratifiedLogRank, OneStratumIsTheLogRankTest) {
  const std::vector<SurvivalGroup> groups = {{"a", {{1, 1, 0}, {3, 2, 1}, {5, 0, 2}}},
                                             {"b", {{2, 1, 1}, {3, 1, 0}, {8, 2, 0}}},
                                             {"c", {{1, 0, 1}, {4, 1, 0}}}};
  auto plain = logRank(groups);
  auto strat = stratifiedLogRank({groups});
  ASSERT_TRUE(plain.isOk() && strat.isOk());
  EXPECT_DOUBLE_EQ(strat->chiSquare, plain->chiSquare);
  EXPECT_EQ(strat->df, plain->df);
  EXPECT_DOUBLE_EQ(strat->pValue, plain->pValue);
  for (size_t g = 0; g < groups.size(); ++g) {
    EXPECT_EQ(strat->groups[g].n, plain->groups[g].n);
    EXPECT_DOUBLE_EQ(strat->groups[g].observed, plain->groups[g].observed);
    EXPECT_DOUBLE_EQ(strat->groups[g].expected, plain->groups[g].expected);
    EXPECT_DOUBLE_EQ(strat->groups[g].variance, plain->groups[g].variance);
  }
}

TEST(StratifiedLogRank, ErrorsNameTheProblem) {
  const SurvivalGroup a{"a", {{1, 1, 0}}}, b{"b", {{2, 1, 0}}};
  EXPECT_NE(stratifiedLogRank({}).status().message().find("needs a stratum"), std::string::npos);
  EXPECT_NE(stratifiedLogRank({{a}}).status().message().find("at least two groups"),
            std::string::npos);
  EXPECT_NE(stratifiedLogRank({{a, b}, {a}}).status().message().find("the same groups"),
            std::string::npos);
  const SurvivalGroup unsorted{"u", {{3, 1, 0}, {2, 1, 0}}};
  EXPECT_NE(stratifiedLogRank({{a, unsorted}}).status().message().find("strictly ascending"),
            std::string::npos);
}

}  // namespace
}  // namespace trialmesh::stats
