// Tests of the synthetic LUNG-7 generator (tools/gen). The CSV is read back with a small parser
// written here, independent of storage/'s importer, and checked against the dictionary the
// generator declares (parsed by storage::Dictionary).
#include "tools/gen/gen.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "crypto/hash.h"
#include "storage/dictionary.h"

namespace trialmesh::gen {
namespace {

namespace fs = std::filesystem;

std::string readFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

struct Field {
  std::string text;
  bool quoted = false;
};
using CsvRow = std::vector<Field>;

// RFC 4180 reader; every record must end with LF (no CR).
std::vector<CsvRow> parseCsv(const std::string& text) {
  std::vector<CsvRow> rows;
  CsvRow row;
  Field field;
  size_t i = 0;
  while (i < text.size()) {
    char c = text[i];
    if (c == '"' && field.text.empty() && !field.quoted) {
      field.quoted = true;
      ++i;
      while (true) {
        EXPECT_LT(i, text.size()) << "unterminated quoted field";
        if (i >= text.size()) return rows;
        if (text[i] == '"') {
          if (i + 1 < text.size() && text[i + 1] == '"') {
            field.text += '"';
            i += 2;
            continue;
          }
          ++i;
          break;
        }
        field.text += text[i++];
      }
      continue;
    }
    if (c == ',') {
      row.push_back(std::move(field));
      field = Field();
    } else if (c == '\n') {
      row.push_back(std::move(field));
      field = Field();
      rows.push_back(std::move(row));
      row.clear();
    } else {
      EXPECT_NE(c, '\r') << "CR found; the generator writes LF line endings";
      field.text += c;
    }
    ++i;
  }
  EXPECT_TRUE(row.empty() && field.text.empty()) << "last record does not end with LF";
  return rows;
}

// Days since 1970-01-01 of a strictly formatted YYYY-MM-DD, computed naively day by day from
// year lengths (independent of the generator's and storage's date code).
std::optional<int64_t> naiveDays(const std::string& s) {
  if (s.size() != 10 || s[4] != '-' || s[7] != '-') return std::nullopt;
  for (int i : {0, 1, 2, 3, 5, 6, 8, 9}) {
    if (s[i] < '0' || s[i] > '9') return std::nullopt;
  }
  const int y = std::stoi(s.substr(0, 4)), m = std::stoi(s.substr(5, 2)),
            d = std::stoi(s.substr(8, 2));
  const auto leap = [](int yy) { return (yy % 4 == 0 && yy % 100 != 0) || yy % 400 == 0; };
  const int monthDays[] = {31, leap(y) ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (y < 1970 || m < 1 || m > 12 || d < 1 || d > monthDays[m - 1]) return std::nullopt;
  int64_t days = 0;
  for (int yy = 1970; yy < y; ++yy) days += leap(yy) ? 366 : 365;
  for (int mm = 1; mm < m; ++mm) days += monthDays[mm - 1];
  return days + d - 1;
}

bool parseInteger(const std::string& s, int64_t& out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size() && !s.empty();
}

bool parseReal(const std::string& s, double& out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size() && !s.empty();
}

class GenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           ("tm_gen_test_" + std::to_string(::getpid()) + "_" + info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Writes the dataset into dir_/<tag>/ and returns {csv, dictionary} text.
  std::pair<std::string, std::string> generate(const GenOptions& o, const std::string& tag) {
    fs::create_directories(dir_ / tag);
    const fs::path csv = dir_ / tag / "data.csv", dict = dir_ / tag / "dictionary.toml";
    Status s = writeTrialDataset(o, csv.string(), dict.string());
    EXPECT_TRUE(s.isOk()) << s.toString();
    return {readFile(csv), readFile(dict)};
  }

  fs::path dir_;
};

const std::vector<std::string> kHeader = {"USUBJID", "SITEID",  "ARM",      "SEX",       "AGE",
                                          "BMI",     "ph.ecog", "meal.cal", "BIOMARKER", "AVAL",
                                          "EVENT",   "RANDDT",  "SMOKER"};

TEST_F(GenTest, SameOptionsGiveIdenticalBytes) {
  GenOptions o{.rows = 5000, .seed = 42, .sites = 4};
  auto a = generate(o, "a");
  auto b = generate(o, "b");
  EXPECT_EQ(a.first, b.first);
  EXPECT_EQ(a.second, b.second);
  EXPECT_GT(a.first.size(), 5000u * 40);
}

TEST_F(GenTest, OutputDoesNotDependOnThreadCount) {
  // 70000 rows span several 16384-row blocks, with a partial last block.
  auto one = generate({.rows = 70000, .seed = 5, .sites = 3, .threads = 1}, "one");
  auto three = generate({.rows = 70000, .seed = 5, .sites = 3, .threads = 3}, "three");
  EXPECT_TRUE(one.first == three.first) << "files differ";
  auto one2 = writeTrialDatasetPerSite({.rows = 70000, .seed = 5, .sites = 3, .threads = 1},
                                       (dir_ / "s1").string());
  auto three2 = writeTrialDatasetPerSite({.rows = 70000, .seed = 5, .sites = 3, .threads = 3},
                                         (dir_ / "s3").string());
  ASSERT_TRUE(one2.isOk() && three2.isOk());
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_TRUE(readFile((*one2)[i]) == readFile((*three2)[i])) << (*one2)[i];
  }
}

// TrialRowGenerator (used by the benchmark to fill in-memory columns) yields exactly the rows
// of the CSV, field by field.
TEST_F(GenTest, RowGeneratorYieldsTheCsvRows) {
  const GenOptions o{.rows = 40000, .seed = 11, .sites = 3};
  auto rows = parseCsv(generate(o, "a").first);
  ASSERT_EQ(rows.size(), o.rows + 1);
  TrialRowGenerator generator(o);
  TrialRow r;
  const auto fixed = [](int64_t scaled, int decimals) {
    const std::string digits = std::to_string(scaled);
    std::ostringstream s;
    s << scaled / (decimals == 1 ? 10 : 100) << '.' << digits.substr(digits.size() - decimals);
    return s.str();
  };
  for (size_t i = 1; i < rows.size(); ++i) {
    generator.next(r);
    const CsvRow& row = rows[i];
    char id[32];
    std::snprintf(id, sizeof id, "LUNG7-%s-%06llu", siteCode(r.site).c_str(),
                  static_cast<unsigned long long>(r.subject));
    ASSERT_EQ(row[0].text, id) << "row " << i;
    ASSERT_EQ(row[1].text, siteCode(r.site));
    ASSERT_EQ(row[2].text, r.arm ? "TRT" : "PBO");
    ASSERT_EQ(row[3].text, r.sex ? "M" : "F");
    ASSERT_EQ(row[4].text, std::to_string(r.age));
    ASSERT_EQ(row[5].text, fixed(r.bmiTenths, 1));
    ASSERT_EQ(row[6].text, r.ecog < 0 ? "NA" : std::to_string(r.ecog));
    ASSERT_EQ(row[7].text, r.mealcal < 0 ? "NA" : std::to_string(r.mealcal));
    ASSERT_EQ(row[8].text, r.biomarkerHundredths < 0 ? "" : fixed(r.biomarkerHundredths, 2));
    ASSERT_EQ(row[9].text, std::to_string(r.time));
    ASSERT_EQ(row[10].text, r.event ? "1" : "0");
    ASSERT_EQ(naiveDays(row[11].text), std::optional<int64_t>(r.randdt)) << row[11].text;
    ASSERT_EQ(row[12].text, r.smoker ? "Y" : "N");
  }
}

TEST_F(GenTest, DifferentSeedGivesDifferentData) {
  auto a = generate({.rows = 2000, .seed = 1, .sites = 3}, "a");
  auto b = generate({.rows = 2000, .seed = 2, .sites = 3}, "b");
  EXPECT_NE(a.first, b.first);
  EXPECT_EQ(a.second, b.second);  // the dictionary depends only on the number of sites
}

// Pins the exact output so a change of compiler, standard library or CPU that altered the data
// would be caught (the generator promises byte-identical files on every machine).
TEST_F(GenTest, OutputMatchesPinnedDigest) {
  auto a = generate({.rows = 1000, .seed = 1, .sites = 3}, "a");
  EXPECT_EQ(crypto::toHex(crypto::sha256(std::string_view(a.first))),
            "1195f1cf399dde04f389b8df8d3729263d9b34fa4d588bdec6d5fb84d277a077");
}

TEST_F(GenTest, WritesRequestedRowCountWithHeader) {
  for (uint64_t rows : {0ull, 1ull, 777ull}) {
    auto a = generate({.rows = rows, .seed = 9, .sites = 2}, "r" + std::to_string(rows));
    auto parsed = parseCsv(a.first);
    ASSERT_EQ(parsed.size(), rows + 1);
    ASSERT_EQ(parsed[0].size(), kHeader.size());
    for (size_t i = 0; i < kHeader.size(); ++i) EXPECT_EQ(parsed[0][i].text, kHeader[i]);
    EXPECT_EQ(std::count(a.first.begin(), a.first.end(), '\n'), static_cast<long>(rows + 1));
  }
}

TEST_F(GenTest, DictionaryParsesAndDescribesTheColumns) {
  const GenOptions o{.rows = 10, .seed = 1, .sites = 5};
  auto dict = storage::Dictionary::parseToml(trialDictionaryToml(o), "dictionary.toml");
  ASSERT_TRUE(dict.isOk()) << dict.status().toString();
  EXPECT_EQ(dict->study(), "LUNG-7");
  ASSERT_EQ(dict->size(), 12u);
  std::set<std::string> columns;
  for (const auto& v : dict->variables()) columns.insert(v.csvColumn);
  for (size_t i = 1; i < kHeader.size(); ++i) EXPECT_TRUE(columns.count(kHeader[i])) << kHeader[i];

  const auto& site = dict->variable(*dict->find("site"));
  ASSERT_EQ(site.levels.size(), 5u);
  EXPECT_EQ(site.levels[0].code, "S01");
  EXPECT_EQ(site.levels[4].code, "S05");
  const auto& arm = dict->variable(*dict->find("arm"));
  ASSERT_EQ(arm.levels.size(), 2u);
  EXPECT_EQ(arm.levels[0].code, "PBO");
  EXPECT_EQ(arm.levels[1].label, "Treatment");
  const auto& randdt = dict->variable(*dict->find("randdt"));
  EXPECT_EQ(randdt.type, storage::VariableType::kDate);
  EXPECT_EQ(randdt.min, static_cast<double>(*naiveDays("2021-01-01")));
  EXPECT_EQ(randdt.max, static_cast<double>(*naiveDays("2024-12-31")));
  const auto& time = dict->variable(*dict->find("time"));
  EXPECT_EQ(time.csvColumn, "AVAL");
  EXPECT_EQ(time.unit, "days");
  EXPECT_EQ(time.max, 1825.0);
  EXPECT_TRUE(dict->variable(*dict->find("mealcal")).missingAllowed);
  EXPECT_FALSE(dict->variable(*dict->find("age")).missingAllowed);

  // The file written next to the CSV is the same text.
  auto a = generate(o, "a");
  EXPECT_EQ(a.second, trialDictionaryToml(o));
}

// Every value conforms to the dictionary; missing values appear only where allowed and at about
// the documented rates; the data look like a trial (1:1 arms, treatment benefit, ties).
TEST_F(GenTest, ValuesConformToDictionaryAndLookRealistic) {
  const GenOptions o{.rows = 40000, .seed = 7, .sites = 3};
  auto [csvText, dictText] = generate(o, "a");
  auto dict = storage::Dictionary::parseToml(dictText, "dictionary.toml");
  ASSERT_TRUE(dict.isOk()) << dict.status().toString();
  auto rows = parseCsv(csvText);
  ASSERT_EQ(rows.size(), o.rows + 1);

  std::map<std::string, size_t> columnIndex;
  for (size_t i = 0; i < rows[0].size(); ++i) columnIndex[rows[0][i].text] = i;
  std::vector<size_t> varColumn;
  for (const auto& v : dict->variables()) {
    ASSERT_TRUE(columnIndex.count(v.csvColumn)) << v.csvColumn;
    varColumn.push_back(columnIndex[v.csvColumn]);
  }

  std::map<std::string, uint64_t> missing;
  std::set<std::string> ids;
  double armTrt = 0, events[2] = {0, 0}, armN[2] = {0, 0};
  std::set<int64_t> distinctTimes;
  uint64_t naEcog = 0, emptyBiomarker = 0, naMealcal = 0;
  for (size_t r = 1; r < rows.size(); ++r) {
    const CsvRow& row = rows[r];
    ASSERT_EQ(row.size(), kHeader.size()) << "row " << r;
    // USUBJID: always quoted, LUNG7-<site>-<6+ digits>, unique, agrees with SITEID.
    const Field& id = row[0];
    ASSERT_TRUE(id.quoted) << "row " << r;
    ASSERT_EQ(id.text.rfind("LUNG7-", 0), 0u) << id.text;
    ASSERT_GE(id.text.size(), 16u) << id.text;
    EXPECT_EQ(id.text.substr(6, 3), row[columnIndex["SITEID"]].text) << id.text;
    EXPECT_TRUE(ids.insert(id.text).second) << "duplicate " << id.text;

    for (size_t v = 0; v < dict->size(); ++v) {
      const storage::Variable& var = dict->variable(v);
      const Field& f = row[varColumn[v]];
      EXPECT_FALSE(f.quoted) << var.name << " row " << r;
      if (f.text.empty() || f.text == "NA") {
        ASSERT_TRUE(var.missingAllowed) << var.name << " missing in row " << r;
        ++missing[var.name];
        continue;
      }
      switch (var.type) {
        case storage::VariableType::kInteger: {
          int64_t x;
          ASSERT_TRUE(parseInteger(f.text, x)) << var.name << "='" << f.text << "'";
          ASSERT_GE(x, *var.min) << var.name;
          ASSERT_LE(x, *var.max) << var.name;
          break;
        }
        case storage::VariableType::kReal: {
          double x;
          ASSERT_TRUE(parseReal(f.text, x)) << var.name << "='" << f.text << "'";
          ASSERT_GE(x, *var.min) << var.name;
          ASSERT_LE(x, *var.max) << var.name;
          break;
        }
        case storage::VariableType::kCategorical:
          ASSERT_TRUE(var.levelIndex(f.text).has_value()) << var.name << "='" << f.text << "'";
          break;
        case storage::VariableType::kBoolean:
          ASSERT_TRUE(f.text == "1" || f.text == "0" || f.text == "Y" || f.text == "N")
              << var.name << "='" << f.text << "'";
          break;
        case storage::VariableType::kDate: {
          auto days = naiveDays(f.text);
          ASSERT_TRUE(days.has_value()) << var.name << "='" << f.text << "'";
          ASSERT_GE(*days, *var.min) << f.text;
          ASSERT_LE(*days, *var.max) << f.text;
          break;
        }
        case storage::VariableType::kIdentifier:
          FAIL() << var.name << ": the generated dictionary declares no identifier";
      }
    }
    // Spellings of the missing values, as the issue specifies them.
    naEcog += row[columnIndex["ph.ecog"]].text == "NA";
    naMealcal += row[columnIndex["meal.cal"]].text == "NA";
    emptyBiomarker += row[columnIndex["BIOMARKER"]].text.empty();
    // BMI has exactly one decimal.
    const std::string& bmi = row[columnIndex["BMI"]].text;
    ASSERT_EQ(bmi[bmi.size() - 2], '.') << bmi;

    const int arm = row[columnIndex["ARM"]].text == "TRT" ? 1 : 0;
    armTrt += arm;
    armN[arm] += 1;
    events[arm] += row[columnIndex["EVENT"]].text == "1";
    int64_t t;
    ASSERT_TRUE(parseInteger(row[columnIndex["AVAL"]].text, t));
    distinctTimes.insert(t);
  }
  const double n = static_cast<double>(o.rows);
  EXPECT_NEAR(missing["ecog"] / n, 0.03, 0.01);
  EXPECT_NEAR(missing["mealcal"] / n, 0.20, 0.02);
  EXPECT_NEAR(missing["biomarker"] / n, 0.15, 0.02);
  EXPECT_EQ(naEcog, missing["ecog"]);
  EXPECT_EQ(naMealcal, missing["mealcal"]);
  EXPECT_EQ(emptyBiomarker, missing["biomarker"]);
  EXPECT_EQ(missing.size(), 3u);  // no other variable has a missing value

  EXPECT_NEAR(armTrt / n, 0.5, 0.02);
  // Treatment (hazard ratio 0.7) lowers the proportion of observed deaths.
  EXPECT_LT(events[1] / armN[1], events[0] / armN[0] - 0.03);
  // Whole days over 5 years: many subjects share a time.
  EXPECT_LT(distinctTimes.size(), 1826u);
  EXPECT_GT(distinctTimes.size(), 1000u);
}

TEST_F(GenTest, PerSiteFilesReuniteToTheWholeDataset) {
  const GenOptions o{.rows = 6000, .seed = 3, .sites = 4};
  auto whole = generate(o, "whole");
  auto paths = writeTrialDatasetPerSite(o, (dir_ / "sites" / "nested").string());
  ASSERT_TRUE(paths.isOk()) << paths.status().toString();
  ASSERT_EQ(paths->size(), 4u);
  EXPECT_EQ(readFile(dir_ / "sites" / "nested" / "dictionary.toml"), whole.second);

  auto wholeRows = parseCsv(whole.first);
  size_t total = 0;
  for (uint32_t s = 0; s < o.sites; ++s) {
    const std::string code = siteCode(s);
    EXPECT_EQ(fs::path((*paths)[s]).filename().string(), "site-" + code + ".csv");
    auto siteRows = parseCsv(readFile((*paths)[s]));
    ASSERT_GE(siteRows.size(), 2u) << code;
    EXPECT_EQ(siteRows[0].size(), kHeader.size());
    // The site's rows are exactly the whole file's rows of that site, in the same order.
    std::vector<std::string> expected, actual;
    for (size_t r = 1; r < wholeRows.size(); ++r) {
      if (wholeRows[r][1].text != code) continue;
      std::string joined;
      for (const auto& f : wholeRows[r]) joined += f.text + "|";
      expected.push_back(joined);
    }
    for (size_t r = 1; r < siteRows.size(); ++r) {
      std::string joined;
      for (const auto& f : siteRows[r]) joined += f.text + "|";
      actual.push_back(joined);
    }
    EXPECT_EQ(actual, expected) << code;
    total += actual.size();
  }
  EXPECT_EQ(total, o.rows);
}

// A region has up to 220 sites (issue #15): codes keep two digits to S99 and then take three, in
// the subject ids and the site column alike.
TEST_F(GenTest, RegionSizedStudiesNameEverySite) {
  EXPECT_EQ(siteCode(0), "S01");
  EXPECT_EQ(siteCode(98), "S99");
  EXPECT_EQ(siteCode(99), "S100");
  EXPECT_EQ(siteCode(219), "S220");
  EXPECT_EQ(siteCode(kMaxSites - 1), "S999");
  const GenOptions o{.rows = 2200, .seed = 5, .sites = 220};
  auto rows = parseCsv(generate(o, "region").first);
  ASSERT_EQ(rows.size(), o.rows + 1);
  std::set<std::string> sites;
  for (size_t i = 1; i < rows.size(); ++i) {
    sites.insert(rows[i][1].text);
    ASSERT_EQ(rows[i][0].text.substr(0, 6 + rows[i][1].text.size()), "LUNG7-" + rows[i][1].text)
        << "row " << i;
  }
  EXPECT_EQ(sites.size(), 220u);
  EXPECT_TRUE(sites.count("S220"));
}

TEST_F(GenTest, RejectsBadOptionsAndUnwritablePaths) {
  Status s = writeTrialDataset({.rows = 10, .seed = 1, .sites = 0}, (dir_ / "a.csv").string(),
                               (dir_ / "d.toml").string());
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("--sites 0"), std::string::npos) << s.message();
  s = writeTrialDataset({.rows = 10, .seed = 1, .sites = 1000}, (dir_ / "a.csv").string(),
                        (dir_ / "d.toml").string());
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("S01..S999"), std::string::npos) << s.message();

  const std::string missingDir = (dir_ / "no" / "such" / "data.csv").string();
  s = writeTrialDataset({}, missingDir, (dir_ / "d.toml").string());
  EXPECT_EQ(s.code(), StatusCode::kIOError);
  EXPECT_NE(s.message().find(missingDir), std::string::npos) << s.message();

  // A regular file where the folder should be.
  std::ofstream(dir_ / "file") << "x";
  auto r = writeTrialDatasetPerSite({}, (dir_ / "file" / "sub").string());
  EXPECT_EQ(r.status().code(), StatusCode::kIOError);
  EXPECT_NE(r.status().message().find("file/sub"), std::string::npos) << r.status().message();
}

}  // namespace
}  // namespace trialmesh::gen
