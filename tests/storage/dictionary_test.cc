#include "storage/dictionary.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

#include "storage/column.h"

namespace trialmesh::storage {
namespace {

using ::testing::HasSubstr;

constexpr const char* kGood = R"(
# A comment that must not matter.
study = "LUNG-7"

[[variable]]
name = "age"
type = "integer"
unit = "years"
description = "Age at enrolment"
min = 18
max = 100

[[variable]]
name = "ecog"
column = "ph.ecog"
type = "categorical"
levels = ["0", "1", "2", "3", "4"]
labels = ["Fully active", "Restricted", "Ambulatory", "Limited", "Disabled"]
missing = true

[[variable]]
name = "weight"
type = "real"
min = 30.5
max = 250

[[variable]]
name = "smoker"
type = "boolean"

[[variable]]
name = "visit"
type = "date"
min = 2020-02-29
max = "2030-12-31"
)";

Status parseError(const std::string& text) {
  auto r = Dictionary::parseToml(text, "dict.toml");
  EXPECT_FALSE(r.isOk()) << "accepted:\n" << text;
  return r.status();
}

// One variable with extra lines, for validation-error tests.
std::string oneVar(const std::string& body) {
  return "study = \"S\"\n[[variable]]\nname = \"v\"\n" + body;
}

TEST(DictionaryTest, ParsesAllKeys) {
  auto r = Dictionary::parseToml(kGood, "dict.toml");
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  const Dictionary& d = *r;
  EXPECT_EQ(d.study(), "LUNG-7");
  ASSERT_EQ(d.size(), 5u);
  const Variable& age = d.variable(0);
  EXPECT_EQ(age.name, "age");
  EXPECT_EQ(age.type, VariableType::kInteger);
  EXPECT_EQ(age.csvColumn, "age");
  EXPECT_EQ(age.unit, "years");
  EXPECT_EQ(age.description, "Age at enrolment");
  EXPECT_EQ(age.min, 18.0);
  EXPECT_EQ(age.max, 100.0);
  EXPECT_FALSE(age.missingAllowed);
  EXPECT_EQ(physicalTypeOf(age), PhysicalType::kI8);
  const Variable& ecog = d.variable(1);
  EXPECT_EQ(ecog.csvColumn, "ph.ecog");
  EXPECT_TRUE(ecog.missingAllowed);
  ASSERT_EQ(ecog.levels.size(), 5u);
  EXPECT_EQ(ecog.levels[2].code, "2");
  EXPECT_EQ(ecog.levels[2].label, "Ambulatory");
  EXPECT_EQ(ecog.levelIndex("3"), 3u);
  EXPECT_EQ(ecog.levelIndex("7"), std::nullopt);
  EXPECT_EQ(d.variable(2).min, 30.5);
  EXPECT_EQ(d.variable(3).type, VariableType::kBoolean);
  const Variable& visit = d.variable(4);
  EXPECT_EQ(visit.min, static_cast<double>(*parseIsoDate("2020-02-29")));
  EXPECT_EQ(visit.max, static_cast<double>(*parseIsoDate("2030-12-31")));
  EXPECT_EQ(d.find("weight"), 2u);
  EXPECT_EQ(d.find("ph.ecog"), std::nullopt);
}

TEST(DictionaryTest, ExampleMinAboveMaxMessage) {
  Status s = parseError(
      "study = \"S\"\n[[variable]]\nname = \"age\"\ntype = \"integer\"\n"
      "min = 120\nmax = 18\n");
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("dict.toml: variable 'age': key 'min' (120) is above "
                                     "'max' (18)"));
}

TEST(DictionaryTest, SyntaxErrorHasLineAndColumn) {
  Status s = parseError("study = \"S\"\n\n[[variable]]\nname = = 3\n");
  EXPECT_THAT(s.message(), HasSubstr("dict.toml:4:"));
  EXPECT_THAT(s.message(), HasSubstr("TOML syntax error"));
}

struct BadCase {
  std::string text;
  const char* fragment;
};

TEST(DictionaryTest, RejectsEveryRuleViolation) {
  const std::vector<BadCase> cases = {
      {"[[variable]]\nname = \"a\"\ntype = \"real\"\n", "key 'study' is required"},
      {"study = 3\n[[variable]]\nname = \"a\"\ntype = \"real\"\n", "key 'study' must be a string"},
      {"study = \"\"\n[[variable]]\nname = \"a\"\ntype = \"real\"\n",
       "key 'study' must be a non-empty string"},
      {"study = \"S\"\n", "declares no variables"},
      {"study = \"S\"\nstudyy = 1\n[[variable]]\nname = \"a\"\ntype = \"real\"\n",
       "unknown top-level key 'studyy'"},
      {"study = \"S\"\n[variable]\nname = \"a\"\n", "key 'variable' must be an array of tables"},
      {"study = \"S\"\n[[variable]]\ntype = \"real\"\n", "variable #1: key 'name' is required"},
      {"study = \"S\"\n[[variable]]\nname = \"id\"\ntype = \"identifier\"\nmissing = true\n",
       "key 'missing' cannot be true for an identifier"},
      {"study = \"S\"\n[[variable]]\nname = \"id\"\ntype = \"identifier\"\nmin = 1\n",
       "key 'min' is not allowed for type 'identifier'"},
      {"study = \"S\"\n[[variable]]\nname = \"id\"\ntype = \"identifier\"\nlevels = [\"a\"]\n",
       "key 'levels' is only allowed for categorical variables, not 'identifier'"},
      {"study = \"S\"\n[[variable]]\nname = 5\ntype = \"real\"\n", "key 'name' must be a string"},
      {"study = \"S\"\n[[variable]]\nname = \"2x\"\ntype = \"real\"\n",
       "variable '2x': key 'name' ('2x') must be an identifier"},
      {"study = \"S\"\n[[variable]]\nname = \"a-b\"\ntype = \"real\"\n", "must be an identifier"},
      {"study = \"S\"\n[[variable]]\nname = \"a\"\ntype = \"real\"\n[[variable]]\nname = \"a\"\n"
       "type = \"real\"\ncolumn = \"b\"\n",
       "key 'name' ('a') is declared more than once"},
      {"study = \"S\"\n[[variable]]\nname = \".a\"\ntype = \"real\"\n",
       "variable '.a': key 'name' ('.a') must be an identifier: a letter or '_' followed by "
       "letters, digits, '_' or '.'"},
      {oneVar(""), "variable 'v': key 'type' is required"},
      {oneVar("type = \"float\"\n"), "key 'type' ('float') must be one of integer, real"},
      {oneVar("type = \"real\"\nmissing = \"yes\"\n"),
       "key 'missing' must be true or false, not a string"},
      {oneVar("type = \"real\"\nunit = 3\n"), "key 'unit' must be a string, not an integer"},
      {oneVar("type = \"real\"\ncolumn = \"\"\n"), "key 'column' must not be empty"},
      {oneVar("type = \"real\"\nmni = 3\n"), "variable 'v': unknown key 'mni'"},
      {oneVar("type = \"real\"\nmin = \"3\"\n"), "key 'min' must be a number, not a string"},
      {oneVar("type = \"real\"\nmin = nan\n"), "key 'min' must be a finite number"},
      {oneVar("type = \"real\"\nmax = inf\n"), "key 'max' must be a finite number"},
      {oneVar("type = \"real\"\nmin = 5.5\nmax = 1.5\n"), "key 'min' (5.5) is above 'max' (1.5)"},
      {oneVar("type = \"integer\"\nmin = 1.5\n"),
       "key 'min' (1.5) must be a whole number for type 'integer'"},
      {oneVar("type = \"integer\"\nmax = 9007199254740993\n"), "outside +/-2^53"},
      {oneVar("type = \"categorical\"\nlevels = [\"a\"]\nmin = 1\n"),
       "key 'min' is not allowed for type 'categorical'"},
      {oneVar("type = \"boolean\"\nmax = 1\n"), "key 'max' is not allowed for type 'boolean'"},
      {oneVar("type = \"date\"\nmin = 2021-02-29\n"), "dict.toml:5:"},
      {oneVar("type = \"date\"\nmin = \"2021-13-01\"\n"),
       "key 'min' ('2021-13-01') is not a valid date"},
      {oneVar("type = \"date\"\nmin = 3\n"), "key 'min' must be a date (YYYY-MM-DD)"},
      {oneVar("type = \"date\"\nmin = 2021-01-02\nmax = 2021-01-01\n"),
       "key 'min' (2021-01-02) is above 'max' (2021-01-01)"},
      {oneVar("type = \"categorical\"\n"), "key 'levels' is required"},
      {oneVar("type = \"categorical\"\nlevels = []\n"), "key 'levels' is required"},
      {oneVar("type = \"categorical\"\nlevels = [\"a\", \"a\"]\n"),
       "key 'levels' lists 'a' more than once"},
      {oneVar("type = \"categorical\"\nlevels = [1, 2]\n"),
       "key 'levels' entry 1 must be a string"},
      {oneVar("type = \"categorical\"\nlevels = [\"\"]\n"), "key 'levels' contains an empty level"},
      {oneVar("type = \"categorical\"\nlevels = [\"NA\"]\nmissing = true\n"),
       "contains 'NA', which is ambiguous"},
      {oneVar("type = \"categorical\"\nlevels = [\"a\", \"b\"]\nlabels = [\"x\"]\n"),
       "key 'labels' has 1 entries but 'levels' has 2"},
      {oneVar("type = \"real\"\nlevels = [\"a\"]\n"),
       "key 'levels' is only allowed for categorical variables, not 'real'"},
      {oneVar("type = \"integer\"\nlabels = [\"a\"]\n"),
       "key 'labels' is only allowed for categorical variables"},
  };
  for (const BadCase& c : cases) {
    Status s = parseError(c.text);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << c.text;
    EXPECT_THAT(s.message(), HasSubstr(c.fragment)) << c.text;
    EXPECT_THAT(s.message(), HasSubstr("dict.toml")) << c.text;
  }
}

TEST(DictionaryTest, TooManyLevelsRejected) {
  std::string levels;
  for (int i = 0; i < 65537; ++i) levels += (i ? ",\"" : "\"") + std::to_string(i) + "\"";
  Status s = parseError(oneVar("type = \"categorical\"\nlevels = [" + levels + "]\n"));
  EXPECT_THAT(s.message(), HasSubstr("has 65537 levels; at most 65536"));
  // Exactly 65536 is fine and needs 16-bit storage.
  levels.resize(levels.rfind(','));
  auto ok = Dictionary::parseToml(oneVar("type = \"categorical\"\nlevels = [" + levels + "]\n"),
                                  "dict.toml");
  ASSERT_TRUE(ok.isOk()) << ok.status().toString();
  EXPECT_EQ(physicalTypeOf(ok->variable(0)), PhysicalType::kU16);
}

TEST(DictionaryTest, CreateValidatesLikeParse) {
  Variable v;
  v.name = "age";
  v.csvColumn = "age";
  v.type = VariableType::kInteger;
  v.min = 120;
  v.max = 18;
  auto r = Dictionary::create("S", {v});
  ASSERT_FALSE(r.isOk());
  EXPECT_THAT(r.status().message(), HasSubstr("variable 'age': key 'min' (120) is above"));
  v.max = 130;
  EXPECT_TRUE(Dictionary::create("S", {v}).isOk());
}

// Text keys must be UTF-8: malformed bytes, an overlong form and an encoded surrogate are
// refused in a study name and in a level's label; accented and CJK text is fine.
TEST(DictionaryTest, TextThatIsNotUtf8IsRefused) {
  Variable v;
  v.name = "arm";
  v.csvColumn = "arm";
  v.type = VariableType::kCategorical;
  v.levels = {{"A", "Placebo"}, {"B", "Médicament 药物"}};
  ASSERT_TRUE(Dictionary::create("LUNG-7", {v}).isOk());
  for (const std::string& bad :
       {std::string("\xC3\x28"), std::string("\xC0\xAF"), std::string("\xED\xA0\x80"),
        std::string("\xF4\x90\x80\x80"), std::string("ok\xE4\xB8")}) {
    Variable w = v;
    w.levels[1].label = bad;
    auto r = Dictionary::create("LUNG-7", {w});
    ASSERT_FALSE(r.isOk());
    EXPECT_THAT(r.status().message(), HasSubstr("not valid UTF-8"));
    auto s = Dictionary::create("LUNG-7" + bad, {v});
    ASSERT_FALSE(s.isOk());
    EXPECT_THAT(s.status().message(), HasSubstr("key 'study' is not valid UTF-8"));
  }
}

TEST(DictionaryTest, HashIgnoresFormattingAndKeyOrder) {
  auto a = Dictionary::parseToml(kGood, "a.toml");
  // Same meaning: keys reordered, comments and whitespace changed, description changed
  // (informational), explicit default column, date bound given as a string.
  auto b = Dictionary::parseToml(R"(study="LUNG-7"   # trailing comment
[[variable]]
max = 100
min = 18
type = "integer"
name = "age"
column = "age"
unit = "years"
[[variable]]
missing = true
labels = ["Fully active", "Restricted", "Ambulatory", "Limited", "Disabled"]
levels = ["0", "1", "2", "3", "4"]
type = "categorical"
column = "ph.ecog"
name = "ecog"
[[variable]]
name = "weight"
type = "real"
max = 250.0
min = 30.5
[[variable]]
name = "smoker"
type = "boolean"
missing = false
[[variable]]
name = "visit"
type = "date"
min = "2020-02-29"
max = 2030-12-31
)",
                                 "b.toml");
  ASSERT_TRUE(a.isOk()) << a.status().toString();
  ASSERT_TRUE(b.isOk()) << b.status().toString();
  EXPECT_EQ(a->canonicalForm(), b->canonicalForm());
  EXPECT_EQ(a->hashHex(), b->hashHex());
  EXPECT_EQ(a->hashHex().size(), 64u);
  EXPECT_EQ(a->hashHex(), crypto::toHex(crypto::sha256(a->canonicalForm())));
}

TEST(DictionaryTest, HashChangesWithMeaning) {
  auto base = Dictionary::parseToml(kGood, "a.toml");
  ASSERT_TRUE(base.isOk());
  const std::string h = base->hashHex();
  const std::pair<std::string, std::string> edits[] = {
      {"study = \"LUNG-7\"", "study = \"LUNG-8\""},
      {"max = 100", "max = 101"},
      {"unit = \"years\"", "unit = \"yrs\""},
      {"column = \"ph.ecog\"", "column = \"ecog\""},
      {"\"Ambulatory\"", "\"Walking\""},
      {"levels = [\"0\", \"1\", \"2\", \"3\", \"4\"]",
       "levels = [\"1\", \"0\", \"2\", \"3\", \"4\"]"},
      {"missing = true", "missing = false"},
      {"type = \"boolean\"", "type = \"boolean\"\nmissing = true"},
      {"min = 30.5", "min = 30.25"},
  };
  for (const auto& [from, to] : edits) {
    std::string text = kGood;
    auto at = text.find(from);
    ASSERT_NE(at, std::string::npos) << from;
    text.replace(at, from.size(), to);
    auto changed = Dictionary::parseToml(text, "b.toml");
    ASSERT_TRUE(changed.isOk()) << changed.status().toString();
    EXPECT_NE(changed->hashHex(), h) << "edit " << from << " -> " << to;
  }
}

TEST(DictionaryTest, CanonicalFormLayout) {
  auto d = Dictionary::parseToml("study = \"S\"\n[[variable]]\nname = \"b\"\ntype = \"boolean\"\n",
                                 "d.toml");
  ASSERT_TRUE(d.isOk());
  // Independent construction of the documented layout (docs/dictionary.md).
  std::string expected = "TMDICT";
  expected += '\x01';
  expected += std::string("\0\0\0\x01", 4) + "S";
  expected += std::string("\0\0\0\x01", 4);
  expected += std::string("\0\0\0\x01", 4) + "b";  // name
  expected += '\x03';                              // boolean
  expected += std::string("\0\0\0\x01", 4) + "b";  // column
  expected += std::string("\0\0\0\0", 4);          // unit
  expected += '\0';                                // no range
  expected += '\0';                                // missing = false
  expected += std::string("\0\0\0\0", 4);          // no levels
  EXPECT_EQ(d->canonicalForm(), expected);
}

TEST(DictionaryTest, ToTomlRoundTrips) {
  auto a = Dictionary::parseToml(kGood, "a.toml");
  ASSERT_TRUE(a.isOk());
  auto b = Dictionary::parseToml(a->toToml(), "round.toml");
  ASSERT_TRUE(b.isOk()) << b.status().toString() << "\n" << a->toToml();
  EXPECT_EQ(a->hashHex(), b->hashHex());
  EXPECT_EQ(b->variable(0).description, "Age at enrolment");

  // Awkward strings and numbers survive too.
  Variable v;
  v.name = "x";
  v.csvColumn = "col \"quoted\"\\ with\ttab\nand newline, é";
  v.unit = "µg/dL";
  v.type = VariableType::kReal;
  v.min = 0.1;
  v.max = 1e300;
  Variable c;
  c.name = "c";
  c.csvColumn = "c";
  c.type = VariableType::kCategorical;
  c.levels = {{"a\"b", ""}, {"\x01", ""}};
  auto d = Dictionary::create("S \"q\"", {v, c});
  ASSERT_TRUE(d.isOk()) << d.status().toString();
  auto e = Dictionary::parseToml(d->toToml(), "round.toml");
  ASSERT_TRUE(e.isOk()) << e.status().toString() << "\n" << d->toToml();
  EXPECT_EQ(e->canonicalForm(), d->canonicalForm());
  EXPECT_EQ(e->variable(0).csvColumn, v.csvColumn);
  EXPECT_EQ(e->variable(0).min, 0.1);
}

TEST(DictionaryTest, LoadFile) {
  const std::string path = ::testing::TempDir() + "/dict_load_test.toml";
  {
    std::ofstream out(path);
    out << kGood;
  }
  auto d = Dictionary::loadFile(path);
  ASSERT_TRUE(d.isOk()) << d.status().toString();
  EXPECT_EQ(d->size(), 5u);
  std::remove(path.c_str());
  auto missing = Dictionary::loadFile(path);
  ASSERT_FALSE(missing.isOk());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr(path));
}

// Naive day counting, independent of the library's formula.
int32_t naiveDays(int y, int m, int d) {
  auto leap = [](int yy) { return (yy % 4 == 0 && yy % 100 != 0) || yy % 400 == 0; };
  static const int kLen[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  int32_t days = 0;
  if (y >= 1970) {
    for (int yy = 1970; yy < y; ++yy) days += leap(yy) ? 366 : 365;
  } else {
    for (int yy = y; yy < 1970; ++yy) days -= leap(yy) ? 366 : 365;
  }
  for (int mm = 1; mm < m; ++mm) days += kLen[mm - 1] + (mm == 2 && leap(y) ? 1 : 0);
  return days + d - 1;
}

TEST(DateTest, KnownValues) {
  EXPECT_EQ(parseIsoDate("1970-01-01"), 0);
  EXPECT_EQ(parseIsoDate("1970-01-02"), 1);
  EXPECT_EQ(parseIsoDate("1969-12-31"), -1);
  EXPECT_EQ(parseIsoDate("2000-03-01"), 11017);
  EXPECT_EQ(formatIsoDate(0), "1970-01-01");
  EXPECT_EQ(formatIsoDate(-1), "1969-12-31");
  EXPECT_EQ(formatIsoDate(19782), "2024-02-29");
}

TEST(DateTest, LeapYearsAndInvalidDates) {
  EXPECT_TRUE(parseIsoDate("2024-02-29"));
  EXPECT_TRUE(parseIsoDate("2000-02-29"));   // divisible by 400
  EXPECT_FALSE(parseIsoDate("1900-02-29"));  // divisible by 100
  EXPECT_FALSE(parseIsoDate("2023-02-29"));
  EXPECT_FALSE(parseIsoDate("2023-04-31"));
  EXPECT_FALSE(parseIsoDate("2023-13-01"));
  EXPECT_FALSE(parseIsoDate("2023-00-10"));
  EXPECT_FALSE(parseIsoDate("2023-01-00"));
  EXPECT_FALSE(parseIsoDate("2023-1-01"));
  EXPECT_FALSE(parseIsoDate("2023/01/01"));
  EXPECT_FALSE(parseIsoDate("2023-01-01T00"));
  EXPECT_FALSE(parseIsoDate(" 2023-01-01"));
  EXPECT_FALSE(parseIsoDate(""));
}

TEST(DateTest, MatchesNaiveCountAndRoundTrips) {
  static const int kLen[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  for (int y : {1600, 1899, 1900, 1968, 1970, 1999, 2000, 2001, 2024, 2100, 2400}) {
    for (int m = 1; m <= 12; ++m) {
      const bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
      const int len = kLen[m - 1] + (m == 2 && leap ? 1 : 0);
      for (int d = 1; d <= len; ++d) {
        char buf[48];
        std::snprintf(buf, sizeof buf, "%04d-%02d-%02d", y, m, d);
        auto days = parseIsoDate(buf);
        ASSERT_TRUE(days) << buf;
        EXPECT_EQ(*days, naiveDays(y, m, d)) << buf;
        EXPECT_EQ(formatIsoDate(*days), buf);
      }
    }
  }
}

}  // namespace
}  // namespace trialmesh::storage
