// `by week(date)`, `day(date)`, `month(date)`: parsing and canonical text, ISO week labels, and
// counts against a row-by-row reference (every bin of the range present, zeros included,
// dates outside the range and missing dates not counted).
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <map>

#include "query/time_group.h"
#include "query_test_util.h"

namespace trialmesh::query::testing {
namespace {

int32_t day(const char* iso) { return *storage::parseIsoDate(iso); }

double toDouble(const ResultValue& v) {
  if (const auto* i = std::get_if<int64_t>(&v)) return static_cast<double>(*i);
  return std::get<double>(v);
}

TEST(TimeGroupTest, ParsesAndRoundTrips) {
  auto q = parseQuery("count by arm, WEEK( enrolled , date \"2022-01-05\", '2022-03-01')");
  ASSERT_TRUE(q.isOk()) << q.status().toString();
  ASSERT_EQ(q->by.size(), 2u);
  EXPECT_EQ(q->by[1], "week(enrolled, \"2022-01-05\", \"2022-03-01\")");
  const std::string canonical = canonicalQueryText(*q);
  EXPECT_EQ(canonical, "count by arm, week(enrolled, \"2022-01-05\", \"2022-03-01\")");
  EXPECT_EQ(*parseQuery(canonical), *q);
  EXPECT_EQ(*parseQueryJson(toJson(*q)), *q);
  EXPECT_EQ(parseQuery("count by month(`enrolled`)")->by[0], "month(enrolled)");
}

TEST(TimeGroupTest, RejectsMalformedGroups) {
  for (const char* bad :
       {"count by week(enrolled, \"2022-01-05\")",
        "count by week(enrolled, \"2022-02-30\", \"2022-03-01\")", "count by week(enrolled, 3, 4)",
        "count by year(enrolled)", "count by week(enrolled"}) {
    EXPECT_FALSE(parseQuery(bad).isOk()) << bad;
  }
  auto reversed = parseTimeGroup("week(x, \"2022-03-01\", \"2022-01-01\")");
  ASSERT_FALSE(reversed.isOk());
  EXPECT_NE(reversed.status().toString().find("from > to"), std::string::npos);
}

TEST(TimeGroupTest, IsoWeeksAndMonths) {
  // 2021-01-03 is the Sunday of ISO week 2020-W53; 2024-12-30 (a Monday) starts 2025-W01.
  TimeBins w = timeBins(TimeUnit::kWeek, day("2020-12-30"), day("2025-01-01"));
  EXPECT_EQ(w.firstDay, day("2020-12-28"));
  EXPECT_EQ(w.lastDay, day("2025-01-05"));
  EXPECT_EQ(timeBinLabel(w, 0), "2020-W53");
  EXPECT_EQ(timeBinLabel(w, timeBinOf(w, day("2021-01-03"))), "2020-W53");
  EXPECT_EQ(timeBinLabel(w, timeBinOf(w, day("2021-01-04"))), "2021-W01");
  EXPECT_EQ(timeBinLabel(w, w.count - 1), "2025-W01");
  EXPECT_EQ(timeBinLabel(w, timeBinOf(w, day("2024-12-29"))), "2024-W52");
  EXPECT_EQ(w.count, 210u);
  TimeBins m = timeBins(TimeUnit::kMonth, day("2023-11-15"), day("2024-02-29"));
  EXPECT_EQ(m.count, 4u);
  EXPECT_EQ(m.lastDay, day("2024-02-29"));
  EXPECT_EQ(timeBinLabel(m, timeBinOf(m, day("2024-02-01"))), "2024-02");
  EXPECT_EQ(timeBinLabel(m, 1), "2023-12");
  TimeBins d = timeBins(TimeUnit::kDay, day("1969-12-30"), day("1970-01-02"));
  EXPECT_EQ(d.count, 4u);
  EXPECT_EQ(timeBinLabel(d, 1), "1969-12-31");
  // Before 1970: Monday 1969-12-29 starts the week of 1970-01-01 (1970-W01).
  TimeBins e = timeBins(TimeUnit::kWeek, day("1969-12-31"), day("1970-01-01"));
  EXPECT_EQ(e.firstDay, day("1969-12-29"));
  EXPECT_EQ(timeBinLabel(e, 0), "1970-W01");
}

// Rows enrolled 19000..19800 (2022-01-08 .. 2024-03-18), some missing.
TEST(TimeGroupTest, CountsEveryBinOfTheRange) {
  Dictionary dict = studyDictionary();
  std::vector<Row> rows = randomRows(3000, 7);
  auto table = makeTable(dict, rows);
  const int32_t from = day("2023-06-01"), to = day("2023-09-30");
  for (TimeUnit unit : {TimeUnit::kDay, TimeUnit::kWeek, TimeUnit::kMonth}) {
    TimeBins bins = timeBins(unit, from, to);
    const std::string text =
        fmt::format("count by sex, {}(enrolled, \"2023-06-01\", \"2023-09-30\") where arm != \"B\"",
                    timeUnitName(unit));
    SCOPED_TRACE(text);
    std::map<std::pair<int64_t, uint32_t>, double> want;
    for (const Row& r : rows) {
      if (r[kEnrolled].missing || r[kArm].i == 1) continue;
      if (r[kEnrolled].i < bins.firstDay || r[kEnrolled].i > bins.lastDay) continue;
      want[{r[kSex].i, timeBinOf(bins, r[kEnrolled].i)}] += 1;
    }
    ResultTable t = runQuery(text, *table, 2);
    ASSERT_EQ(t.rows.size(), 2 * bins.count);
    ASSERT_EQ(t.columns[1], std::string(timeUnitName(unit)) + "(enrolled)");
    size_t zeros = 0;
    for (uint32_t c = 0; c < t.rows.size(); ++c) {
      const uint32_t bin = c % bins.count;
      EXPECT_EQ(std::get<std::string>(t.rows[c][0]), c < bins.count ? "F" : "M");
      EXPECT_EQ(std::get<std::string>(t.rows[c][1]), timeBinLabel(bins, bin));
      const double got = toDouble(t.rows[c][2]);
      auto it = want.find({c / bins.count, bin});
      EXPECT_EQ(got, it == want.end() ? 0.0 : it->second) << "cell " << c;
      zeros += got == 0;
    }
    if (unit == TimeUnit::kDay) {
      EXPECT_GT(zeros, 0u);  // empty days are present with 0
    }
  }
}

TEST(TimeGroupTest, RangeFromTheDictionaryOrAnError) {
  Dictionary dict = studyDictionary();
  auto table = makeTable(dict, randomRows(100, 3));
  auto q = parseQuery("count by week(enrolled)");
  ASSERT_TRUE(q.isOk());
  auto b = bindQuery(*q, dict);
  ASSERT_FALSE(b.isOk());
  EXPECT_NE(b.status().toString().find("declares no min and max"), std::string::npos);
  auto notDate = bindQuery(*parseQuery("count by week(age)"), dict);
  ASSERT_FALSE(notDate.isOk());
  EXPECT_NE(notDate.status().toString().find("needs a date variable"), std::string::npos);

  std::vector<Variable> vars = dict.variables();
  vars[kEnrolled].min = day("2022-01-01");
  vars[kEnrolled].max = day("2024-12-31");
  auto bounded = Dictionary::create("TEST-1", std::move(vars));
  ASSERT_TRUE(bounded.isOk());
  auto b2 = bindQuery(*q, *bounded);
  ASSERT_TRUE(b2.isOk()) << b2.status().toString();
  EXPECT_EQ(b2->cellCount(), timeBins(TimeUnit::kWeek, day("2022-01-01"), day("2024-12-31")).count);
}

}  // namespace
}  // namespace trialmesh::query::testing
