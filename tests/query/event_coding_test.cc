// Event coding of a survival status (docs/statistics.md "Event coding"): decided from the
// dictionary, never from one site's values, and any other value is an error naming it.
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

}  // namespace
}  // namespace trialmesh::query
