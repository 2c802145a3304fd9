// Variables as R users write them: the event coding of a survival status (docs/statistics.md
// "Event coding"), decided from the dictionary and never from one site's values; integer
// variables in `by` and factor(x); dotted names.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include "query/engine.h"
#include "query/model_runner.h"
#include "query_test_util.h"

namespace trialmesh::query {
namespace {

using storage::Dictionary;
using storage::VariableType;
using namespace testing;  // NOLINT: test fixtures

Dictionary codingDictionary() {
  std::vector<storage::Variable> vars;
  vars.push_back(makeVar("time", VariableType::kInteger, false, {}, 0, 1000));
  vars.push_back(makeVar("s01", VariableType::kInteger, false, {}, 0, 1));
  vars.push_back(makeVar("s12", VariableType::kInteger, false, {}, 1, 2));
  vars.push_back(makeVar("sbool", VariableType::kBoolean, false));
  vars.push_back(makeVar("scat", VariableType::kCategorical, false, {"1", "2"}));
  vars.push_back(makeVar("sfree", VariableType::kInteger, false));
  vars.push_back(makeVar("s03", VariableType::kInteger, false, {}, 0, 3));
  vars.push_back(makeVar("sword", VariableType::kCategorical, false, {"alive", "dead"}));
  vars.push_back(makeVar("x", VariableType::kReal, false));
  return *Dictionary::create("CODING", std::move(vars));
}

// Row i: time, then the same event (i % 3 == 0) in every coding.
std::vector<Row> codingRows(size_t n) {
  std::vector<Row> rows;
  for (size_t i = 0; i < n; ++i) {
    const bool event = i % 3 == 0;
    rows.push_back({Cell::integer(static_cast<int64_t>(10 + (i * 7) % 50)), Cell::integer(event),
                    Cell::integer(event ? 2 : 1), Cell::integer(event), Cell::integer(event),
                    Cell::integer(static_cast<int64_t>(event)), Cell::integer(event),
                    Cell::integer(event), Cell::real(static_cast<double>(i % 11) / 3.0)});
  }
  return rows;
}

std::string bindError(const Dictionary& dict, const std::string& text) {
  auto b = bindQuery(*parseQuery(text), dict);
  return b ? "" : b.status().message();
}

TEST(EventCoding, EveryAcceptedCodingGivesTheSameCurveAndModel) {
  const Dictionary dict = codingDictionary();
  auto table = makeTable(dict, codingRows(300));
  const ResultTable reference = runQuery("km(time, s01)", *table, 1);
  for (const char* status : {"s12", "sbool", "scat"}) {
    SCOPED_TRACE(status);
    ResultTable t = runQuery(fmt::format("km(time, {})", status), *table, 1);
    ASSERT_EQ(t.rows.size(), reference.rows.size());
    for (size_t r = 0; r < t.rows.size(); ++r)
      for (size_t c = 0; c < t.rows[r].size(); ++c)
        EXPECT_TRUE(valuesMatch(t.rows[r][c], reference.rows[r][c], 0)) << r << "," << c;
  }
  auto ref = fitModel(*parseQuery("coxph(time, s01 ~ x)"), localRoundRunner(*table));
  ASSERT_TRUE(ref.isOk()) << ref.status().toString();
  EXPECT_EQ(ref->cox->events, 100u);
  for (const char* status : {"s12", "sbool", "scat"}) {
    auto r =
        fitModel(*parseQuery(fmt::format("coxph(time, {} ~ x)", status)), localRoundRunner(*table));
    ASSERT_TRUE(r.isOk()) << r.status().toString();
    EXPECT_EQ(r->cox->events, ref->cox->events) << status;
    EXPECT_EQ(r->cox->loglik, ref->cox->loglik) << status;
  }
}

TEST(EventCoding, ACodingTheDictionaryDoesNotFixIsRefusedAtBind) {
  const Dictionary dict = codingDictionary();
  for (const char* text : {"km(time, sfree)", "km(time, s03)", "coxph(time, sfree ~ x)"}) {
    const std::string e = bindError(dict, text);
    EXPECT_NE(e.find("does not fix its event coding"), std::string::npos) << text << ": " << e;
    EXPECT_NE(e.find("max = 2"), std::string::npos) << e;
  }
  const std::string e = bindError(dict, "km(time, sword)");
  EXPECT_NE(e.find("levels alive, dead"), std::string::npos) << e;
  EXPECT_NE(bindError(dict, "km(time, x)").find("the event variable x is real"), std::string::npos);
}

TEST(EventCoding, AValueOutsideTheCodingIsAnErrorNamingVariableAndValues) {
  const Dictionary dict = codingDictionary();
  std::vector<Row> rows = codingRows(30);
  rows[4][1] = Cell::integer(1);  // s01 stays valid
  rows[5][2] = Cell::integer(0);  // s12 holds a 0: R would turn it into NA with a warning
  auto table = makeTable(dict, rows);
  for (const char* text : {"km(time, s12)", "coxph(time, s12 ~ x)"}) {
    auto b = bindQuery(*parseQuery(text), dict);
    ASSERT_TRUE(b.isOk()) << b.status().toString();
    Status st = Status::ok();
    if (std::string(text).starts_with("km")) {
      st = execute(*b, *table, {}).status();
    } else {
      st = fitModel(*parseQuery(text), localRoundRunner(*table)).status();
    }
    ASSERT_FALSE(st.isOk()) << text;
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
    EXPECT_NE(st.message().find("event variable s12 is coded 1/2"), std::string::npos)
        << st.message();
    EXPECT_NE(st.message().find("holds the value(s) 0"), std::string::npos) << st.message();
  }
  // A filter that leaves the bad row out runs.
  auto ok = bindQuery(*parseQuery("km(time, s12) where s12 != 0"), dict);
  ASSERT_TRUE(ok.isOk());
  EXPECT_TRUE(execute(*ok, *table, {}).isOk());
}

// An integer in `by` has one cell per value of its declared range, empty cells included, and
// the same counts as filtering on each value.
TEST(IntegerGroups, CountByIntegerEqualsCountWhereValue) {
  const Dictionary dict = studyDictionary();
  auto table = makeTable(dict, randomRows(5000, 7));
  ResultTable t = runQuery("count, mean(bmi) by status, smoker", *table, 2);
  ASSERT_EQ(t.rows.size(), 3u * 3u);  // status 0..2 x smoker false/true/NA
  ASSERT_EQ(t.columns[0], "status");
  for (int64_t status = 0; status <= 2; ++status) {
    for (const char* smoker : {"false", "true"}) {
      const auto& row = t.rows[static_cast<size_t>(status) * 3 + (smoker[0] == 't')];
      EXPECT_EQ(std::get<std::string>(row[0]), std::to_string(status));
      EXPECT_EQ(std::get<std::string>(row[1]), smoker);
      ResultTable w = runQuery(
          fmt::format("count, mean(bmi) where status = {} and smoker = {}", status, smoker), *table,
          1);
      EXPECT_TRUE(valuesMatch(row[2], w.rows[0][0], 0));
      EXPECT_TRUE(valuesMatch(row[3], w.rows[0][1], 1e-12));
    }
  }
  // age 0..120 with missing values: 121 value cells and NA.
  ResultTable a = runQuery("count by age", *table, 1);
  ASSERT_EQ(a.rows.size(), 122u);
  EXPECT_EQ(std::get<std::string>(a.rows[120][0]), "120");
  EXPECT_EQ(std::get<std::string>(a.rows[121][0]), "NA");
  ResultTable missing = runQuery("count where age is missing", *table, 1);
  EXPECT_TRUE(valuesMatch(a.rows[121][1], missing.rows[0][0], 0));
}

TEST(IntegerGroups, AnIntegerWithoutADeclaredRangeIsRefused) {
  const Dictionary dict = studyDictionary();
  auto b = bindQuery(*parseQuery("count by big"), dict);
  ASSERT_FALSE(b.isOk());
  EXPECT_NE(b.status().message().find("cannot group by big: an integer variable is grouped by "
                                      "each value of its declared range, and big has no "
                                      "declared min and max"),
            std::string::npos)
      << b.status().message();
  auto v = bindQuery(*parseQuery("count by visits"), dict);
  ASSERT_FALSE(v.isOk());
  EXPECT_NE(v.status().message().find("spans -1000 to 30000"), std::string::npos)
      << v.status().message();
}

}  // namespace
}  // namespace trialmesh::query
