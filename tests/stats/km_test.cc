#include "stats/km.h"

#include <gtest/gtest.h>

#include <map>

#include "stats/rows.h"
#include "stats_test_util.h"

namespace trialmesh::stats {
namespace {

using testing::gaussSolve;
using testing::makeTrial;
using testing::Trial;

std::vector<SurvivalPoint> pts(const std::vector<double>& time, const std::vector<double>& status) {
  auto p = survivalPointsFromRows(SurvivalRows{nullptr, time, status, {}}, allRows(time.size()));
  EXPECT_TRUE(p.isOk());
  return *p;
}

// Each site's points of one cohort, merged the way query/partial.cc merges KmPoints.
std::vector<SurvivalPoint> federatedPoints(const Trial& t, uint32_t cohort) {
  std::map<double, SurvivalPoint> merged;
  for (uint32_t s = 0; s < 3; ++s) {
    std::vector<size_t> rows;
    for (size_t r : t.rowsOfSite(s)) {
      if (t.cohort[r] == cohort) rows.push_back(r);
    }
    auto p = survivalPointsFromRows(SurvivalRows{nullptr, t.time, t.event, {}}, rows);
    EXPECT_TRUE(p.isOk());
    for (const SurvivalPoint& q : *p) {
      SurvivalPoint& m = merged[q.time];
      m.time = q.time;
      m.events += q.events;
      m.censored += q.censored;
    }
  }
  std::vector<SurvivalPoint> out;
  for (const auto& [time, p] : merged) out.push_back(p);
  return out;
}

TEST(KaplanMeier, FederatedCurveEqualsNaiveProductLimit) {
  Trial t = makeTrial(900, 21);
  for (uint32_t cohort = 0; cohort < 4; ++cohort) {
    auto curve = kaplanMeier("cohort=" + std::to_string(cohort), federatedPoints(t, cohort));
    ASSERT_TRUE(curve.isOk()) << curve.status().toString();
    // Naive: walk the complete rows of the cohort in time order.
    std::vector<std::pair<double, double>> rows;
    for (size_t r = 0; r < t.n; ++r) {
      if (t.cohort[r] == cohort && !std::isnan(t.event[r])) rows.push_back({t.time[r], t.event[r]});
    }
    std::sort(rows.begin(), rows.end());
    EXPECT_EQ(curve->n, rows.size());
    double s = 1, gw = 0;
    size_t i = 0, k = 0;
    while (i < rows.size()) {
      const double time = rows[i].first;
      const double atRisk = static_cast<double>(rows.size() - i);
      double d = 0, c = 0;
      for (; i < rows.size() && rows[i].first == time; ++i) (rows[i].second == 1 ? d : c) += 1;
      ASSERT_LT(k, curve->rows.size());
      const KmRow& row = curve->rows[k++];
      EXPECT_EQ(row.time, time);
      EXPECT_EQ(row.nRisk, atRisk);
      EXPECT_EQ(row.nEvent, d);
      EXPECT_EQ(row.nCensor, c);
      s *= 1 - d / atRisk;
      if (d > 0) gw += d / (atRisk * (atRisk - d));
      EXPECT_REL(row.survival, s, 1e-12);
      EXPECT_REL(row.stdErr, s * std::sqrt(gw), 1e-12);
      if (s > 0) {
        EXPECT_REL(row.lower, s * std::exp(-1.959963984540054 * std::sqrt(gw)), 1e-12);
        EXPECT_REL(row.upper, std::min(1.0, s * std::exp(1.959963984540054 * std::sqrt(gw))),
                   1e-12);
      }
    }
    EXPECT_EQ(k, curve->rows.size());
    if (cohort == 3) {  // all censored: flat at 1, no median
      EXPECT_EQ(curve->events, 0u);
      EXPECT_EQ(curve->rows.back().survival, 1.0);
      EXPECT_TRUE(std::isnan(curve->median));
      EXPECT_TRUE(std::isnan(curve->medianLower));
    }
  }
}

// R 4.2.2, survival 3.5-3:
//   f <- survfit(Surv(c(1,2,3,5,6,7), c(1,1,1,0,1,0)) ~ 1); summary(f)$table
//   -> median 4.5, 0.95LCL 2, 0.95UCL NA; f$lower[3] = 0.2246303477692667
TEST(KaplanMeier, MedianMidpointWhenCurveSitsAtHalf) {
  auto c = kaplanMeier("all", pts({1, 2, 3, 5, 6, 7}, {1, 1, 1, 0, 1, 0}));
  ASSERT_TRUE(c.isOk());
  EXPECT_DOUBLE_EQ(c->median, 4.5);
  EXPECT_DOUBLE_EQ(c->medianLower, 2);
  EXPECT_TRUE(std::isnan(c->medianUpper));
  EXPECT_REL(c->rows[2].lower, 0.2246303477692667, 1e-13);
  EXPECT_EQ(c->rows[2].upper, 1.0);
}

// R: survfit(Surv(c(1,2,3,4), c(1,1,0,0)) ~ 1): print.survfit median 2, LCL 1, UCL NA (the
// curve ends at exactly 0.5, so there is no later drop to average with).
// R: survfit(Surv(c(2,4,6,8,10,12,14,16), c(1,1,1,1,0,1,1,1)) ~ 1): median 10, LCL 6, UCL NA;
//   at time 8 lower 0.2500488218628047, upper 0.999804750678524; at 16 surv 0, limits NA.
TEST(KaplanMeier, MedianConventionsMatchR) {
  auto a = kaplanMeier("a", pts({1, 2, 3, 4}, {1, 1, 0, 0}));
  ASSERT_TRUE(a.isOk());
  EXPECT_DOUBLE_EQ(a->median, 2);
  EXPECT_DOUBLE_EQ(a->medianLower, 1);
  EXPECT_TRUE(std::isnan(a->medianUpper));
  auto b = kaplanMeier("b", pts({2, 4, 6, 8, 10, 12, 14, 16}, {1, 1, 1, 1, 0, 1, 1, 1}));
  ASSERT_TRUE(b.isOk());
  EXPECT_DOUBLE_EQ(b->median, 10);
  EXPECT_DOUBLE_EQ(b->medianLower, 6);
  EXPECT_TRUE(std::isnan(b->medianUpper));
  EXPECT_REL(b->rows[3].lower, 0.2500488218628047, 1e-13);
  EXPECT_REL(b->rows[3].upper, 0.999804750678524, 1e-13);
  EXPECT_EQ(b->rows[7].survival, 0.0);
  EXPECT_TRUE(std::isnan(b->rows[7].lower));
  EXPECT_TRUE(std::isnan(b->rows[7].upper));
}

TEST(KaplanMeier, RejectsUnsortedTimes) {
  auto c = kaplanMeier("arm=A", {{2, 1, 0}, {1, 1, 0}});
  ASSERT_FALSE(c.isOk());
  EXPECT_NE(c.status().message().find("survival group 'arm=A': times must be strictly ascending"),
            std::string::npos);
}

TEST(LogRank, FederatedTestEqualsNaiveRiskSetComputation) {
  Trial t = makeTrial(900, 22);
  std::vector<SurvivalGroup> groups;
  for (uint32_t c = 0; c < 4; ++c) {
    groups.push_back({"cohort=" + std::to_string(c), federatedPoints(t, c)});
  }
  auto test = logRank(groups);
  ASSERT_TRUE(test.isOk()) << test.status().toString();
  // Naive: at every distinct event time count at-risk and deaths per group by scanning rows.
  std::vector<double> times;
  for (size_t r = 0; r < t.n; ++r) {
    if (t.event[r] == 1) times.push_back(t.time[r]);
  }
  std::sort(times.begin(), times.end());
  times.erase(std::unique(times.begin(), times.end()), times.end());
  const size_t g = 4;
  std::vector<double> o(g, 0), e(g, 0), v(g * g, 0);
  for (double time : times) {
    std::vector<double> n(g, 0), d(g, 0);
    for (size_t r = 0; r < t.n; ++r) {
      if (std::isnan(t.event[r]) || t.time[r] < time) continue;
      n[t.cohort[r]] += 1;
      if (t.time[r] == time && t.event[r] == 1) d[t.cohort[r]] += 1;
    }
    double nt = 0, dt = 0;
    for (size_t i = 0; i < g; ++i) {
      nt += n[i];
      dt += d[i];
      o[i] += d[i];
    }
    for (size_t i = 0; i < g; ++i) {
      e[i] += dt * n[i] / nt;
      for (size_t j = 0; j < g; ++j) {
        if (nt > 1) v[i * g + j] += dt * (nt - dt) / (nt - 1) * n[i] / nt * ((i == j) - n[j] / nt);
      }
    }
  }
  std::vector<double> sub(9), oe(3);
  for (size_t i = 0; i < 3; ++i) {
    oe[i] = o[i + 1] - e[i + 1];
    for (size_t j = 0; j < 3; ++j) sub[i * 3 + j] = v[(i + 1) * g + j + 1];
  }
  std::vector<double> sol = gaussSolve(sub, oe);
  double chi = 0;
  for (size_t i = 0; i < 3; ++i) chi += sol[i] * oe[i];
  for (size_t i = 0; i < g; ++i) {
    EXPECT_EQ(test->groups[i].observed, o[i]);
    EXPECT_REL(test->groups[i].expected, e[i], 1e-12);
    EXPECT_REL(test->groups[i].variance, v[i * g + i], 1e-12);
  }
  EXPECT_EQ(test->groups[3].observed, 0);  // the all-censored cohort
  EXPECT_GT(test->groups[3].expected, 0);
  EXPECT_EQ(test->df, 3);
  EXPECT_REL(test->chiSquare, chi, 1e-9);
  EXPECT_LT(test->pValue, 1e-6);
}

TEST(LogRank, NeedsTwoGroups) {
  auto test = logRank({{"only", {{1, 1, 0}}}});
  ASSERT_FALSE(test.isOk());
  EXPECT_NE(test.status().message().find("at least two groups"), std::string::npos);
}

}  // namespace
}  // namespace trialmesh::stats
