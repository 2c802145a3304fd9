// surveil(...): the rewrite to a count query, argument errors, and the detection table built
// from a count series (bounds and alarms as stats/surveillance.h computes them).
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "query/surveil.h"

namespace trialmesh::query {
namespace {

TEST(SurveilTest, RewritesToAWeeklyCount) {
  auto r = parseSurveil(
      " surveil(onset_date, method = \"percentile\", years = 2, p = 90, from = \"2020-01-01\", "
      "to = '2023-12-31') where disease = \"influenza\"");
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  ASSERT_TRUE(r->has_value());
  EXPECT_EQ((*r)->countQuery,
            "count where disease = \"influenza\" by week(onset_date, \"2020-01-01\", "
            "\"2023-12-31\")");
  EXPECT_EQ((*r)->method, SurveilRequest::Method::kPercentile);
  EXPECT_EQ((*r)->percentile.years, 2);
  EXPECT_EQ((*r)->percentile.percentile, 90);
  auto m = parseSurveil("surveil(d, method = \"c3\", unit = \"month\", alpha = 0.01)");
  ASSERT_TRUE(m.isOk());
  EXPECT_EQ((*m)->countQuery, "count by month(d)");
  EXPECT_EQ((*m)->percentile.periodsPerYear, 12);
  EXPECT_FALSE(parseSurveil("count by arm")->has_value());
}

TEST(SurveilTest, RejectsBadArguments) {
  for (const char* bad :
       {"surveil(d)", "surveil(d, method = \"farrington\", unit = \"day\")",
        "surveil(d, method = \"farrington2\")", "surveil(d, method = \"c1\", b = 3)",
        "surveil(d, method = \"farrington\", threshold_method = \"exact\")",
        "surveil(d, method = \"farrington\", reweight = maybe)",
        "surveil(d, method = \"farrington\", b = 2.5)", "surveil(d, method = \"c1\", bogus = 1)",
        "surveil(d, method = \"c1\", baseline = x)",
        "surveil(d, method = \"c1\", from = \"2020-01-01\")",
        "surveil(d, method = \"c1\") by region", "surveil(d, method = \"c1\""}) {
    auto r = parseSurveil(bad);
    EXPECT_FALSE(r.isOk()) << bad;
    if (!r.isOk()) {
      EXPECT_NE(r.status().message().find("surveil()"), std::string::npos) << bad;
    }
  }
}

TEST(SurveilTest, DetectionTable) {
  ResultTable counts;
  counts.columns = {"week(d)", "count"};
  counts.groupColumns = 1;
  counts.statistics = {"count"};
  const int64_t x[] = {1, 2, 1, 0, 3, 1, 2, 2, 9, 1};
  for (int k = 0; k < 10; ++k)
    counts.rows.push_back({std::string("2024-W0") + std::to_string(k), ResultValue{x[k]}});
  auto request = parseSurveil("surveil(d, method = \"c1\", baseline = 3, alpha = 0.05)");
  ASSERT_TRUE(request.isOk());
  auto t = applySurveil(counts, **request);
  ASSERT_TRUE(t.isOk()) << t.status().toString();
  ASSERT_EQ(t->rows.size(), 10u);
  EXPECT_EQ(t->columns, (std::vector<std::string>{"week(d)", "count", "upper_bound", "alarm"}));
  EXPECT_EQ(t->rows[2][2], ResultValue{});  // not assessed: 3 weeks of baseline first
  // Week 9 (index 8): baseline 2, 2, 1 -> mean 5/3, sd sqrt(1/3); bound m + qnorm(0.95) * sd.
  EXPECT_NEAR(std::get<double>(t->rows[8][2]), 5.0 / 3 + 1.6448536269514722 * std::sqrt(1.0 / 3),
              1e-12);
  EXPECT_EQ(t->rows[8][3], ResultValue{std::string("true")});
  EXPECT_EQ(t->rows[9][3], ResultValue{std::string("false")});
  counts.rows[5][1] = std::string("<5");
  auto withheld = applySurveil(counts, **request);
  ASSERT_FALSE(withheld.isOk());
  EXPECT_NE(withheld.status().message().find("2024-W05"), std::string::npos);
}

TEST(SurveilTest, FarringtonArgumentsAndTable) {
  auto r = parseSurveil(
      "surveil(d, b = 3, method = \"farrington_improved\", alpha = 0.01, reweight = false, "
      "powertrans = \"1/2\", limit_cases = 2) where disease = \"influenza\"");
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  const stats::FarringtonOptions& o = (*r)->farrington;
  EXPECT_EQ((*r)->method, SurveilRequest::Method::kFarrington);
  // The improved defaults, then the arguments, in whatever order they were written.
  EXPECT_EQ(o.noPeriods, 10);
  EXPECT_EQ(o.pastWeeksNotIncluded, 26);
  EXPECT_EQ(o.thresholdMethod, stats::FarringtonThreshold::kNbPlugin);
  EXPECT_EQ(o.b, 3);
  EXPECT_EQ(o.alpha, 0.01);
  EXPECT_FALSE(o.reweight);
  EXPECT_EQ(o.powertrans, stats::PowerTransform::kHalf);
  EXPECT_EQ(o.limitCases, 2);
  auto plain = parseSurveil("surveil(d, method = \"farrington\")");
  ASSERT_TRUE(plain.isOk());
  EXPECT_EQ((*plain)->farrington.noPeriods, 1);
  EXPECT_EQ((*plain)->farrington.b, 5);

  // The table carries stats::farringtonFlexible's bounds and alarms (compared with R in
  // tests/stats/farrington_r_test.cc): an outbreak in the last weeks is flagged.
  ResultTable counts;
  counts.columns = {"week(d)", "count"};
  counts.groupColumns = 1;
  counts.statistics = {"count"};
  std::vector<double> x;
  for (int k = 0; k < 52 * 5 + 10; ++k) {
    const int64_t c = 10 + (k % 7) - 3 + (k >= 52 * 5 + 7 ? 40 : 0);
    x.push_back(static_cast<double>(c));
    counts.rows.push_back({std::to_string(k), ResultValue{c}});
  }
  auto t = applySurveil(counts, **plain);
  ASSERT_TRUE(t.isOk()) << t.status().toString();
  auto want = stats::farringtonFlexible(x, (*plain)->farrington);
  ASSERT_TRUE(want.isOk());
  size_t alarms = 0;
  for (size_t k = 0; k < x.size(); ++k) {
    if (!(*want)[k].assessed) {
      EXPECT_EQ(t->rows[k][2], ResultValue{}) << k;
      continue;
    }
    EXPECT_EQ(std::get<double>(t->rows[k][2]), (*want)[k].upperBound) << k;
    EXPECT_EQ(t->rows[k][3], ResultValue{std::string(*(*want)[k].alarm ? "true" : "false")});
    alarms += *(*want)[k].alarm;
  }
  EXPECT_EQ(t->rows[52 * 5 + 2][2], ResultValue{});  // week 263: before b * 52 + w + 1
  EXPECT_EQ(t->rows.back()[3], ResultValue{std::string("true")});
  EXPECT_EQ(t->rows[52 * 5 + 5][3], ResultValue{std::string("false")});
  EXPECT_EQ(alarms, 3u);
}

}  // namespace
}  // namespace trialmesh::query
