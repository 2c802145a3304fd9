// The engine against the reference implementation in query_test_util.h, on multi-chunk random
// data with missing values and an empty group, for 1, 2 and 3 threads.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "query/engine.h"
#include "query_test_util.h"

namespace trialmesh::query::testing {
namespace {

// Three chunks, the last one partial.
constexpr size_t kRows = 2 * storage::kChunkRows + 1234;

class EngineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dict_ = new Dictionary(studyDictionary());
    rows_ = new std::vector<Row>(randomRows(kRows, 42));
    table_ = makeTable(*dict_, *rows_).release();
  }
  static void TearDownTestSuite() {
    delete table_;
    delete rows_;
    delete dict_;
  }
  static Dictionary* dict_;
  static std::vector<Row>* rows_;
  static InMemoryTable* table_;
};
Dictionary* EngineTest::dict_ = nullptr;
std::vector<Row>* EngineTest::rows_ = nullptr;
InMemoryTable* EngineTest::table_ = nullptr;

void checkCells(const std::string& text, const Dictionary& dict, const std::vector<Row>& rows,
                const storage::ColumnSource& source) {
  Query q = *parseQuery(text);
  auto want = naiveCells(q, dict, rows);
  for (unsigned threads : {1u, 2u, 3u}) {
    SCOPED_TRACE(text + " threads=" + std::to_string(threads));
    ResultTable t = runQuery(text, source, threads);
    ASSERT_EQ(t.kind, ResultTable::Kind::kCells);
    ASSERT_EQ(t.rows.size(), want.size());
    for (size_t c = 0; c < want.size(); ++c) {
      ASSERT_EQ(t.rows[c].size(), t.groupColumns + want[c].size());
      for (size_t s = 0; s < want[c].size(); ++s) {
        EXPECT_TRUE(valuesMatch(t.rows[c][t.groupColumns + s], want[c][s], 1e-9))
            << "cell " << c << " statistic " << t.statistics[s];
      }
    }
  }
}

TEST_F(EngineTest, AggregatesAndGroupsMatchNaive) {
  for (const char* text : {
           "count",
           "count, count(age), count(bmi), count(ecog)",
           "count, mean(bmi), var(bmi), sd(bmi) by arm",
           "count by arm, ecog",
           "count by sex, smoker, ecog",
           "sum(age), sum(visits), sum(big), sum(bmi) by ecog",
           "min(age), max(age), min(bmi), max(bmi), min(enrolled), max(enrolled), min(big), "
           "max(visits) by sex",
           "mean(visits), var(visits), mean(big), sd(age), var(lab) by smoker",
           "count(age) where status = 2 by arm, sex",
           "mean(bmi), var(bmi), min(age), sum(age) where arm = \"C\"",
           "mean(age), var(age), sd(age), sum(age) by arm",
       }) {
    checkCells(text, *dict_, *rows_, *table_);
  }
}

TEST_F(EngineTest, FiltersOfEveryKindMatchNaive) {
  for (const char* text : {
           "count where age >= 65 and sex = \"F\"",
           "count where bmi < 25.5",
           "count where bmi <= 25",
           "count where bmi > 30",
           "count where bmi >= 30",
           "count where bmi = 25",
           "count where bmi != 25",
           "count where age < 64.5",
           "count where age > 64.5",
           "count where age = 64.5",
           "count where age != 64.5",
           "count where age <= 18",
           "count where age >= -5",
           "count where age < 200",
           "count where age > 200",
           "count where age != 200",
           "count where age = 0",
           "count where visits < -500 or visits > 20000",
           "count where big > 0",
           "count where big <= -1000000000000",
           "count where enrolled >= date \"2023-01-01\"",
           "count where enrolled < \"2022-06-15\"",
           "count where enrolled = date \"2022-01-01\"",
           "count where ecog in (\"0\", \"1\")",
           "count where ecog not in (\"2\")",
           "count where age in (18, 65, 64.5)",
           "count where bmi in (25, 30.5, 22.25)",
           "count where smoker in (true)",
           "count where ecog is missing",
           "count where age is not missing",
           "count where not (age > 60)",
           "count where not (ecog in (\"1\") or smoker = false)",
           "count where not not (age > 60)",
           "count where not (ecog is missing)",
           "count where not (age > 50 and bmi < 20)",
           "count where (age > 50 or bmi > 30) and not (sex = \"M\" and smoker = true) or ecog is "
           "missing",
           "count where sex != \"F\"",
           "count where smoker != true",
           "count where status != 1 and status != 0",
           "count, mean(bmi) where age >= 65 and (ecog = \"0\" or ecog = \"1\") by sex, arm",
       }) {
    checkCells(text, *dict_, *rows_, *table_);
  }
}

TEST_F(EngineTest, HistogramsMatchNaive) {
  for (const char* text : {
           "hist(age, 0, 120, 10)",
           "hist(age, [18, 40, 65, 120])",
           "hist(bmi, 20, 30, 0.5) by sex",
           "hist(visits, -1000, 30000, 1000)",
           "hist(big, [-1000000000000, 0, 1000000000000])",
           "hist(age, 0, 100, 7) by arm",
           "hist(bmi, [-100, 25, 25.5, 100]) where smoker = true by ecog",
       }) {
    Query q = *parseQuery(text);
    const Aggregate& a = q.select[0];
    auto breaks = naiveBreaks(a);
    const size_t bins = breaks.size() - 1;
    const uint32_t cells = naiveCellCount(q, *dict_);
    const size_t var = *dict_->find(a.var);
    // per cell: bins..., outside, missing
    std::vector<std::vector<int64_t>> want(cells, std::vector<int64_t>(bins + 2, 0));
    for (const auto& r : *rows_) {
      if (q.where && naiveFilter(*q.where, r, *dict_) != Tri::kTrue) continue;
      auto& w = want[naiveCell(q, *dict_, r)];
      if (r[var].missing) {
        ++w[bins + 1];
        continue;
      }
      double x = cellValue(*dict_, var, r[var]);
      size_t bin = bins;
      for (size_t k = 0; k < bins; ++k)
        if (breaks[k] <= x && x < breaks[k + 1]) bin = k;
      ++w[bin];
    }
    for (unsigned threads : {1u, 2u, 3u}) {
      SCOPED_TRACE(std::string(text) + " threads=" + std::to_string(threads));
      ResultTable t = runQuery(text, *table_, threads);
      ASSERT_EQ(t.kind, ResultTable::Kind::kHistogram);
      ASSERT_EQ(t.rows.size(), cells * (bins + 2));
      const size_t countCol = t.columns.size() - 1;
      for (uint32_t c = 0; c < cells; ++c) {
        for (size_t k = 0; k < bins + 2; ++k) {
          const auto& row = t.rows[c * (bins + 2) + k];
          EXPECT_EQ(std::get<int64_t>(row[countCol]), want[c][k]) << "cell " << c << " slot " << k;
          if (k < bins) {
            EXPECT_EQ(std::get<double>(row[countCol - 2]), breaks[k]);
            EXPECT_EQ(std::get<double>(row[countCol - 1]), breaks[k + 1]);
          }
        }
        EXPECT_EQ(std::get<std::string>(t.rows[c * (bins + 2) + bins][countCol - 3]), "outside");
        EXPECT_EQ(std::get<std::string>(t.rows[c * (bins + 2) + bins + 1][countCol - 3]),
                  "missing");
      }
    }
  }
}

TEST_F(EngineTest, KaplanMeierMatchesNaive) {
  // status is declared integer [0, 2]: max 2 reads it as R's Surv() does, 1 = censored and
  // 2 = event; its 0s would be an error, so the filter leaves them out.
  for (const char* text : {"km(os_days, death)", "km(os_days, status) where status != 0 by arm",
                           "km(os_days, death) where age > 50 by smoker"}) {
    Query q = *parseQuery(text);
    const size_t tv = *dict_->find(q.select[0].var), ev = *dict_->find(q.select[0].event);
    const uint32_t cells = naiveCellCount(q, *dict_);
    std::vector<std::vector<std::pair<int64_t, bool>>> obs(cells);
    for (const auto& r : *rows_) {
      if (q.where && naiveFilter(*q.where, r, *dict_) != Tri::kTrue) continue;
      if (r[tv].missing || r[ev].missing) continue;
      const bool event = q.select[0].event == "status" ? r[ev].i == 2 : r[ev].i != 0;
      obs[naiveCell(q, *dict_, r)].push_back({r[tv].i, event});
    }
    // Expected rows: time, n_risk, n_event, n_censor, survival.
    std::vector<std::vector<std::vector<double>>> want(cells);
    for (uint32_t c = 0; c < cells; ++c) {
      std::map<int64_t, std::pair<int, int>> byTime;
      for (auto [t, e] : obs[c]) (e ? byTime[t].first : byTime[t].second)++;
      double s = 1;
      for (auto [t, de] : byTime) {
        int64_t atRisk = 0;
        for (auto [u, e] : obs[c]) atRisk += u >= t;
        s *= 1.0 - static_cast<double>(de.first) / static_cast<double>(atRisk);
        want[c].push_back({double(t), double(atRisk), double(de.first), double(de.second), s});
      }
    }
    for (unsigned threads : {1u, 2u, 3u}) {
      SCOPED_TRACE(std::string(text) + " threads=" + std::to_string(threads));
      ResultTable t = runQuery(text, *table_, threads);
      ASSERT_EQ(t.kind, ResultTable::Kind::kSurvival);
      size_t expectedRows = 0;
      for (const auto& w : want) expectedRows += w.size();
      ASSERT_EQ(t.rows.size(), expectedRows);
      const size_t g = t.groupColumns;
      size_t r = 0;
      for (uint32_t c = 0; c < cells; ++c) {
        for (const auto& w : want[c]) {
          const auto& row = t.rows[r++];
          EXPECT_EQ(std::get<int64_t>(row[g]), static_cast<int64_t>(w[0]));
          EXPECT_EQ(std::get<int64_t>(row[g + 1]), static_cast<int64_t>(w[1]));
          EXPECT_EQ(std::get<int64_t>(row[g + 2]), static_cast<int64_t>(w[2]));
          EXPECT_EQ(std::get<int64_t>(row[g + 3]), static_cast<int64_t>(w[3]));
          EXPECT_NEAR(std::get<double>(row[g + 4]), w[4], 1e-12);
        }
      }
    }
  }
}

// A small hand-made table: exact expectations, including values on breaks and outside.
TEST(EngineSmall, HistogramEdgesAndOutside) {
  Dictionary dict = studyDictionary();
  std::vector<Row> rows;
  for (int64_t age : {0, 9, 10, 17, 18, 39, 40, 64, 65, 119, 120, -1}) {
    Row r = randomRows(1, static_cast<uint32_t>(age + 100))[0];
    r[kAge] = age < 0 ? Cell::none() : Cell::integer(age);
    r[kBmi] = Cell::real(static_cast<double>(age) / 10.0);  // 0.9, 1.0, ... on 0.1-wide breaks
    rows.push_back(r);
  }
  auto table = makeTable(dict, rows);
  auto counts = [&](const std::string& text) {
    ResultTable t = runQuery(text, *table, 1);
    std::vector<int64_t> out;
    for (const auto& row : t.rows) out.push_back(std::get<int64_t>(row.back()));
    return out;
  };
  // [18,40) [40,65) [65,120) outside missing
  EXPECT_EQ(counts("hist(age, [18, 40, 65, 120])"), (std::vector<int64_t>{2, 2, 2, 5, 1}));
  // [0,10) ... [110,120): 0 and 9 in the first bin, 120 outside.
  auto uniform = counts("hist(age, 0, 120, 10)");
  ASSERT_EQ(uniform.size(), 14u);
  EXPECT_EQ(uniform[0], 2);
  EXPECT_EQ(uniform[1], 3);   // 10, 17, 18
  EXPECT_EQ(uniform[3], 1);   // 39
  EXPECT_EQ(uniform[6], 2);   // 64, 65
  EXPECT_EQ(uniform[11], 1);  // 119
  EXPECT_EQ(uniform[12], 1);  // outside: 120
  EXPECT_EQ(uniform[13], 1);  // missing
}

TEST(EngineSmall, VarianceIsNumericallyStable) {
  Dictionary dict = studyDictionary();
  std::vector<Row> rows = randomRows(200001, 7);
  std::mt19937_64 rng(3);
  std::uniform_real_distribution<double> noise(-0.5, 0.5);
  for (auto& r : rows) r[kLab] = Cell::real(1e9 + noise(rng));
  auto table = makeTable(dict, rows);
  long double sum = 0;
  for (const auto& r : rows) sum += r[kLab].d;
  long double mean = sum / rows.size(), ss = 0;
  for (const auto& r : rows) ss += (r[kLab].d - mean) * (r[kLab].d - mean);
  const double want = static_cast<double>(ss / (rows.size() - 1));  // about 1/12
  // The textbook one-pass formula loses everything here: E[x^2] - E[x]^2 at 1e18 scale.
  double s1 = 0, s2 = 0;
  for (const auto& r : rows) {
    s1 += r[kLab].d;
    s2 += r[kLab].d * r[kLab].d;
  }
  const double naiveOnePass = (s2 - s1 * s1 / rows.size()) / (rows.size() - 1);
  EXPECT_GT(std::fabs(naiveOnePass - want), 1e-3);
  for (unsigned threads : {1u, 2u, 3u}) {
    ResultTable t = runQuery("var(lab), mean(lab) by sex", *table, threads);
    ResultTable all = runQuery("var(lab)", *table, threads);
    EXPECT_NEAR(std::get<double>(all.rows[0][0]), want, want * 1e-9);
    ASSERT_EQ(t.rows.size(), 2u);
    for (const auto& row : t.rows) EXPECT_NEAR(std::get<double>(row[1]), want, want * 0.05);
  }
}

TEST(EngineSmall, ExactIntegerSumBeyondDoublePrecision) {
  Dictionary dict = studyDictionary();
  std::vector<Row> rows = randomRows(3, 1);
  rows[0][kBig] = Cell::integer(int64_t{1} << 60);
  rows[1][kBig] = Cell::integer(1);
  rows[2][kBig] = Cell::integer(1);
  auto table = makeTable(dict, rows);
  ResultTable t = runQuery("sum(big)", *table, 1);
  EXPECT_EQ(std::get<int64_t>(t.rows[0][0]), (int64_t{1} << 60) + 2);
}

TEST(EngineSmall, EmptyTableAndEmptyGroups) {
  Dictionary dict = studyDictionary();
  auto table = makeTable(dict, {});
  ResultTable t = runQuery("count, mean(bmi), var(bmi), min(age) by arm", *table, 2);
  ASSERT_EQ(t.rows.size(), 3u);
  for (const auto& row : t.rows) {
    EXPECT_EQ(std::get<int64_t>(row[1]), 0);
    EXPECT_TRUE(std::holds_alternative<std::monostate>(row[2]));
    EXPECT_TRUE(std::holds_alternative<std::monostate>(row[3]));
    EXPECT_TRUE(std::holds_alternative<std::monostate>(row[4]));
  }
  EXPECT_EQ(std::get<std::string>(t.rows[2][0]), "C");
}

TEST(EngineSmall, GroupColumnsCarryCodesLabelsAndNa) {
  Dictionary dict = studyDictionary();
  std::vector<Row> rows = randomRows(50, 9);
  auto table = makeTable(dict, rows);
  ResultTable t = runQuery("count by ecog", *table, 1);
  ASSERT_EQ(t.columns, (std::vector<std::string>{"ecog", "ecog_label", "count"}));
  ASSERT_EQ(t.rows.size(), 6u);
  EXPECT_EQ(std::get<std::string>(t.rows[0][0]), "0");
  EXPECT_EQ(std::get<std::string>(t.rows[0][1]), "Fully active");
  EXPECT_EQ(std::get<std::string>(t.rows[5][0]), "NA");
  EXPECT_TRUE(std::holds_alternative<std::monostate>(t.rows[5][1]));
  ResultTable b = runQuery("count by smoker", *table, 1);
  ASSERT_EQ(b.rows.size(), 3u);
  EXPECT_EQ(std::get<std::string>(b.rows[0][0]), "false");
  EXPECT_EQ(std::get<std::string>(b.rows[1][0]), "true");
}

TEST(EngineSmall, MissingValuesAreReportedInNotes) {
  Dictionary dict = studyDictionary();
  std::vector<Row> rows = randomRows(10, 5);
  for (auto& r : rows) r[kBmi] = Cell::real(20);
  rows[3][kBmi] = Cell::none();
  rows[7][kBmi] = Cell::none();
  auto table = makeTable(dict, rows);
  ResultTable t = runQuery("mean(bmi)", *table, 1);
  ASSERT_EQ(t.notes.size(), 1u);
  EXPECT_EQ(t.notes[0], "mean(bmi): 2 rows with missing bmi skipped");
}

TEST(EngineSmall, RefusesADifferentDictionary) {
  Dictionary dict = studyDictionary();
  Dictionary other = studyDictionary("OTHER-STUDY");
  auto table = makeTable(other, randomRows(10, 1));
  auto b = bindQuery(*parseQuery("count"), dict);
  ASSERT_TRUE(b.isOk());
  auto p = execute(*b, *table, {});
  ASSERT_FALSE(p.isOk());
  EXPECT_EQ(p.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(p.status().message().find("not the one the query was bound to"), std::string::npos);
}

// A caller that gave up on a scan (a site's query timed out) sets ExecOptions::cancelled; the
// scan, aggregate or model round, stops with ResourceExhausted instead of running on.
TEST(EngineSmall, CancelledScanStopsWithResourceExhausted) {
  Dictionary dict = studyDictionary();
  auto table = makeTable(dict, randomRows(2 * storage::kChunkRows + 10, 3));
  auto flag = std::make_shared<std::atomic<bool>>(false);
  ExecOptions options;
  options.cancelled = flag;
  for (const char* text : {"count, mean(bmi) by arm", "lm_sums(bmi ~ age + sex)"}) {
    SCOPED_TRACE(text);
    auto b = bindQuery(*parseQuery(text), dict);
    ASSERT_TRUE(b.isOk()) << b.status().toString();
    flag->store(false);
    auto ran = execute(*b, *table, options);
    ASSERT_TRUE(ran.isOk()) << ran.status().toString();  // not set: runs to the end
    EXPECT_EQ(ran->rowsScanned, 2 * storage::kChunkRows + 10);
    flag->store(true);
    for (unsigned threads : {1u, 2u}) {
      options.threads = threads;
      auto stopped = execute(*b, *table, options);
      ASSERT_FALSE(stopped.isOk());
      EXPECT_EQ(stopped.status().code(), StatusCode::kResourceExhausted);
      EXPECT_NE(stopped.status().message().find("scan cancelled"), std::string::npos)
          << stopped.status().toString();
    }
  }
}

TEST(EngineSmall, CorruptLevelCodeIsReported) {
  Dictionary dict = studyDictionary();
  std::vector<Row> rows = randomRows(10, 1);
  rows[4][kArm] = Cell::integer(9);  // arm has 3 levels
  auto table = makeTable(dict, rows);
  auto b = bindQuery(*parseQuery("count by arm"), dict);
  ASSERT_TRUE(b.isOk());
  auto p = execute(*b, *table, {});
  ASSERT_FALSE(p.isOk());
  EXPECT_EQ(p.status().code(), StatusCode::kCorruption);
  EXPECT_NE(p.status().message().find("variable arm"), std::string::npos);
}

TEST(Format, CrossTabTextCsvAndJson) {
  Dictionary dict = studyDictionary();
  std::vector<Row> rows = randomRows(6, 2);
  const int64_t arms[] = {0, 0, 1, 1, 1, 0};
  const int64_t sexes[] = {0, 1, 1, 1, 0, 0};
  for (size_t i = 0; i < rows.size(); ++i) {
    rows[i][kArm] = Cell::integer(arms[i]);
    rows[i][kSex] = Cell::integer(sexes[i]);
  }
  auto table = makeTable(dict, rows);
  ResultTable t = runQuery("count by arm, sex", *table, 1);
  EXPECT_EQ(formatTable(t),
            "arm \\ sex  F  M  total\n"
            "---------  -  -  -----\n"
            "A          2  1      3\n"
            "B          1  2      3\n"
            "C          0  0      0\n"
            "total      3  3      6\n");
  TableFormatOptions flat;
  flat.crossTab = false;
  EXPECT_EQ(formatTable(t, flat).substr(0, 48),
            "arm  sex  count\n---  ---  -----\nA    F        2\n");
  EXPECT_EQ(formatCsv(t).substr(0, 78),
            "arm,sex,count,suppressed,suppressed_columns\r\nA,F,2,FALSE,\r\nA,M,1,FALSE,\r\nB,F,1");
  const auto j = nlohmann::json::parse(formatJson(t));
  EXPECT_EQ(j["schema_version"], kJsonSchemaVersion);
  EXPECT_EQ(j["kind"], "cells");
  EXPECT_EQ(j["columns"], nlohmann::json({"arm", "sex", "count"}));
  EXPECT_EQ(j["group_columns"], nlohmann::json({"arm", "sex"}));
  EXPECT_EQ(j["rows"][0],
            nlohmann::json::parse(R"({"arm":"A","sex":"F","count":2,"suppressed":[]})"));
  // Fields keep the column order (a client may rely on it for display).
  EXPECT_EQ(formatJson(t).find("\"rows\":[{\"arm\":\"A\",\"sex\":\"F\",\"count\":2,"),
            formatJson(t).find("\"rows\":"));

  ResultTable m = runQuery("mean(bmi), count by ecog", *table, 1);
  std::string csv = formatCsv(m);
  EXPECT_NE(csv.find("ecog,ecog_label,mean(bmi),count,suppressed,suppressed_columns\r\n"),
            std::string::npos);
  EXPECT_NE(formatJson(m).find("null"), std::string::npos);                   // empty cells
  EXPECT_NE(csv.find("Fully active,NA,1,FALSE,"), std::string::npos) << csv;  // mean of no bmi
  EXPECT_NE(formatTable(m).find("NA"), std::string::npos);
}

TEST(Format, CsvQuotesSpecialCharacters) {
  ResultTable t;
  t.columns = {"a", "b"};
  t.rows = {{std::string("x,y"), std::string("say \"hi\"")}, {std::monostate{}, 1.5}};
  EXPECT_EQ(formatCsv(t),
            "a,b,suppressed,suppressed_columns\r\n\"x,y\",\"say \"\"hi\"\"\",FALSE,\r\n"
            "NA,1.5,FALSE,\r\n");
}

}  // namespace
}  // namespace trialmesh::query::testing
