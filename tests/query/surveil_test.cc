// surveil(...): the rewrite to a count query, argument errors, and the detection table built
// from a count series (bounds and alarms as stats/surveillance.h computes them).
#include <gtest/gtest.h>

#include <cmath>

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
       {"surveil(d)", "surveil(d, method = \"farrington\")",
        "surveil(d, method = \"c1\", bogus = 1)", "surveil(d, method = \"c1\", baseline = x)",
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

}  // namespace
}  // namespace trialmesh::query
