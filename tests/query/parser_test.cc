// The query language: errors point at the offending token, canonical text round-trips, the
// JSON form is equivalent, and binding errors name the problem.
#include <gtest/gtest.h>

#include "query_test_util.h"

namespace trialmesh::query::testing {
namespace {

std::string parseError(const std::string& text) {
  auto q = parseQuery(text);
  EXPECT_FALSE(q.isOk()) << text << " parsed as " << (q.isOk() ? canonicalQueryText(*q) : "");
  return q.isOk() ? std::string() : q.status().message();
}

TEST(Parser, ErrorMessageShowsLineColumnAndCaret) {
  EXPECT_EQ(parseError("count where age 65"),
            "query:1:17: expected a comparison operator after 'age', found '65'\n"
            "  count where age 65\n"
            "                  ^");
  EXPECT_EQ(parseError("count\nwhere age >= 65 and\n  sex = "),
            "query:3:9: expected a value to compare 'sex' with (a number, a quoted level, date "
            "\"YYYY-MM-DD\", true or false), found the end of the query\n"
            "    sex = \n"
            "          ^");
}

TEST(Parser, EveryErrorKindPointsAtItsToken) {
  struct Case {
    const char* text;
    int column;
    const char* fragment;
  };
  const Case cases[] = {
      {"", 1, "expected a statistic"},
      {"meen(bmi)", 1, "expected a statistic (count, sum, mean"},
      {"count,", 7, "expected a statistic"},
      {"mean bmi", 6, "expected '(' after 'mean'"},
      {"mean(", 6, "expected a variable name as the first argument of mean()"},
      {"mean(bmi", 9, "expected ')' to close mean("},
      {"mean(by)", 6, "found the keyword 'by'"},
      {"count where", 12, "expected a variable name in the filter"},
      {"count where age >", 18, "expected a value to compare 'age'"},
      {"count where age > 1 and", 24, "expected a variable name in the filter"},
      {"count where (age > 1", 21, "expected ')' to close the parenthesis"},
      {"count where age is", 19, "expected 'missing' after 'age is'"},
      {"count where age is not nothing", 24, "expected 'missing' after 'age is not'"},
      {"count where sex in \"F\"", 20, "expected '(' after 'sex in'"},
      {"count where sex in (\"F\"", 24, "expected ')' to close the 'in' list"},
      {"count where sex = \"F", 19, "unterminated string"},
      {"count where age > 1 # comment", 21, "unexpected character '#'"},
      {"count where enrolled > date 2024", 29, "expected a quoted date"},
      {"count where age > 1e999", 19, "'1e999' is not a valid number"},
      {"count by", 9, "expected a variable name after 'by'"},
      {"count by arm where age > 1 by sex", 28, "at most one 'by' clause"},
      {"count where age > 1 where age < 3", 21, "at most one 'where' clause"},
      {"count mean(bmi)", 7, "expected ',', 'where', 'by' or the end of the query"},
      {"hist(age)", 9, "expected ',' after the variable of hist"},
      {"hist(age, 10, 0, 1)", 11, "needs from < to"},
      {"hist(age, 0, 10, 0)", 18, "width must be positive"},
      {"hist(age, [1, 5, 3])", 18, "strictly increasing"},
      {"hist(age, [1])", 11, "at least two breaks"},
      {"hist(age, 0, 1e9, 1)", 19, "more than 1000000 histogram bins"},
      {"km(os_days)", 11, "expected ',' after the time variable"},
      {"km(t, e, strata = 5)", 19, "expected a variable name after 'strata ='"},
      {"km(t, e, strata = s, strata = s)", 22, "option 'strata' is given twice"},
      {"km(t, e, ties = efron)", 10, "km() has options times = [...], rmean"},
      {"km(t, e, times = [])", 18, "needs at least one time"},
      {"km(t, e, times = [5, 5])", 18, "strictly increasing"},
      {"km(t, e, times = 5)", 18, "expected '[' to open the list of survival times"},
      {"km(t, e, rmean = 5, rmean = 6)", 21, "option 'rmean' is given twice"},
      {"km(t, e, rmean = often)", 18, "(a time or common) after 'rmean ='"},
      {"km(t, e, rmean)", 15, "expected '=' after the option 'rmean'"},
      {"count where `age > 1", 13, "unterminated `quoted name`"},
  };
  for (const auto& c : cases) {
    std::string msg = parseError(c.text);
    std::string prefix = "query:1:" + std::to_string(c.column) + ": ";
    EXPECT_EQ(msg.substr(0, prefix.size()), prefix) << c.text << "\n" << msg;
    EXPECT_NE(msg.find(c.fragment), std::string::npos) << c.text << "\n" << msg;
    // The caret sits under the reported column.
    size_t caretLine = msg.rfind('\n');
    ASSERT_NE(caretLine, std::string::npos);
    EXPECT_EQ(msg.size() - caretLine - 1, static_cast<size_t>(2 + c.column)) << c.text;
  }
}

const char* kRoundTrip[] = {
    "count",
    "count where age >= 65 and sex = \"F\"",
    "count, mean(bmi), var(bmi) by arm",
    "hist(age, 0, 120, 10)",
    "hist(age, [18, 40, 65, 120])",
    "hist(bmi, -0.5, 1e3, 0.25)",
    "count by arm, ecog",
    "sum(x), mean(x), var(x), sd(x), min(x), max(x), count(x)",
    "km(os_days, death) by arm",
    "km(os_days, death, times = [-1, 0, 182.5, 365]) by arm",
    "km(os_days, death, rmean = 730)",
    "km(os_days, death, times = [1e-3], rmean = common) by arm, sex",
    "KM(os_days, death, RMEAN = COMMON, TIMES = [30])",
    "km(os_days, death, rmean = -5, times = [1e-300, 1e300])",
    "km(os_days, death, strata = `ph.ecog`, times = [30]) by arm",
    "count where age in (1, 2.5, -3) or not (ecog in (\"0\", \"1\")) and smoker = true",
    "count where (a = 1 or b = 2) and (c = 3 or d = 4)",
    "count where (a = 1 and b = 2) and c = 3",
    "count where a = 1 or (b = 2 or c = 3)",
    "count where not (a is missing) and b is not missing",
    "count where not not (x < 3)",
    "count where enrolled >= date \"2024-01-31\" and enrolled < \"2025-01-01\"",
    "count where x != 5.0 and y = 1e300 and z > -0.001",
    "count where s = \"quote \\\" and backslash \\\\\"",
    "count where `by` = 1 and `where` > 2 by `in`",
    "count where big > 9223372036854775807 and small < -9223372036854775808",
    "count where huge > 99999999999999999999",
    "COUNT WHERE Age >= 65 AND Sex = \"F\" BY Arm",
    "count where x not in (1, 2) and y <> 3 and z == 4",
    "quantile(age, [0.25, 0.5, 0.75]) where arm = \"A\"",
    "median(bmi)",
    "quantile(age, probs = c(0.1, 0.9))",
    "quantile_counts(age, [0, 18446744073709551615, 5, 9], 4096) where sex = \"F\"",
};

TEST(Parser, CanonicalTextRoundTrips) {
  for (const char* text : kRoundTrip) {
    auto q = parseQuery(text);
    ASSERT_TRUE(q.isOk()) << text << ": " << q.status().message();
    std::string canonical = canonicalQueryText(*q);
    auto again = parseQuery(canonical);
    ASSERT_TRUE(again.isOk()) << canonical << ": " << again.status().message();
    EXPECT_EQ(*again, *q) << text << " -> " << canonical;
    EXPECT_EQ(canonicalQueryText(*again), canonical);
  }
}

TEST(Parser, CanonicalTextIsNormalised) {
  auto canon = [](const char* t) { return canonicalQueryText(*parseQuery(t)); };
  EXPECT_EQ(canon("COUNT ,MEAN( bmi )  BY arm WHERE age>=65 AND sex='F'"),
            "count, mean(bmi) where age >= 65 and sex = \"F\" by arm");
  EXPECT_EQ(canon("count where not age > 5"), "count where not (age > 5)");
  EXPECT_EQ(canon("count where ((a = 1))"), "count where a = 1");
  EXPECT_EQ(canon("count where a = 1 or b = 2 and c = 3"), "count where a = 1 or b = 2 and c = 3");
  EXPECT_EQ(canon("count where (a = 1 or b = 2) and c = 3"),
            "count where (a = 1 or b = 2) and c = 3");
  EXPECT_EQ(canon("count where x <> 1.50"), "count where x != 1.5");
  EXPECT_EQ(canon("count where x not in (1)"), "count where not (x in (1))");
}

TEST(Parser, QuantileAsRWritesIt) {
  auto canon = [](const char* t) {
    auto q = parseQuery(t);
    return q.isOk() ? canonicalQueryText(*q) : q.status().message();
  };
  EXPECT_EQ(canon("median(age)"), "quantile(age, [0.5])");
  EXPECT_EQ(canon("quantile(age)"), "quantile(age, [0.25, 0.5, 0.75])");
  EXPECT_EQ(canon("quantile(age, 0.9)"), "quantile(age, [0.9])");
  EXPECT_EQ(canon("quantile(age, c(0.1, 0.9))"), "quantile(age, [0.1, 0.9])");
  EXPECT_EQ(canon("QUANTILE(age, probs = [0.1, 0.9])"), "quantile(age, [0.1, 0.9])");
  // 0 and 1 are the minimum and maximum: refused with the way out.
  for (const char* bad : {"quantile(age, 0)", "quantile(age, c(0.5, 1))", "quantile(age, 1.5)",
                          "quantile(age, [])"}) {
    auto q = parseQuery(bad);
    ASSERT_FALSE(q.isOk()) << bad;
    EXPECT_EQ(q.status().code(), StatusCode::kInvalidArgument);
  }
  EXPECT_NE(parseQuery("quantile(age, 0)").status().message().find("min(x) or max(x)"),
            std::string::npos);
  // The round statistic: pairs with lo <= hi, 2..65536 buckets.
  for (const char* bad : {"quantile_counts(age, [1], 16)", "quantile_counts(age, [5, 4], 16)",
                          "quantile_counts(age, [1, 2], 1)", "quantile_counts(age, [-1, 2], 16)",
                          "quantile_counts(age, [1, 2], 70000)",
                          "quantile_counts(age, [0, 18446744073709551616], 16)"}) {
    EXPECT_FALSE(parseQuery(bad).isOk()) << bad;
  }
  // JSON: the same rules, and the same query as the text.
  auto j = parseQueryJson(R"({"select": [{"fn": "quantile", "var": "age", "probs": [0.5]}]})");
  ASSERT_TRUE(j.isOk()) << j.status().message();
  EXPECT_EQ(*j, *parseQuery("median(age)"));
  EXPECT_FALSE(
      parseQueryJson(R"({"select": [{"fn": "quantile", "var": "age", "probs": [0]}]})").isOk());
  EXPECT_FALSE(parseQueryJson(
                   R"({"select": [{"fn": "quantile_counts", "var": "age", "intervals": [1, -2],
                       "buckets": 16}]})")
                   .isOk());
  // Sites never answer a quantile itself, nor one grouped with by.
  const Dictionary dict = studyDictionary();
  auto direct = bindQuery(*parseQuery("median(age)"), dict);
  EXPECT_NE(direct.status().message().find("rounds of counts"), std::string::npos)
      << direct.status().message();
  auto grouped = bindQuery(*parseQuery("quantile_counts(age, [0, 9], 16) by arm"), dict);
  EXPECT_NE(grouped.status().message().find("'by'"), std::string::npos);
  auto text = bindQuery(*parseQuery("quantile_counts(sex, [0, 9], 16)"), dict);
  EXPECT_NE(text.status().message().find("integer or real"), std::string::npos);
}

TEST(Parser, StructureOfParsedQuery) {
  Query q =
      *parseQuery("count, min(age), hist(age, [0, 10]) where a = 1 and not b is missing by c, d");
  ASSERT_EQ(q.select.size(), 3u);
  EXPECT_TRUE(q.select[0].var.empty());
  EXPECT_TRUE(q.select[1].disclosive());
  EXPECT_FALSE(q.select[0].disclosive());
  EXPECT_FALSE(q.select[2].uniformBins);
  EXPECT_EQ(q.select[2].breaks, (std::vector<double>{0, 10}));
  ASSERT_TRUE(q.where.has_value());
  EXPECT_EQ(q.where->kind, Filter::Kind::kAnd);
  ASSERT_EQ(q.where->children.size(), 2u);
  EXPECT_EQ(q.where->children[1].kind, Filter::Kind::kNot);
  EXPECT_EQ(q.where->children[1].children[0].kind, Filter::Kind::kIsMissing);
  EXPECT_EQ(q.by, (std::vector<std::string>{"c", "d"}));
  EXPECT_EQ(q.where->children[0].values[0], Literal::ofInteger(1));
}

TEST(Parser, JsonFormIsEquivalentToText) {
  const std::pair<const char*, const char*> pairs[] = {
      {"count, mean(bmi) where age >= 65 and sex = \"F\" by arm",
       R"({"select":[{"fn":"count"},{"fn":"mean","var":"bmi"}],"by":["arm"],
           "where":{"and":[{"var":"age","op":">=","value":65},{"var":"sex","op":"=","value":"F"}]}})"},
      {"hist(age, 0, 120, 10)",
       R"({"select":[{"fn":"hist","var":"age","from":0,"to":120,"width":10}]})"},
      {"hist(age, [18, 40.5, 120])",
       R"({"select":[{"fn":"hist","var":"age","breaks":[18,40.5,120]}]})"},
      {"km(t, e) by arm", R"({"select":[{"fn":"km","time":"t","event":"e"}],"by":["arm"]})"},
      {"km(t, e, times = [90, 180.5], rmean = 365)",
       R"({"select":[{"fn":"km","time":"t","event":"e","times":[90,180.5],"rmean":365}]})"},
      {"km(t, e, rmean = common)",
       R"({"select":[{"fn":"km","time":"t","event":"e","rmean":"common"}]})"},
      {"km(t, e, strata = s) by g",
       R"({"select":[{"fn":"km","time":"t","event":"e","strata":"s"}],"by":["g"]})"},
      {"count where not (x in (\"A\", \"B\")) or y is missing or z is not missing or d < date "
       "\"2024-01-01\" or b = true or r != 2.5",
       R"({"select":[{"fn":"count"}],"where":{"or":[
           {"var":"x","op":"not in","values":["A","B"]},{"var":"y","op":"is missing"},
           {"var":"z","op":"is not missing"},{"var":"d","op":"<","value":{"date":"2024-01-01"}},
           {"var":"b","op":"=","value":true},{"var":"r","op":"!=","value":2.5}]}})"},
      {"count where not (a = 1)",
       R"({"select":[{"fn":"count"}],"where":{"not":{"var":"a","op":"=","value":1}}})"},
  };
  for (const auto& [text, json] : pairs) {
    auto fromText = parseQuery(text);
    auto fromJson = parseQuery(json);  // dispatches on the leading '{'
    ASSERT_TRUE(fromText.isOk()) << text << ": " << fromText.status().message();
    ASSERT_TRUE(fromJson.isOk()) << json << ": " << fromJson.status().message();
    EXPECT_EQ(*fromJson, *fromText) << json;
    auto back = parseQueryJson(toJson(*fromText));
    ASSERT_TRUE(back.isOk()) << toJson(*fromText);
    EXPECT_EQ(*back, *fromText);
  }
  for (const char* text : kRoundTrip) {
    Query q = *parseQuery(text);
    auto back = parseQueryJson(toJson(q));
    ASSERT_TRUE(back.isOk()) << toJson(q) << ": " << back.status().message();
    EXPECT_EQ(*back, q) << toJson(q);
  }
}

TEST(Parser, JsonErrorsNameThePath) {
  auto err = [](const char* json) {
    auto q = parseQueryJson(json);
    EXPECT_FALSE(q.isOk()) << json;
    return q.isOk() ? std::string() : q.status().message();
  };
  EXPECT_NE(err("{\"select\":[{\"fn\":\"count\"}").find("not valid JSON"), std::string::npos);
  EXPECT_NE(err("{\"select\":[]}").find("select: must be a non-empty array"), std::string::npos);
  EXPECT_NE(err("{\"select\":[{\"fn\":\"meen\",\"var\":\"x\"}]}")
                .find("select[0].fn: unknown statistic \"meen\""),
            std::string::npos);
  EXPECT_NE(err("{\"select\":[{\"fn\":\"count\"}],\"where\":{\"and\":[{\"var\":\"a\",\"op\":\"~\","
                "\"value\":1},{\"var\":\"b\",\"op\":\"=\",\"value\":1}]}}")
                .find("where.and[0].op: unknown operator \"~\""),
            std::string::npos);
  EXPECT_NE(
      err("{\"select\":[{\"fn\":\"count\"}],\"group\":[\"a\"]}").find("unknown key \"group\""),
      std::string::npos);
  EXPECT_NE(err("{\"select\":[{\"fn\":\"hist\",\"var\":\"a\",\"from\":0,\"to\":1}]}")
                .find("\"width\" is missing"),
            std::string::npos);
  EXPECT_NE(
      err("{\"select\":[{\"fn\":\"count\"}],\"where\":{\"var\":\"a\",\"op\":\"=\",\"value\":[1]}}")
          .find("where.value: a value must be"),
      std::string::npos);
  EXPECT_NE(err(R"({"select":[{"fn":"km","time":"t","event":"e","rmean":"all"}]})")
                .find(R"(select[0].rmean: must be a number (a time) or "common")"),
            std::string::npos);
  EXPECT_NE(err(R"({"select":[{"fn":"km","time":"t","event":"e","times":[3,2]}]})")
                .find("select[0].times: must be strictly increasing"),
            std::string::npos);
  EXPECT_NE(err(R"({"select":[{"fn":"km","time":"t","event":"e","times":[]}]})")
                .find("select[0].times: needs at least one time"),
            std::string::npos);
  EXPECT_NE(err(R"({"select":[{"fn":"km","time":"t","event":"e","times":["1"]}]})")
                .find("select[0].times[0]: must be a number"),
            std::string::npos);
}

std::string bindError(const std::string& text) {
  auto q = parseQuery(text);
  EXPECT_TRUE(q.isOk()) << q.status().message();
  if (!q.isOk()) return {};
  auto b = bindQuery(*q, studyDictionary());
  EXPECT_FALSE(b.isOk()) << text;
  if (b.isOk()) return {};
  EXPECT_EQ(b.status().code(), StatusCode::kInvalidArgument);
  return b.status().message();
}

TEST(Bind, SubjectIdentifiersCannotBeQueried) {
  auto dict = storage::Dictionary::parseToml(R"(study = "ID"
[[variable]]
name = "usubjid"
column = "USUBJID"
type = "identifier"
[[variable]]
name = "age"
type = "integer"
)",
                                             "id.toml");
  ASSERT_TRUE(dict.isOk()) << dict.status().toString();
  for (const char* text : {"count by usubjid", "count where usubjid = \"S01-1\"", "count(usubjid)",
                           "lm(age ~ usubjid)"}) {
    auto q = parseQuery(text);
    ASSERT_TRUE(q.isOk()) << text;
    auto b = bindQuery(*q, *dict);
    ASSERT_FALSE(b.isOk()) << text;
    EXPECT_NE(b.status().message().find("variable 'usubjid' is a subject identifier"),
              std::string::npos)
        << b.status().message();
  }
  // A near miss is never completed to the identifier's name.
  auto q = parseQuery("count by usubjd");
  ASSERT_TRUE(q.isOk());
  auto b = bindQuery(*q, *dict);
  ASSERT_FALSE(b.isOk());
  EXPECT_EQ(b.status().message(), "unknown variable 'usubjd' (the study ID has no such variable)");
}

TEST(Bind, ErrorsNameTheProblem) {
  EXPECT_EQ(bindError("mean(bmii)"), "unknown variable 'bmii' (did you mean 'bmi'?)");
  EXPECT_EQ(bindError("count by Arm"), "unknown variable 'Arm' (did you mean 'arm'?)");
  EXPECT_EQ(bindError("count where zzzzzz > 1"),
            "unknown variable 'zzzzzz' (the study TEST-1 has no such variable)");
  EXPECT_EQ(bindError("mean(arm)"),
            "mean(arm): arm is categorical; mean needs an integer or real variable");
  EXPECT_EQ(bindError("sum(enrolled)"),
            "sum(enrolled): enrolled is date; sum needs an integer or real variable");
  EXPECT_EQ(bindError("min(sex)"),
            "min(sex): sex is categorical; min needs an integer, real or date variable");
  EXPECT_EQ(bindError("count where sex = \"X\""), "'X' is not a level of sex (levels: F, M)");
  EXPECT_EQ(bindError("count where sex in (\"F\", \"m\")"),
            "'m' is not a level of sex (levels: F, M)");
  EXPECT_EQ(bindError("count by bmi"),
            "cannot group by bmi: bmi is real; group-by needs a categorical, boolean or integer "
            "variable");
  EXPECT_EQ(bindError("count by arm, arm"), "'arm' appears twice after 'by'");
  EXPECT_NE(bindError("count where sex = 1")
                .find("sex is categorical: compare it with a quoted "
                      "level (levels: F, M), not 1"),
            std::string::npos);
  EXPECT_EQ(bindError("count where sex < \"F\""),
            "'<' cannot compare categorical variable sex: use =, != or in");
  EXPECT_EQ(bindError("count where age = \"65\""),
            "age is integer: compare it with a number, not \"65\"");
  EXPECT_EQ(bindError("count where smoker = 1"),
            "smoker is boolean: compare it with true or false, not 1");
  EXPECT_NE(bindError("count where enrolled > \"2024-02-30\"").find("not a valid date"),
            std::string::npos);
  EXPECT_NE(bindError("count where enrolled > 5").find("enrolled is a date"), std::string::npos);
  EXPECT_NE(bindError("count, hist(age, 0, 10, 1)").find("must be the only statistic"),
            std::string::npos);
  EXPECT_NE(bindError("km(sex, death)").find("the time variable sex is categorical"),
            std::string::npos);
  EXPECT_NE(bindError("km(os_days, death, strata = arm) by sex").find("runs at the coordinator"),
            std::string::npos);
  EXPECT_NE(bindError("km(os_days, bmi)").find("the event variable bmi is real"),
            std::string::npos);
  EXPECT_NE(bindError("hist(enrolled, 0, 10, 1)").find("hist needs an integer or real"),
            std::string::npos);
}

TEST(Bind, ShapeNamesDictionaryQueryAndCells) {
  Dictionary dict = studyDictionary();
  auto b = bindQuery(*parseQuery("COUNT BY arm, ecog"), dict);
  ASSERT_TRUE(b.isOk());
  PartialShape s = b->shape();
  EXPECT_EQ(s.dictionaryHash, dict.hashHex());
  EXPECT_EQ(s.queryText, "count by arm, ecog");
  EXPECT_EQ(s.cells, 3u * 6u);  // ecog has 5 levels plus NA
  EXPECT_EQ(s.statistics, 1u);
}

}  // namespace
}  // namespace trialmesh::query::testing
