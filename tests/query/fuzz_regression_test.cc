// Issue #12: inputs the fuzzers (tests/fuzz/) found that crashed or broke a round-trip.
#include <gtest/gtest.h>

#include "query_test_util.h"

namespace trialmesh::query::testing {
namespace {

// nlohmann-json throws out_of_range (not parse_error) for a number that overflows a double;
// it escaped as std::exception: exit 134 in `trialmesh query`, Internal at a site.
TEST(FuzzRegression, OverflowingJsonNumberIsInvalidArgument) {
  for (const char* text :
       {R"({"select":[{"fn":"count"}],"where":{"var":"x","op":">","value":1e99999}})",
        R"({"select":[{"fn":"hist","var":"x","from":0,"to":-1e400,"width":1}]})",
        "{\"select\":[{\"fn\":\"count\"}]} 1e99999"}) {
    Result<Query> q = Status::internal("not run");
    EXPECT_NO_THROW(q = parseQuery(text)) << text;
    EXPECT_EQ(q.status().code(), StatusCode::kInvalidArgument) << text;
    EXPECT_NE(q.status().message().find("query JSON"), std::string::npos) << q.status().message();
  }
}

// Invalid UTF-8 in a name or string made toJson()/--json output throw (type_error 316) and
// went into logs and result column names; it is refused with the offset of the bad byte.
TEST(FuzzRegression, InvalidUtf8IsRefusedWithItsOffset) {
  for (const char* text :
       {"count where sex = \"\xff\"", "mean(`b\xc3`)", "count by `\xed\xa0\x80`"}) {
    auto q = parseQuery(text);
    ASSERT_FALSE(q.isOk()) << text;
    EXPECT_EQ(q.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(q.status().message().find("not valid UTF-8"), std::string::npos)
        << q.status().message();
  }
  auto ok = parseQuery("count where site = \"Zürich\" by `größe`");
  ASSERT_TRUE(ok.isOk()) << ok.status().message();
  EXPECT_NO_THROW((void)toJson(*ok));
}

// A name with a backtick (possible from JSON) had canonical text `a`b` that does not parse;
// inside backticks a backtick is now written twice.
TEST(FuzzRegression, BacktickInANameRoundTripsThroughCanonicalText) {
  auto q = parseQueryJson(R"({"select":[{"fn":"mean","var":"a`b"}],"by":["`"]})");
  ASSERT_TRUE(q.isOk()) << q.status().message();
  std::string canonical = canonicalQueryText(*q);
  EXPECT_EQ(canonical, "mean(`a``b`) by ````");
  auto again = parseQuery(canonical);
  ASSERT_TRUE(again.isOk()) << canonical << ": " << again.status().message();
  EXPECT_EQ(*again, *q);
  EXPECT_EQ(parseQuery("count by `x``").status().code(), StatusCode::kInvalidArgument);
}

// fuzz_query_json found that a JSON query could name the empty variable ("var": ""), whose
// canonical text (``) the text parser refuses: every name in JSON must now be non-empty.
TEST(FuzzRegression, AnEmptyVariableNameInJsonIsRefused) {
  for (const char* text :
       {R"({"select":[{"fn":"count"}],"where":{"var":"","op":">=","value":64}})",
        R"({"select":[{"fn":"mean","var":""}]})", R"({"select":[{"fn":"count"}],"by":[""]})",
        R"({"select":[{"fn":"lm","response":"y","terms":[""]}]})",
        R"({"select":[{"fn":"coxph","time":"","event":"e","terms":["x"]}]})"}) {
    auto q = parseQueryJson(text);
    ASSERT_FALSE(q.isOk()) << text;
    EXPECT_EQ(q.status().code(), StatusCode::kInvalidArgument) << text;
    EXPECT_TRUE(q.status().message().find("must name a variable") != std::string::npos ||
                q.status().message().find("must be a variable name") != std::string::npos)
        << q.status().message();
  }
}

}  // namespace
}  // namespace trialmesh::query::testing
