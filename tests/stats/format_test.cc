#include "stats/format.h"

#include <gtest/gtest.h>

namespace trialmesh::stats {
namespace {

// R 4.2.2: format(c(2, NA, 10.25), digits = 4) and format(c(0.017045, 0.009223, -0.513219,
// 0.167458), digits = 4)
TEST(Format, NumbersLikeRFormat) {
  EXPECT_EQ(formatNumbers({0.017045, 0.009223, -0.513219, 0.167458}, 4),
            (std::vector<std::string>{" 0.017045", " 0.009223", "-0.513219", " 0.167458"}));
  // format(c(1.5, 0.000012345, 123.4), digits = 4): scientific is narrower.
  EXPECT_EQ(formatNumbers({1.5, 0.000012345, 123.4}, 4),
            (std::vector<std::string>{"1.500e+00", "1.234e-05", "1.234e+02"}));
  EXPECT_EQ(formatNumbers({2.0, std::nan(""), 10.25}, 4),
            (std::vector<std::string>{" 2.00", "   NA", "10.25"}));
}

// R: format.pval(1e-20, digits = 4); format.pval(1e-20, digits = 3); format.pval(0.0123, 3)
TEST(Format, PValuesLikeRFormatPval) {
  EXPECT_EQ(formatPValue(1e-20, 4), "< 2.2e-16");
  EXPECT_EQ(formatPValue(1e-20, 3), "<2e-16");
  EXPECT_EQ(formatPValue(0.0123, 3), "0.0123");
  EXPECT_EQ(formatPValue(0.0000123, 3), "1.23e-05");
}

}  // namespace
}  // namespace trialmesh::stats

namespace trialmesh::stats {
namespace {

TEST(Format, JsonCarriesEveryNumberAndNullForNA) {
  KmCurve curve;
  curve.name = "arm=A";
  curve.n = 2;
  curve.median = std::nan("");
  curve.rows.push_back({5, 2, 1, 0, 0.5, 0.35355, 0.125, 1});
  nlohmann::json j = toJson(curve);
  EXPECT_EQ(j["group"], "arm=A");
  EXPECT_TRUE(j["median"].is_null());
  EXPECT_EQ(j["conf_type"], "log");
  EXPECT_EQ(j["rows"][0]["n_risk"], 2);
  EXPECT_DOUBLE_EQ(j["rows"][0]["survival"].get<double>(), 0.5);

  LinearFit fit;
  fit.coefficients.push_back({"(Intercept)", 4.0, 0.5, 8.0, 1e-5});
  fit.fStatistic = std::nan("");
  fit.covariance = {0.25};
  nlohmann::json l = toJson(fit);
  EXPECT_EQ(l["model"], "linear");
  EXPECT_EQ(l["coefficients"][0]["name"], "(Intercept)");
  EXPECT_DOUBLE_EQ(l["coefficients"][0]["t_value"].get<double>(), 8.0);
  EXPECT_TRUE(l["f_statistic"]["value"].is_null());
  EXPECT_DOUBLE_EQ(l["covariance"][0][0].get<double>(), 0.25);
}

// The layout of R's summary(survfit(...)): header as R prints it; event times only (the
// censored time 5 is left out). R formats each column jointly (3 significant digits for the
// smallest entry), so a one-event curve like this one prints 0.583 where R's four-event
// curve of the same data prints 0.5827.
TEST(Format, KmSummaryListsEventTimesOnly) {
  KmCurve c;
  c.name = "all";
  c.rows = {{1, 6, 1, 0, 0.8333333, 0.1521452, 0.5826548, 1},
            {5, 3, 0, 1, 0.5, 0.2041241, 0.2246303, 1}};
  const std::string text = formatKmSummary({c});
  EXPECT_NE(text.find(" time n.risk n.event survival std.err lower 95% CI upper 95% CI\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("    1      6       1    0.833   0.152        0.583            1\n"),
            std::string::npos)
      << text;
  EXPECT_EQ(text.find("    5      3"), std::string::npos);
}

}  // namespace
}  // namespace trialmesh::stats
