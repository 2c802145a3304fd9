// Disclosure control on merged results: primary and secondary suppression, statistic-level and
// histogram suppression, Kaplan–Meier groups, and an attacker who knows every published margin.
#include "query/disclosure.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <random>
#include <set>

#include "query_test_util.h"

namespace trialmesh::query::testing {
namespace {

struct Rows {
  std::vector<Row> rows;
  // Appends n rows in (sex, arm); bmi is set on the first `withBmi` of them (default all).
  Rows& add(int64_t sex, int64_t arm, size_t n, size_t withBmi = SIZE_MAX, double bmiStart = 22.0) {
    for (size_t i = 0; i < n; ++i) {
      Row r(kColumns);
      r[kSex] = Cell::integer(sex);
      r[kArm] = Cell::integer(arm);
      r[kBmi] =
          i < withBmi ? Cell::real(bmiStart + 0.5 * static_cast<double>(i % 10)) : Cell::none();
      r[kOsDays] = Cell::integer(static_cast<int64_t>(10 + 7 * i));
      r[kDeath] = Cell::integer(static_cast<int64_t>(i % 2));
      r[kStatus] = Cell::integer(0);
      r[kLab] = Cell::real(1.0);
      rows.push_back(std::move(r));
    }
    return *this;
  }
};

struct Outcome {
  BoundQuery bound;
  PartialResult partial;
  ResultTable plain;  // finalize without disclosure control
  ResultTable table;  // with it
  DisclosureReport report;
};

Outcome run(const std::string& text, const std::vector<Row>& rows, DisclosurePolicy policy) {
  const Dictionary dict = studyDictionary();
  auto table = makeTable(dict, rows);
  auto q = parseQuery(text);
  EXPECT_TRUE(q.isOk()) << q.status().toString();
  auto b = bindQuery(*q, dict);
  EXPECT_TRUE(b.isOk()) << b.status().toString();
  auto p = execute(*b, *table, threadsOnly(1));
  EXPECT_TRUE(p.isOk()) << p.status().toString();
  auto plain = finalize(*p, *b);
  EXPECT_TRUE(plain.isOk());
  auto d = finalizeWithDisclosureControl(*p, *b, policy);
  EXPECT_TRUE(d.isOk()) << d.status().toString();
  return {*b, *p, *plain, d->table, d->report};
}

bool isMarker(const ResultValue& v) {
  const auto* s = std::get_if<std::string>(&v);
  return s != nullptr && *s == kSuppressedMarker;
}

// Which rows have the marker in column `col`.
std::vector<bool> markedRows(const ResultTable& t, size_t col) {
  std::vector<bool> out;
  for (const auto& row : t.rows) out.push_back(isMarker(row[col]));
  return out;
}

TEST(Disclosure, OneWayTablePrimaryAndSecondary) {
  // arm A 3 rows (below 5), B 10, C 20: A is primary; the total (count without `by`) minus
  // B and C would give A back, so the smallest other cell, B, is suppressed too.
  Rows r;
  r.add(0, 0, 3).add(0, 1, 10).add(1, 2, 20);
  Outcome x = run("count, mean(bmi) by arm", r.rows, {5});
  EXPECT_EQ(x.report.primaryCells, 1u);
  EXPECT_EQ(x.report.secondaryCells, 1u);
  EXPECT_EQ(x.report.suppressedCells(), 2u);
  EXPECT_EQ(x.report.suppressedValues, 4u);
  const size_t g = x.table.groupColumns;
  EXPECT_EQ(markedRows(x.table, g), (std::vector<bool>{true, true, false}));
  EXPECT_EQ(markedRows(x.table, g + 1), (std::vector<bool>{true, true, false}));
  EXPECT_EQ(x.table.rows[2][g], ResultValue(int64_t{20}));
  EXPECT_EQ(x.table.rows[2][g + 1], x.plain.rows[2][g + 1]);
  // Group columns are untouched.
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(x.table.rows[i][0], x.plain.rows[i][0]);
  ASSERT_FALSE(x.table.notes.empty());
  EXPECT_EQ(x.table.notes.back(),
            "disclosure control (minimum cell size 5): 1 cell below the minimum, 1 more to "
            "protect totals; 4 values shown as \"suppressed\"");
}

TEST(Disclosure, ZerosAreReleasedAndNeverChosenAsSecondary) {
  Rows r;
  r.add(0, 0, 3).add(1, 2, 20);  // arm B has nobody
  Outcome x = run("count by arm", r.rows, {5});
  const size_t g = x.table.groupColumns;
  EXPECT_EQ(markedRows(x.table, g), (std::vector<bool>{true, false, true}));
  EXPECT_EQ(x.table.rows[1][g], ResultValue(int64_t{0}));

  // suppressZeros: the zero is a primary suppression too; two suppressed cells protect each
  // other and C is released.
  Outcome z = run("count by arm", r.rows, {5, true});
  EXPECT_EQ(markedRows(z.table, g), (std::vector<bool>{true, true, false}));
  EXPECT_EQ(z.report.primaryCells, 2u);
  EXPECT_EQ(z.report.secondaryCells, 0u);
}

TEST(Disclosure, TwoWayTableReachesTheFixedPoint) {
  //        A   B   C
  //   F    2   8   9
  //   M    6   7  12      minimum 5
  // F-A is primary. Column A: M-A (6) goes; row F: F-B (8 < 9); row M: M-B (7 < 12). Then
  // every row and column holds 0 or 2 suppressed cells.
  Rows r;
  r.add(0, 0, 2).add(0, 1, 8).add(0, 2, 9).add(1, 0, 6).add(1, 1, 7).add(1, 2, 12);
  Outcome x = run("count by sex, arm", r.rows, {5});
  const size_t g = x.table.groupColumns;
  EXPECT_EQ(markedRows(x.table, g), (std::vector<bool>{true, true, false, true, true, false}));
  EXPECT_EQ(x.report.primaryCells, 1u);
  EXPECT_EQ(x.report.secondaryCells, 3u);

  // The cross-tab view shows the marker in the cells and in every total that includes one.
  const std::string text = formatTable(x.table);
  EXPECT_NE(text.find("sex \\ arm           A           B   C       total"), std::string::npos)
      << text;
  EXPECT_NE(text.find("F          suppressed  suppressed   9  suppressed"), std::string::npos)
      << text;
  EXPECT_NE(text.find("M          suppressed  suppressed  12  suppressed"), std::string::npos)
      << text;
  EXPECT_NE(text.find("total      suppressed  suppressed  21  suppressed"), std::string::npos)
      << text;
  // Programs get null plus the column's name in "suppressed", never text in a number column.
  const std::string json = formatJson(x.table);
  EXPECT_NE(json.find(R"({"sex":"F","arm":"A","count":null,"suppressed":["count"]})"),
            std::string::npos)
      << json;
  EXPECT_NE(json.find(R"({"sex":"F","arm":"C","count":9,"suppressed":[]})"), std::string::npos)
      << json;
  EXPECT_EQ(json.find("\"suppressed\","), std::string::npos) << json;
  const std::string csv = formatCsv(x.table);
  EXPECT_NE(csv.find("F,A,NA,TRUE,count\r\n"), std::string::npos) << csv;
  EXPECT_NE(csv.find("F,C,9,FALSE,\r\n"), std::string::npos) << csv;
}

// The attacker: knows every released cell and every line total that would itself be released
// (total 0 or >= the minimum), and solves any line with a single unknown, repeatedly.
// Returns the cells it learns that were suppressed as primaries.
std::vector<size_t> attack(const std::vector<uint32_t>& dims, const std::vector<uint64_t>& counts,
                           const std::vector<bool>& released, uint32_t minimum) {
  const size_t total = counts.size();
  std::vector<bool> known = released;
  bool progress = true;
  while (progress) {
    progress = false;
    size_t stride = total;
    for (size_t d = 0; d < dims.size(); ++d) {
      stride /= dims[d];
      for (size_t base = 0; base < total; ++base) {
        if ((base / stride) % dims[d] != 0) continue;
        uint64_t lineTotal = 0;
        std::vector<size_t> unknown;
        for (size_t k = 0; k < dims[d]; ++k) {
          const size_t i = base + k * stride;
          lineTotal += counts[i];
          if (!known[i]) unknown.push_back(i);
        }
        const bool totalPublished = lineTotal == 0 || lineTotal >= minimum;
        if (totalPublished && unknown.size() == 1) {
          known[unknown[0]] = true;
          progress = true;
        }
      }
    }
  }
  std::vector<size_t> learnt;
  for (size_t i = 0; i < total; ++i)
    if (known[i] && !released[i] && counts[i] > 0 && counts[i] < minimum) learnt.push_back(i);
  return learnt;
}

TEST(Disclosure, RandomTablesResistTheMarginAttack) {
  // sex (2) x arm (3) x smoker (2 + NA) cells with small random counts.
  std::mt19937_64 rng(20261122);
  std::uniform_int_distribution<int> count(0, 14);
  std::uniform_int_distribution<int> smokerLevel(0, 2);
  int withSuppression = 0;
  for (int trial = 0; trial < 60; ++trial) {
    SCOPED_TRACE("trial " + std::to_string(trial));
    std::vector<Row> rows;
    std::vector<uint64_t> counts(18, 0);
    for (int s = 0; s < 2; ++s) {
      for (int a = 0; a < 3; ++a) {
        for (int k = 0; k < 3; ++k) {
          const int n = count(rng) < 5 ? count(rng) % 4 : count(rng);
          for (int i = 0; i < n; ++i) {
            Row r = Rows().add(s, a, 1).rows[0];
            r[kSmoker] = k == 2 ? Cell::none() : Cell::integer(k);
            rows.push_back(std::move(r));
          }
          counts[static_cast<size_t>(s * 9 + a * 3 + k)] = static_cast<uint64_t>(n);
        }
      }
    }
    Outcome x = run("count by sex, arm, smoker", rows, {5});
    ASSERT_EQ(x.table.rows.size(), 18u);
    const size_t g = x.table.groupColumns;
    std::vector<bool> released(18);
    for (size_t i = 0; i < 18; ++i) {
      released[i] = !isMarker(x.table.rows[i][g]);
      if (released[i]) {
        EXPECT_EQ(x.table.rows[i][g], ResultValue(static_cast<int64_t>(counts[i])));
      }
      if (counts[i] > 0 && counts[i] < 5) {
        EXPECT_FALSE(released[i]) << "cell " << i;  // every primary is suppressed
      }
    }
    EXPECT_TRUE(attack({2, 3, 3}, counts, released, 5).empty());
    withSuppression += x.report.secondaryCells > 0;
  }
  EXPECT_GT(withSuppression, 30);  // the tables exercise secondary suppression
}

TEST(Disclosure, StatisticsWithFewValuesAreSuppressedInLargeCells) {
  // Every arm has 10 rows; bmi is known for 2 in A, 8 in B, 10 in C.
  Rows r;
  r.add(0, 0, 10, 2).add(0, 1, 10, 8).add(1, 2, 10, 10);
  Outcome x = run("count, count(bmi), mean(bmi), sd(bmi) by arm", r.rows, {5});
  const size_t g = x.table.groupColumns;
  EXPECT_EQ(x.report.primaryCells, 0u);
  EXPECT_EQ(markedRows(x.table, g), (std::vector<bool>{false, false, false}));
  for (size_t s = 1; s <= 3; ++s)
    EXPECT_EQ(markedRows(x.table, g + s), (std::vector<bool>{true, true, false})) << s;
  EXPECT_EQ(x.report.statisticValues, 6u);
  EXPECT_EQ(x.table.rows[2][g + 1], ResultValue(int64_t{10}));
  // 10 rows lack bmi in total: released as is.
  EXPECT_NE(std::find(x.table.notes.begin(), x.table.notes.end(),
                      "mean(bmi): 10 rows with missing bmi skipped"),
            x.table.notes.end());

  // A total of 2 missing values is itself a small count.
  Rows few;
  few.add(0, 0, 10, 9).add(0, 1, 10, 9).add(1, 2, 10);
  Outcome y = run("mean(bmi) by arm", few.rows, {5});
  EXPECT_NE(std::find(y.table.notes.begin(), y.table.notes.end(),
                      "mean(bmi): fewer than 5 rows with missing bmi skipped"),
            y.table.notes.end());
  EXPECT_EQ(std::find(y.plain.notes.begin(), y.plain.notes.end(),
                      "mean(bmi): fewer than 5 rows with missing bmi skipped"),
            y.plain.notes.end());
}

TEST(Disclosure, HistogramBinsAndTheirCellTotals) {
  // sex F: bins [15,20) 6, [20,25) 2, [25,30) 9, [30,35) 10, outside 0, missing 7
  // sex M: 8, 8, 8, 8, outside 6, missing 1
  auto addBins = [](Rows& r, int64_t sex, std::vector<std::pair<double, size_t>> values,
                    size_t missing) {
    for (auto [v, n] : values) {
      for (size_t i = 0; i < n; ++i) {
        r.add(sex, 0, 1);
        r.rows.back()[kBmi] = Cell::real(v);
      }
    }
    r.add(sex, 0, missing, 0);
  };
  Rows r;
  addBins(r, 0, {{16, 6}, {21, 2}, {26, 9}, {31, 10}}, 7);
  addBins(r, 1, {{16, 8}, {21, 8}, {26, 8}, {31, 8}, {40, 6}}, 1);
  Outcome x = run("hist(bmi, 15, 35, 5) by sex", r.rows, {5});
  // Rows per sex: 4 bins, outside, missing. Primary: F [20,25) (2), M missing (1). Along sex:
  // M [20,25) (8) and F missing (7). Then each sex's slots hold two suppressed counts.
  const size_t count = x.table.groupColumns + 3;
  EXPECT_EQ(markedRows(x.table, count),
            (std::vector<bool>{false, true, false, false, false, true,  //
                               false, true, false, false, false, true}));
  EXPECT_EQ(x.report.primaryBins, 2u);
  EXPECT_EQ(x.report.secondaryBins, 2u);
  EXPECT_EQ(x.report.primaryCells, 0u);
  EXPECT_EQ(x.table.rows[4][count], ResultValue(int64_t{0}));  // F outside: a released zero
  std::vector<uint64_t> counts = {6, 2, 9, 10, 0, 7, 8, 8, 8, 8, 6, 1};
  std::vector<bool> released;
  for (const auto& row : x.table.rows) released.push_back(!isMarker(row[count]));
  EXPECT_TRUE(attack({2, 6}, counts, released, 5).empty());
}

TEST(Disclosure, SmallHistogramCellLosesAllItsBins) {
  Rows r;
  r.add(0, 0, 3).add(1, 0, 30).add(1, 1, 0);
  Outcome x = run("hist(bmi, 20, 30, 5) by sex", r.rows, {5});
  // F has 3 rows: primary cell; M (the only other non-empty cell) is secondary.
  EXPECT_EQ(x.report.primaryCells, 1u);
  EXPECT_EQ(x.report.secondaryCells, 1u);
  const size_t count = x.table.groupColumns + 3;
  for (const auto& row : x.table.rows) EXPECT_TRUE(isMarker(row[count]));
}

// Survival at times and the restricted mean come from the released curve: a suppressed group's
// are withheld with it, the others are released as finalize computed them; rmean = common is
// withheld for every group, as its upper limit may be the suppressed group's last time.
TEST(Disclosure, SurvivalAtTimesAndRmeanFollowTheirCurve) {
  Rows r;
  r.add(0, 0, 3).add(0, 1, 20).add(1, 2, 30);  // arm A primary, B secondary, C released
  Outcome x = run("km(os_days, death, times = [12, 20], rmean = 100) by arm", r.rows, {5});
  ASSERT_EQ(x.table.reports.size(), 3u);
  ASSERT_EQ(x.plain.reports.size(), 3u);
  for (size_t c = 0; c < 2; ++c) {
    EXPECT_TRUE(x.plain.reports[c].rmean.has_value());
    EXPECT_FALSE(x.plain.reports[c].atTimes.empty());
    EXPECT_FALSE(x.table.reports[c].rmean.has_value()) << c;
    EXPECT_TRUE(x.table.reports[c].atTimes.empty()) << c;
  }
  ASSERT_TRUE(x.table.reports[2].rmean.has_value());
  EXPECT_EQ(x.table.reports[2].rmean->rmean, x.plain.reports[2].rmean->rmean);
  EXPECT_EQ(x.table.reports[2].rmean->stdErr, x.plain.reports[2].rmean->stdErr);
  ASSERT_EQ(x.table.reports[2].atTimes.size(), 2u);
  EXPECT_EQ(x.table.reports[2].atTimes[1].survival, x.plain.reports[2].atTimes[1].survival);
  // The printed summary (rmean table, survival at times) is withheld with the others.
  EXPECT_NE(x.plain.appendix.find("rmean*"), std::string::npos) << x.plain.appendix;
  EXPECT_TRUE(x.table.appendix.empty());
  const auto j = nlohmann::json::parse(formatJson(x.table));
  ASSERT_EQ(j["curves"].size(), 3u);
  EXPECT_TRUE(j["curves"][0]["survival_at_times"].is_null());
  EXPECT_TRUE(j["curves"][0]["rmean"].is_null());
  EXPECT_TRUE(j["curves"][1]["rmean"].is_null());
  EXPECT_EQ(j["curves"][2]["rmean"]["rmean"].get<double>(), x.plain.reports[2].rmean->rmean);
  EXPECT_EQ(j["curves"][2]["survival_at_times"].size(), 2u);
  const std::string csv = formatCsv(x.table);
  EXPECT_EQ(csv.find(fmt::format("{}", x.plain.reports[0].rmean->rmean)), std::string::npos);

  Outcome common = run("km(os_days, death, rmean = common) by arm", r.rows, {5});
  for (const auto& rep : common.plain.reports) EXPECT_TRUE(rep.rmean.has_value());
  for (const auto& rep : common.table.reports) EXPECT_FALSE(rep.rmean.has_value());
  std::string notes;
  for (const auto& n : common.table.notes) notes += n + "\n";
  EXPECT_NE(notes.find("rmean: withheld because a group is suppressed"), std::string::npos)
      << notes;
  // Without a suppressed group nothing is withheld.
  Rows big;
  big.add(0, 0, 30).add(1, 1, 30);
  Outcome open = run("km(os_days, death, times = [50], rmean = common) by arm", big.rows, {5});
  ASSERT_EQ(open.table.reports.size(), 3u);  // arm C has no rows: no curve, no figures
  for (size_t c = 0; c < 2; ++c) {
    EXPECT_TRUE(open.table.reports[c].rmean.has_value()) << c;
    EXPECT_EQ(open.table.reports[c].atTimes.size(), 1u) << c;
  }
  EXPECT_FALSE(open.table.reports[2].rmean.has_value());
}

TEST(Disclosure, KaplanMeierGroupsBelowTheMinimumBecomeOneRow) {
  Rows r;
  r.add(0, 0, 3).add(0, 1, 20).add(1, 2, 30);
  Outcome x = run("km(os_days, death) by arm", r.rows, {5});
  EXPECT_EQ(x.report.primaryCells, 1u);
  EXPECT_EQ(x.report.secondaryCells, 1u);
  // Arms A and B: one row of markers each; arm C: its 30 rows as finalize produced them.
  ASSERT_EQ(x.table.rows.size(), 32u);
  const size_t g = x.table.groupColumns;
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(x.table.rows[i][0], ResultValue(std::string(i == 0 ? "A" : "B")));
    for (size_t c = g; c < x.table.columns.size(); ++c) EXPECT_TRUE(isMarker(x.table.rows[i][c]));
  }
  for (size_t i = 0; i < 30; ++i) EXPECT_EQ(x.table.rows[2 + i], x.plain.rows[23 + i]) << i;
  const size_t perRow = x.table.columns.size() - g;
  EXPECT_EQ(x.report.suppressedValues, 2 * perRow);
  // Per-curve summaries of suppressed groups and the combined test/printout are withheld.
  const std::string notes = [&] {
    std::string all;
    for (const auto& n : x.table.notes) all += n + "\n";
    return all;
  }();
  EXPECT_EQ(notes.find("arm=A: n = "), std::string::npos) << notes;
  EXPECT_EQ(notes.find("arm=B: n = "), std::string::npos) << notes;
  EXPECT_TRUE(x.table.appendix.empty());
  EXPECT_EQ(notes.find("chisq"), std::string::npos) << notes;
  if (!x.plain.appendix.empty()) {
    EXPECT_NE(notes.find("arm=A: suppressed\n"), std::string::npos) << notes;
    EXPECT_NE(notes.find("arm=C: n = 30"), std::string::npos) << notes;
  }
  // The fields say the same: A and B hidden (no n, events or median), C shown, no test.
  ASSERT_EQ(x.table.curves.size(), 3u);
  EXPECT_EQ(x.table.curveSuppressed, (std::vector<bool>{true, true, false}));
  EXPECT_EQ(x.table.curves[0].n, 0u);
  EXPECT_EQ(x.table.curves[2].n, 30u);
  EXPECT_FALSE(x.table.logRank.has_value());
  EXPECT_TRUE(x.plain.logRank.has_value());
  const auto j = nlohmann::json::parse(formatJson(x.table));
  EXPECT_EQ(j["kind"], "survival");
  EXPECT_TRUE(j["logrank"].is_null());
  EXPECT_EQ(j["curves"][0]["suppressed"], true);
  EXPECT_TRUE(j["curves"][0]["n"].is_null());
  EXPECT_EQ(j["curves"][2]["n"], 30);
  EXPECT_TRUE(j["rows"][0]["survival"].is_null());
  EXPECT_EQ(j["rows"][0]["suppressed"].size(), perRow);
  EXPECT_TRUE(j["rows"][2]["survival"].is_number());
  // CSV: the suppressed group's row is NA throughout with its curve figures NA too; C's rows
  // carry C's median.
  const std::string csv = formatCsv(x.table);
  EXPECT_NE(csv.find("\r\nA,NA,NA,NA,NA,NA,NA,NA,NA,NA,NA,NA,NA,NA,NA,NA,TRUE,time;"),
            std::string::npos)
      << csv;
  const auto plainJson = nlohmann::json::parse(formatJson(x.plain));
  EXPECT_EQ(plainJson["curves"][2]["n"], 30);
  EXPECT_EQ(plainJson["logrank"]["groups"].size(), 3u);
  EXPECT_EQ(plainJson["logrank"]["variance"].size(), 3u);
  const std::string median =
      plainJson["curves"][2]["median"].is_null()
          ? std::string("NA")
          : fmt::format("{}", plainJson["curves"][2]["median"].get<double>());
  EXPECT_NE(formatCsv(x.plain).find("," + median + ","), std::string::npos);
}

TEST(Disclosure, WithoutByAndWithoutAMinimum) {
  Rows r;
  r.add(0, 0, 3);
  Outcome small = run("count, sum(age)", r.rows, {5});
  EXPECT_TRUE(isMarker(small.table.rows[0][0]));
  EXPECT_TRUE(isMarker(small.table.rows[0][1]));
  EXPECT_EQ(small.report.primaryCells, 1u);
  Outcome none = run("count, sum(age)", {}, {5});
  EXPECT_EQ(none.table.rows[0][0], ResultValue(int64_t{0}));
  EXPECT_EQ(none.report.suppressedValues, 0u);
  for (uint32_t minimum : {0u, 1u}) {
    Outcome off = run("count by sex, arm", r.rows, {minimum});
    EXPECT_EQ(off.report.suppressedValues, 0u);
    EXPECT_EQ(off.table.rows, off.plain.rows);
    EXPECT_EQ(off.table.notes, off.plain.notes);
  }
}

TEST(Disclosure, RefusesATableOfAnotherQuery) {
  Rows r;
  r.add(0, 0, 3).add(1, 1, 10);
  Outcome a = run("count by arm", r.rows, {5});
  Outcome b = run("count by sex", r.rows, {5});
  ResultTable t = b.plain;
  auto res = applyDisclosureControl(t, a.partial, a.bound, {5});
  ASSERT_FALSE(res.isOk());
  EXPECT_EQ(res.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(res.status().message().find("the table is not the finalized result of this partial"),
            std::string::npos)
      << res.status().message();
  EXPECT_EQ(t.rows, b.plain.rows);  // unchanged
  auto wrongPartial = applyDisclosureControl(t, b.partial, a.bound, {5});
  ASSERT_FALSE(wrongPartial.isOk());
  EXPECT_NE(wrongPartial.status().message().find("the partial is for 'count by sex'"),
            std::string::npos)
      << wrongPartial.status().message();
}

}  // namespace
}  // namespace trialmesh::query::testing
