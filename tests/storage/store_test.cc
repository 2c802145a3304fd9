#include "storage/store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <rocksdb/db.h>

#include <charconv>
#include <fstream>
#include <thread>

#include "store_test_util.h"

namespace trialmesh::storage {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using testing::TempDir;

void writeFile(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary);
  out << content;
}

std::unique_ptr<Store> openStore(const std::string& dir, size_t cacheBytes = size_t{64} << 20) {
  StoreOptions options;
  options.cacheBytes = cacheBytes;
  auto store = Store::open(dir, options);
  EXPECT_TRUE(store.isOk()) << store.status().toString();
  return store.isOk() ? std::move(store).value() : nullptr;
}

constexpr const char* kSmallDict = R"(study = "V"
[[variable]]
name = "age"
column = "AGE"
type = "integer"
min = 0
max = 100
[[variable]]
name = "w"
type = "real"
min = 30
max = 250
missing = true
[[variable]]
name = "sex"
type = "categorical"
levels = ["F", "M"]
[[variable]]
name = "smoker"
type = "boolean"
[[variable]]
name = "visit"
type = "date"
min = 2020-01-01
max = 2020-12-31
)";

Dictionary smallDictionary() {
  auto d = Dictionary::parseToml(kSmallDict, "small.toml");
  EXPECT_TRUE(d.isOk()) << d.status().toString();
  return std::move(d).value();
}

TEST(StoreTest, ImportRoundTripsEveryValue) {
  TempDir tmp;
  const std::string csv = tmp / "trial.csv";
  const uint64_t rows = 2 * kChunkRows + 1234;  // two full chunks and a partial one
  ASSERT_TRUE(testing::writeTrialCsv(csv, rows));
  auto store = openStore(tmp / "store");
  ASSERT_TRUE(store);
  std::vector<std::pair<uint64_t, uint64_t>> progress;
  ImportOptions options;
  options.progress = [&](uint64_t done, uint64_t total) { progress.emplace_back(done, total); };
  auto report = store->importCsv("trial", testing::trialDictionary(), csv, options);
  ASSERT_TRUE(report.isOk()) << report.status().toString();
  EXPECT_EQ(report->rows, rows);
  ASSERT_FALSE(progress.empty());
  EXPECT_EQ(progress.back().first, progress.back().second);
  EXPECT_EQ(progress.back().second, std::filesystem::file_size(csv));

  auto info = store->datasetInfo("trial");
  ASSERT_TRUE(info.isOk()) << info.status().toString();
  EXPECT_EQ(info->rows, rows);
  EXPECT_EQ(info->version, report->version);
  EXPECT_EQ(info->study, "BENCH-1");
  EXPECT_EQ(info->dictionaryHash, testing::trialDictionary().hashHex());
  EXPECT_EQ(info->sourceFile, csv);
  EXPECT_GT(info->importedAtUnixSeconds, 1600000000);

  auto ds = store->openDataset("trial");
  ASSERT_TRUE(ds.isOk()) << ds.status().toString();
  EXPECT_EQ((*ds)->chunkCount(), 3u);
  EXPECT_EQ((*ds)->dictionary().hashHex(), info->dictionaryHash);
  testing::expectDatasetMatches(**ds, rows, 0);
  // Physical types follow the dictionary: age fits int8, sbp int16, dates int32.
  EXPECT_EQ((*(*ds)->column(2, 0))->type(), PhysicalType::kI8);
  EXPECT_EQ((*(*ds)->column(11, 0))->type(), PhysicalType::kI16);
  EXPECT_EQ((*(*ds)->column(9, 0))->type(), PhysicalType::kI32);
  // Out-of-range requests are errors, not crashes.
  EXPECT_EQ((*ds)->column(12, 0).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ((*ds)->column(0, 3).status().code(), StatusCode::kNotFound);

  auto list = store->listDatasets();
  ASSERT_TRUE(list.isOk());
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].name, "trial");
}

TEST(StoreTest, CachedAndUncachedReadsAgree) {
  TempDir tmp;
  const std::string csv = tmp / "trial.csv";
  ASSERT_TRUE(testing::writeTrialCsv(csv, 70000));
  auto store = openStore(tmp / "store", 0);  // no cache: every read goes to RocksDB
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->importCsv("t", testing::trialDictionary(), csv).isOk());
  auto ds = store->openDataset("t");
  ASSERT_TRUE(ds.isOk());
  testing::expectDatasetMatches(**ds, 70000, 0);
  // Concurrent scans from several threads.
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (size_t v = 0; v < 12; ++v) {
        for (uint32_t c = 0; c < 2; ++c) {
          if (!(*ds)->column(v, c).isOk()) ++failures;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
}

TEST(StoreTest, ValueErrorsNameFileLineColumnValueAndRule) {
  TempDir tmp;
  const std::string csv = tmp / "trial.csv";
  writeFile(csv,
            "AGE,w,sex,smoker,visit,extra\n"
            "40,70.5,F,yes,2020-02-29,ignored\n"  // 2: valid (NA and empty w are allowed below)
            "150,70,F,1,2020-01-01,\n"            // 3
            "-1,70,F,1,2020-01-01,\n"             // 4
            "12.5,70,F,1,2020-01-01,\n"           // 5
            "40,abc,F,1,2020-01-01,\n"            // 6
            "40,inf,F,1,2020-01-01,\n"            // 7
            "40,20,F,1,2020-01-01,\n"             // 8
            "40,,X,1,2020-01-01,\n"               // 9
            "40,NA,F,maybe,2020-01-01,\n"         // 10
            "40,70,M,0,2020-02-30,\n"             // 11
            "40,70,M,0,2021-01-01,\n"             // 12
            ",70,M,0,2020-01-01,\n"               // 13
            "40,70,NA,0,2020-01-01,\n"            // 14
            "40,70,M,0\n"                         // 15
            "99999999999999999999,70,M,0,2020-01-01,\n"  // 16
            "40,nan,M,0,2020-01-01,\n");                 // 17
  auto store = openStore(tmp / "store");
  ASSERT_TRUE(store);
  ImportOptions options;
  options.maxErrors = 100;
  auto report = store->importCsv("v", smallDictionary(), csv, options);
  ASSERT_FALSE(report.isOk());
  EXPECT_EQ(report.status().code(), StatusCode::kInvalidArgument);
  const std::string m = report.status().message();
  const std::string f = csv;
  EXPECT_THAT(m, HasSubstr(f + ": 15 errors; dataset 'v' was not changed"));
  EXPECT_THAT(m, HasSubstr(f + ":3: column 'AGE' (variable age): value '150' is above the "
                               "allowed maximum 100"));
  EXPECT_THAT(m, HasSubstr(f + ":4: column 'AGE' (variable age): value '-1' is below the "
                               "allowed minimum 0"));
  EXPECT_THAT(m, HasSubstr(f + ":5: column 'AGE' (variable age): value '12.5' is not an integer"));
  EXPECT_THAT(m, HasSubstr(f + ":6: column 'w' (variable w): value 'abc' is not a number"));
  EXPECT_THAT(m, HasSubstr(f + ":7: column 'w' (variable w): value 'inf' is not a finite number"));
  EXPECT_THAT(m, HasSubstr(f + ":8: column 'w' (variable w): value '20' is below the allowed "
                               "minimum 30"));
  EXPECT_THAT(m, HasSubstr(f + ":9: column 'sex' (variable sex): value 'X' is not one of the "
                               "declared levels (F, M)"));
  EXPECT_THAT(m, HasSubstr(f + ":10: column 'smoker' (variable smoker): value 'maybe' is not a "
                               "boolean"));
  EXPECT_THAT(m, HasSubstr(f + ":11: column 'visit' (variable visit): value '2020-02-30' is not "
                               "a valid date"));
  EXPECT_THAT(m, HasSubstr(f + ":12: column 'visit' (variable visit): value '2021-01-01' is after "
                               "the allowed maximum 2020-12-31"));
  EXPECT_THAT(m, HasSubstr(f + ":13: column 'AGE' (variable age): value '' is missing"));
  EXPECT_THAT(m, HasSubstr(f + ":14: column 'sex' (variable sex): value 'NA' is missing (empty "
                               "or NA), but the dictionary does not allow missing values"));
  EXPECT_THAT(m, HasSubstr(f + ":15: record has 4 fields but the header has 6"));
  EXPECT_THAT(m, HasSubstr(f + ":16: column 'AGE' (variable age): value '99999999999999999999' "
                               "is outside the 64-bit integer range"));
  EXPECT_THAT(m, HasSubstr(f + ":17: column 'w' (variable w): value 'nan' is not a finite"));
  EXPECT_THAT(m, Not(HasSubstr(":2:")));
  EXPECT_THAT(m, Not(HasSubstr("more errors")));
  // Errors are listed in line order, whichever thread validated the column.
  size_t last = 0;
  for (int line = 3; line <= 17; ++line) {
    const size_t at = m.find(f + ":" + std::to_string(line) + ":");
    ASSERT_NE(at, std::string::npos) << line;
    EXPECT_GT(at, last) << line;
    last = at;
  }
  // Nothing landed.
  EXPECT_EQ(store->datasetInfo("v").status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(store->listDatasets()->empty());
}

TEST(StoreTest, AcceptsEverySpellingAndMissingForm) {
  TempDir tmp;
  const std::string csv = tmp / "ok.csv";
  std::string text = "visit,smoker,sex,w,AGE\n";  // column order differs from the dictionary
  const char* bools[] = {"1",     "0", "true", "false", "TRUE", "FALSE", "True",
                         "False", "T", "F",    "yes",   "no",   "Y",     "N"};
  for (int i = 0; i < 14; ++i) {
    text += std::string("2020-12-31,") + bools[i] + ",M," +
            (i % 3 == 0   ? "NA"
             : i % 3 == 1 ? ""
                          : "\"+31.5\"") +
            "," + (i == 0 ? "+100" : "0") + "\n";
  }
  writeFile(csv, text);
  auto store = openStore(tmp / "store");
  ASSERT_TRUE(store);
  auto report = store->importCsv("ok", smallDictionary(), csv);
  ASSERT_TRUE(report.isOk()) << report.status().toString();
  auto ds = store->openDataset("ok");
  ASSERT_TRUE(ds.isOk());
  auto smoker = (*ds)->column(3, 0);
  auto w = (*ds)->column(1, 0);
  auto age = (*ds)->column(0, 0);
  ASSERT_TRUE(smoker.isOk() && w.isOk() && age.isOk());
  for (uint32_t i = 0; i < 14; ++i) {
    EXPECT_EQ((*smoker)->valueAsDouble(i), i % 2 == 0 ? 1.0 : 0.0) << bools[i];
    EXPECT_EQ((*w)->isMissing(i), i % 3 != 2);
    if (i % 3 == 2) {
      EXPECT_EQ((*w)->valueAsDouble(i), 31.5);
    }
  }
  EXPECT_EQ((*age)->valueAsDouble(0), 100.0);
  EXPECT_FALSE((*age)->hasMissing());
}

// R exports: dotted names, and one CSV column read as two variables (ph.ecog as a number and
// as categories), each with its own type, levels and checks.
TEST(StoreTest, OneColumnFeedsSeveralVariablesWithDottedNames) {
  TempDir tmp;
  const std::string csv = tmp / "lung.csv";
  writeFile(csv, "time,ph.ecog,meal.cal\n306,1,1175\n455,0,NA\n1010,3,513\n210,,\n");
  auto dict = Dictionary::parseToml(R"(study = "LUNG"
[[variable]]
name = "time"
type = "integer"
[[variable]]
name = "ph.ecog"
type = "integer"
min = 0
max = 3
missing = true
[[variable]]
name = "ecog"
column = "ph.ecog"
type = "categorical"
levels = ["0", "1", "2", "3"]
missing = true
[[variable]]
name = "meal.cal"
type = "real"
missing = true
)",
                                    "lung.toml");
  ASSERT_TRUE(dict.isOk()) << dict.status().toString();
  EXPECT_EQ(dict->find("ph.ecog"), std::optional<size_t>(1));
  EXPECT_EQ(dict->variable(2).csvColumn, "ph.ecog");
  auto back = Dictionary::parseToml(dict->toToml(), "back.toml");
  ASSERT_TRUE(back.isOk()) << back.status().toString();
  EXPECT_EQ(back->hashHex(), dict->hashHex());
  auto store = openStore(tmp / "store");
  ASSERT_TRUE(store);
  auto report = store->importCsv("lung", *dict, csv);
  ASSERT_TRUE(report.isOk()) << report.status().toString();
  auto ds = store->openDataset("lung");
  ASSERT_TRUE(ds.isOk());
  auto num = (*ds)->column(1, 0);
  auto cat = (*ds)->column(2, 0);
  auto meal = (*ds)->column(3, 0);
  ASSERT_TRUE(num.isOk() && cat.isOk() && meal.isOk());
  const double ecog[] = {1, 0, 3};
  for (uint32_t i = 0; i < 3; ++i) {
    EXPECT_EQ((*num)->valueAsDouble(i), ecog[i]);
    EXPECT_EQ((*cat)->valueAsDouble(i), ecog[i]);  // level index of "0".."3"
  }
  EXPECT_TRUE((*num)->isMissing(3));
  EXPECT_TRUE((*cat)->isMissing(3));
  EXPECT_EQ((*meal)->valueAsDouble(0), 1175.0);
  EXPECT_TRUE((*meal)->isMissing(1));

  // Each variable keeps its own checks: a 4 is out of ph.ecog's range and not an ecog level.
  const std::string bad = tmp / "bad.csv";
  writeFile(bad, "time,ph.ecog,meal.cal\n306,4,1175\n");
  auto failed = store->importCsv("bad", *dict, bad);
  ASSERT_FALSE(failed.isOk());
  EXPECT_THAT(failed.status().message(), HasSubstr("variable ph.ecog"));
  EXPECT_THAT(failed.status().message(), HasSubstr("variable ecog"));
}

// Subject ids: checked for repeats at import (an error, or warnings when asked), never stored.
TEST(StoreTest, IdentifierRepeatsAreFoundAndIdsAreNotStored) {
  TempDir tmp;
  auto dict = Dictionary::parseToml(R"(study = "ID"
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
  auto store = openStore(tmp / "store");
  ASSERT_TRUE(store);
  const std::string csv = tmp / "visits.csv";
  std::string content = "USUBJID,age\nS01-001,40\nS01-002,41\nS01-001,40\nS01-003,50\n";
  // Many rows so the repeats sit in different batches and chunks of the import.
  for (int i = 0; i < 150000; ++i) content += "X" + std::to_string(i) + ",30\n";
  content += "X7,31\nS01-002,41\n,20\n";
  writeFile(csv, content);
  auto refused = store->importCsv("v", *dict, csv);
  ASSERT_FALSE(refused.isOk());
  const std::string m = refused.status().message();
  EXPECT_THAT(m, HasSubstr("visits.csv:4: column 'USUBJID' (variable usubjid): value 'S01-001' "
                           "repeats the subject id of line 2; subject ids must be unique"));
  EXPECT_THAT(m, HasSubstr("visits.csv:150006: column 'USUBJID' (variable usubjid): value 'X7' "
                           "repeats the subject id of line 13"));
  EXPECT_THAT(m, HasSubstr("value 'S01-002' repeats the subject id of line 3"));
  EXPECT_THAT(m, HasSubstr("visits.csv:150008: column 'USUBJID' (variable usubjid): value '' is "
                           "missing"));
  EXPECT_FALSE(store->openDataset("v").isOk());

  // Without the empty id, and with repeats allowed: imported, the repeats listed.
  content.resize(content.size() - 4);  // drop ",20\n"
  writeFile(csv, content);
  ImportOptions options;
  options.duplicateIds = ImportOptions::DuplicateIds::kWarn;
  auto report = store->importCsv("v", *dict, csv, options);
  ASSERT_TRUE(report.isOk()) << report.status().toString();
  EXPECT_EQ(report->rows, 150006u);
  EXPECT_EQ(report->duplicateIds, 3u);
  ASSERT_EQ(report->warnings.size(), 3u);
  EXPECT_THAT(report->warnings[0], HasSubstr("visits.csv:4:"));
  EXPECT_THAT(report->warnings[2], HasSubstr("value 'S01-002' repeats the subject id of line 3"));
  auto ds = store->openDataset("v");
  ASSERT_TRUE(ds.isOk());
  auto ids = (*ds)->column(0, 0);
  auto age = (*ds)->column(1, 0);
  ASSERT_TRUE(ids.isOk() && age.isOk());
  for (uint32_t r = 0; r < 4; ++r) EXPECT_TRUE((*ids)->isMissing(r)) << r;  // nothing kept
  EXPECT_EQ((*age)->valueAsDouble(3), 50.0);
}

// A hospital export: semicolon-separated, Windows-1252 (or GB18030) text, decimal points.
TEST(StoreTest, ImportsSemicolonWindows1252AndGb18030Exports) {
  TempDir tmp;
  auto dict = Dictionary::parseToml(R"(study = "ENC"
[[variable]]
name = "city"
type = "categorical"
levels = ["Z\u00fcrich", "Gen\u00e8ve", "\u6210\u90fd"]
[[variable]]
name = "bmi"
type = "real"
)",
                                    "enc.toml");
  ASSERT_TRUE(dict.isOk()) << dict.status().toString();
  auto store = openStore(tmp / "store");
  ASSERT_TRUE(store);
  const std::string cp1252 = tmp / "cp1252.csv";
  writeFile(cp1252, "city;bmi\r\nZ\xFCrich;24.5\r\nGen\xE8ve;31\r\n");
  ImportOptions options;
  options.csv.delimiter = ';';
  options.csv.encoding = CsvEncoding::kWindows1252;
  auto report = store->importCsv("cp", *dict, cp1252, options);
  ASSERT_TRUE(report.isOk()) << report.status().toString();
  EXPECT_EQ(report->rows, 2u);
  auto ds = store->openDataset("cp");
  ASSERT_TRUE(ds.isOk());
  auto city = (*ds)->column(0, 0);
  auto bmi = (*ds)->column(1, 0);
  ASSERT_TRUE(city.isOk() && bmi.isOk());
  EXPECT_EQ((*city)->valueAsDouble(0), 0.0);  // Zürich
  EXPECT_EQ((*city)->valueAsDouble(1), 1.0);  // Genève
  EXPECT_EQ((*bmi)->valueAsDouble(0), 24.5);

  const std::string gb = tmp / "gb.csv";  // 成都 is B3C9 B6BC in GB18030
  writeFile(gb, "city,bmi\n\xB3\xC9\xB6\xBC,22\n");
  options.csv.delimiter = ',';
  options.csv.encoding = CsvEncoding::kGb18030;
  report = store->importCsv("gb", *dict, gb, options);
  ASSERT_TRUE(report.isOk()) << report.status().toString();
  auto gbCity = (*store->openDataset("gb"))->column(0, 0);
  ASSERT_TRUE(gbCity.isOk());
  EXPECT_EQ((*gbCity)->valueAsDouble(0), 2.0);

  // A semicolon export read with the default comma: the header hint names the way out.
  options.csv.delimiter = ',';
  options.csv.encoding = CsvEncoding::kWindows1252;
  auto comma = store->importCsv("semi", *dict, cp1252, options);
  ASSERT_FALSE(comma.isOk());
  EXPECT_THAT(comma.status().message(),
              HasSubstr("the header looks separated by ';'; give the separator with --delimiter"));

  // The same file read as UTF-8 is refused with the way out named.
  auto wrong = store->importCsv("bad", *dict, gb);
  ASSERT_FALSE(wrong.isOk());
  EXPECT_THAT(wrong.status().message(), HasSubstr("invalid UTF-8"));
  EXPECT_THAT(wrong.status().message(), HasSubstr("--encoding"));
}

// The import parses common value shapes on fast paths; every stored value must equal what the
// general parsers (std::from_chars, parseIsoDate) give for the same text.
TEST(StoreTest, FastPathValuesEqualGeneralParsers) {
  TempDir tmp;
  const std::string csv = tmp / "shapes.csv";
  const char* reals[] = {"30",
                         "30.0",
                         "249.99999999999",
                         "72.5",
                         "0031.25",
                         "99.123456789012",
                         "123.45678901234567",
                         "1.5e2",
                         "+44.5",
                         "45.",
                         "200.1",
                         "30.000000000000001",
                         "57.3",
                         "33.333333333333333"};
  const char* dates[] = {"2020-01-01", "2020-02-29", "2020-12-31", "2020-03-01", "2020-07-15",
                         "2020-11-30", "2020-06-01", "2020-01-31", "2020-09-09", "2020-10-10",
                         "2020-02-28", "2020-04-30", "2020-05-05", "2020-08-31"};
  const char* ages[] = {"0",  "100", "007", "+5", "42", "99", "1",
                        "10", "18",  "65",  "3",  "77", "0",  "50"};
  std::string text = "AGE,w,sex,smoker,visit\n";
  for (int i = 0; i < 14; ++i) {
    text +=
        std::string(ages[i]) + "," + reals[i] + "," + (i % 2 ? "F" : "M") + ",1," + dates[i] + "\n";
  }
  writeFile(csv, text);
  auto store = openStore(tmp / "store");
  ASSERT_TRUE(store);
  auto report = store->importCsv("shapes", smallDictionary(), csv);
  ASSERT_TRUE(report.isOk()) << report.status().toString();
  auto ds = store->openDataset("shapes");
  ASSERT_TRUE(ds.isOk());
  auto age = (*ds)->column(0, 0);
  auto w = (*ds)->column(1, 0);
  auto sex = (*ds)->column(2, 0);
  auto visit = (*ds)->column(4, 0);
  ASSERT_TRUE(age.isOk() && w.isOk() && sex.isOk() && visit.isOk());
  for (uint32_t i = 0; i < 14; ++i) {
    std::string_view r = reals[i];
    if (r[0] == '+') r.remove_prefix(1);
    double expected = 0;
    ASSERT_EQ(std::from_chars(r.data(), r.data() + r.size(), expected).ec, std::errc()) << r;
    EXPECT_EQ(std::get<std::vector<double>>((*w)->values)[i], expected) << reals[i];
    EXPECT_EQ((*visit)->valueAsDouble(i), static_cast<double>(*parseIsoDate(dates[i]))) << dates[i];
    std::string_view a = ages[i];
    if (a[0] == '+') a.remove_prefix(1);
    int64_t expectedAge = 0;
    std::from_chars(a.data(), a.data() + a.size(), expectedAge);
    EXPECT_EQ((*age)->valueAsDouble(i), static_cast<double>(expectedAge)) << ages[i];
    EXPECT_EQ((*sex)->valueAsDouble(i), i % 2 ? 0.0 : 1.0);
  }
}

TEST(StoreTest, ErrorListIsBounded) {
  TempDir tmp;
  const std::string csv = tmp / "bad.csv";
  std::string text = "AGE,w,sex,smoker,visit\n";
  for (int i = 0; i < 30; ++i) text += "200,70,F,1,2020-01-01\n";
  writeFile(csv, text);
  auto store = openStore(tmp / "store");
  ImportOptions options;
  options.maxErrors = 5;
  auto report = store->importCsv("v", smallDictionary(), csv, options);
  ASSERT_FALSE(report.isOk());
  const std::string m = report.status().message();
  EXPECT_THAT(m, HasSubstr("30 errors"));
  EXPECT_THAT(m, HasSubstr(":6: column 'AGE'"));
  EXPECT_THAT(m, Not(HasSubstr(":7: column 'AGE'")));
  EXPECT_THAT(m, HasSubstr("\n... and 25 more errors"));

  // Errors in several columns: the first maxErrors by line are listed.
  text = "AGE,w,sex,smoker,visit\n";
  for (int i = 0; i < 10; ++i) text += "40,70,F,1,2020-01-01\n";
  text += "40,70,F,1,1999-01-01\n";  // line 12: visit
  text += "40,70,Q,1,2020-01-01\n";  // line 13: sex
  text += "400,1,F,x,2020-01-01\n";  // line 14: age, w, smoker
  writeFile(csv, text);
  options.maxErrors = 3;
  report = store->importCsv("v", smallDictionary(), csv, options);
  ASSERT_FALSE(report.isOk());
  const std::string m2 = report.status().message();
  EXPECT_THAT(m2, HasSubstr("5 errors"));
  EXPECT_THAT(m2, HasSubstr(":12: column 'visit'"));
  EXPECT_THAT(m2, HasSubstr(":13: column 'sex'"));
  EXPECT_THAT(m2, HasSubstr(":14: column 'AGE'"));
  EXPECT_THAT(m2, Not(HasSubstr(":14: column 'w'")));
  EXPECT_THAT(m2, HasSubstr("... and 2 more errors"));
}

TEST(StoreTest, HeaderProblems) {
  TempDir tmp;
  auto store = openStore(tmp / "store");
  writeFile(tmp / "missing.csv", "age,w,sex,smoker,visit\n1,70,F,1,2020-01-01\n");
  auto r = store->importCsv("v", smallDictionary(), tmp / "missing.csv");
  ASSERT_FALSE(r.isOk());
  EXPECT_THAT(r.status().message(),
              HasSubstr("missing.csv:1: the header has no column 'AGE' (variable age)"));
  EXPECT_THAT(r.status().message(),
              HasSubstr("columns found in the header: 'age', 'w', 'sex', 'smoker', 'visit'"));

  writeFile(tmp / "dup.csv", "AGE,w,sex,smoker,visit,w\n1,70,F,1,2020-01-01,70\n");
  r = store->importCsv("v", smallDictionary(), tmp / "dup.csv");
  ASSERT_FALSE(r.isOk());
  EXPECT_THAT(r.status().message(), HasSubstr("column 'w' (variable w) appears 2 times in the "
                                              "header (fields 2, 6)"));

  writeFile(tmp / "empty.csv", "");
  r = store->importCsv("v", smallDictionary(), tmp / "empty.csv");
  ASSERT_FALSE(r.isOk());
  EXPECT_THAT(r.status().message(), HasSubstr("the file is empty"));

  writeFile(tmp / "quote.csv", "AGE,w,sex,smoker,visit\n1,70,F,1,2020-01-01\n2,\"70,F,1,x\n");
  r = store->importCsv("v", smallDictionary(), tmp / "quote.csv");
  ASSERT_FALSE(r.isOk());
  EXPECT_THAT(r.status().message(), HasSubstr("quote.csv:3: quoted field starting on this line"));

  r = store->importCsv("v", smallDictionary(), tmp / "nope.csv");
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  r = store->importCsv("bad name", smallDictionary(), tmp / "dup.csv");
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("not a valid dataset name"));
  EXPECT_TRUE(store->listDatasets()->empty());
}

TEST(StoreTest, ShortRecordWithoutUniformFieldCheck) {
  TempDir tmp;
  writeFile(tmp / "short.csv", "AGE,w,sex,smoker,visit\n40,70,F,1,2020-01-01\n40,70\n");
  auto store = openStore(tmp / "store");
  ImportOptions options;
  options.csv.requireUniformFieldCount = false;
  auto r = store->importCsv("v", smallDictionary(), tmp / "short.csv", options);
  ASSERT_FALSE(r.isOk());
  EXPECT_THAT(r.status().message(), HasSubstr("short.csv:3: record has 2 fields but column 5 is "
                                              "needed"));
}

TEST(StoreTest, FailedReimportLeavesPreviousVersion) {
  TempDir tmp;
  const std::string good = tmp / "good.csv";
  ASSERT_TRUE(testing::writeTrialCsv(good, 1000));
  // A file whose only error is far into the second chunk, after chunks were written.
  std::string bad = testing::trialCsvHeader();
  for (uint64_t i = 0; i < kChunkRows + 500; ++i) testing::generateRow(i, bad, nullptr, 9);
  bad += "1,A,17,F,70,170,22,Drug,1,2020-01-01,1,120,\n";  // age 17 < 18
  writeFile(tmp / "bad.csv", bad);
  {
    auto store = openStore(tmp / "store");
    auto v1 = store->importCsv("trial", testing::trialDictionary(), good);
    ASSERT_TRUE(v1.isOk()) << v1.status().toString();
    auto r = store->importCsv("trial", testing::trialDictionary(), tmp / "bad.csv");
    ASSERT_FALSE(r.isOk());
    EXPECT_THAT(r.status().message(),
                HasSubstr(":" + std::to_string(kChunkRows + 502) +
                          ": column 'AGE' (variable age): value '17' is below the allowed "
                          "minimum 18"));
    auto info = store->datasetInfo("trial");
    ASSERT_TRUE(info.isOk());
    EXPECT_EQ(info->version, v1->version);
    auto ds = store->openDataset("trial");
    ASSERT_TRUE(ds.isOk());
    testing::expectDatasetMatches(**ds, 1000, 0);
  }
  auto keys = testing::dataKeyCounts(tmp / "store");
  ASSERT_EQ(keys.size(), 1u);  // only the committed version has data
  EXPECT_EQ(keys.begin()->second, 12u);
}

TEST(StoreTest, ReimportKeepsSnapshotsAndCleansOldVersion) {
  TempDir tmp;
  ASSERT_TRUE(testing::writeTrialCsv(tmp / "v1.csv", 70000, 0));
  ASSERT_TRUE(testing::writeTrialCsv(tmp / "v2.csv", 5000, 1));
  uint64_t v1 = 0, v2 = 0;
  {
    auto store = openStore(tmp / "store", 0);  // no cache, so old reads really hit RocksDB
    auto r1 = store->importCsv("trial", testing::trialDictionary(), tmp / "v1.csv");
    ASSERT_TRUE(r1.isOk()) << r1.status().toString();
    v1 = r1->version;
    auto old = store->openDataset("trial");
    ASSERT_TRUE(old.isOk());
    auto r2 = store->importCsv("trial", testing::trialDictionary(), tmp / "v2.csv");
    ASSERT_TRUE(r2.isOk()) << r2.status().toString();
    v2 = r2->version;
    EXPECT_GT(v2, v1);
    // The old snapshot still reads version 1 in full, after version 2 committed and the
    // old keys were range-deleted.
    testing::expectDatasetMatches(**old, 70000, 0);
    auto now = store->openDataset("trial");
    ASSERT_TRUE(now.isOk());
    testing::expectDatasetMatches(**now, 5000, 1);
    EXPECT_EQ(store->datasetInfo("trial")->version, v2);
    // Dropping keeps open snapshots readable too.
    ASSERT_TRUE(store->dropDataset("trial").isOk());
    EXPECT_EQ(store->datasetInfo("trial").status().code(), StatusCode::kNotFound);
    EXPECT_EQ(store->dropDataset("trial").code(), StatusCode::kNotFound);
    testing::expectDatasetMatches(**now, 5000, 1);
    auto r3 = store->importCsv("trial", testing::trialDictionary(), tmp / "v2.csv");
    ASSERT_TRUE(r3.isOk());
    EXPECT_GT(r3->version, v2);  // versions are never reused, even after a drop
    v2 = r3->version;
  }
  auto keys = testing::dataKeyCounts(tmp / "store");
  ASSERT_EQ(keys.size(), 1u);
  EXPECT_EQ(keys.begin()->first, std::make_pair(std::string("trial"), v2));
}

TEST(StoreTest, ReopenAndCheckpoint) {
  TempDir tmp;
  ASSERT_TRUE(testing::writeTrialCsv(tmp / "t.csv", 3000));
  {
    auto store = openStore(tmp / "store");
    ASSERT_TRUE(store->importCsv("a", testing::trialDictionary(), tmp / "t.csv").isOk());
    ASSERT_TRUE(store->importCsv("b.2-x", testing::trialDictionary(), tmp / "t.csv").isOk());
    // A second open of the same directory is refused with an actionable message.
    auto second = Store::open(tmp / "store");
    ASSERT_FALSE(second.isOk());
    EXPECT_EQ(second.status().code(), StatusCode::kUnavailable);
    EXPECT_THAT(second.status().message(), HasSubstr("is in use by another process (RocksDB LOCK "
                                                     "held)"));
    ASSERT_TRUE(store->checkpoint(tmp / "cp").isOk());
    EXPECT_EQ(store->checkpoint(tmp / "cp").code(), StatusCode::kAlreadyExists);
  }
  for (const std::string& dir : {tmp / "store", tmp / "cp"}) {
    auto store = openStore(dir);
    ASSERT_TRUE(store) << dir;
    auto list = store->listDatasets();
    ASSERT_TRUE(list.isOk());
    ASSERT_EQ(list->size(), 2u);
    EXPECT_EQ((*list)[0].name, "a");
    EXPECT_EQ((*list)[1].name, "b.2-x");
    auto ds = store->openDataset("b.2-x");
    ASSERT_TRUE(ds.isOk());
    testing::expectDatasetMatches(**ds, 3000, 0);
  }
  StoreOptions noCreate;
  noCreate.createIfMissing = false;
  EXPECT_EQ(Store::open(tmp / "absent", noCreate).status().code(), StatusCode::kNotFound);
}

TEST(StoreTest, CorruptChunkIsReportedAsCorruption) {
  TempDir tmp;
  ASSERT_TRUE(testing::writeTrialCsv(tmp / "t.csv", 100));
  {
    auto store = openStore(tmp / "store");
    ASSERT_TRUE(store->importCsv("t", testing::trialDictionary(), tmp / "t.csv").isOk());
  }
  {
    // Flip one byte of the 'AGE' chunk's values behind the store's back.
    std::vector<rocksdb::ColumnFamilyDescriptor> families = {
        {rocksdb::kDefaultColumnFamilyName, rocksdb::ColumnFamilyOptions()},
        {"data", rocksdb::ColumnFamilyOptions()},
        {"meta", rocksdb::ColumnFamilyOptions()}};
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* db = nullptr;
    ASSERT_TRUE(
        rocksdb::DB::Open(rocksdb::DBOptions(), tmp / "store", families, &handles, &db).ok());
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions(), handles[1]));
    std::string key, value;
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      const std::string k = it->key().ToString();
      if (static_cast<uint8_t>(k[k.size() - 5]) == 2) {  // variable index 2 (age)
        key = k;
        value = it->value().ToString();
        break;
      }
    }
    it.reset();
    ASSERT_FALSE(key.empty());
    value[20] ^= 0x01;
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), handles[1], key, value).ok());
    for (auto* h : handles) db->DestroyColumnFamilyHandle(h);
    delete db;
  }
  auto store = openStore(tmp / "store");
  auto ds = store->openDataset("t");
  ASSERT_TRUE(ds.isOk());
  auto chunk = (*ds)->column(2, 0);
  ASSERT_FALSE(chunk.isOk());
  EXPECT_EQ(chunk.status().code(), StatusCode::kCorruption);
  EXPECT_THAT(chunk.status().message(), HasSubstr("dataset 't' version"));
  EXPECT_THAT(chunk.status().message(), HasSubstr("variable 'age' chunk 0: chunk checksum "
                                                  "mismatch"));
  EXPECT_TRUE((*ds)->column(3, 0).isOk());  // other chunks are fine
}

}  // namespace
}  // namespace trialmesh::storage
