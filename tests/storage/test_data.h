// Deterministic trial-like CSV data for the storage tests, the crash-test child and the import
// benchmark: a 12-variable dictionary and a row generator that yields both the CSV text and the
// values the store must return for it.
#pragma once

#include <charconv>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "storage/column.h"
#include "storage/dictionary.h"

namespace trialmesh::storage::testing {

inline const char* trialDictionaryToml() {
  return R"(study = "BENCH-1"
[[variable]]
name = "id"
type = "integer"
min = 1
max = 100000000
[[variable]]
name = "site"
type = "categorical"
levels = ["A", "B", "C", "D"]
[[variable]]
name = "age"
column = "AGE"
type = "integer"
min = 18
max = 100
[[variable]]
name = "sex"
type = "categorical"
levels = ["F", "M"]
[[variable]]
name = "weight"
type = "real"
unit = "kg"
min = 30
max = 250
missing = true
[[variable]]
name = "height"
type = "real"
unit = "cm"
[[variable]]
name = "bmi"
type = "real"
missing = true
[[variable]]
name = "arm"
type = "categorical"
levels = ["Placebo", "Drug"]
[[variable]]
name = "smoker"
type = "boolean"
missing = true
[[variable]]
name = "enrolled"
type = "date"
min = 2015-01-01
max = 2030-12-31
[[variable]]
name = "ecog"
type = "categorical"
levels = ["0", "1", "2", "3", "4"]
missing = true
[[variable]]
name = "sbp"
type = "integer"
min = 60
max = 250
missing = true
)";
}

inline const char* trialCsvHeader() {
  return "id,site,AGE,sex,weight,height,bmi,arm,smoker,enrolled,ecog,sbp,comment\n";
}

inline uint64_t mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

using Cell = InMemoryTable::Cell;

// Appends row `i` (0-based) to `csv`; if `cells` is given, fills the expected values.
// `salt` changes the values (for re-import tests).
inline void generateRow(uint64_t i, std::string& csv, std::vector<Cell>* cells, uint64_t salt = 0) {
  const uint64_t h = mix(i * 1315423911u + salt);
  char buf[64];
  auto num = [&](double v) {
    auto r = std::to_chars(buf, buf + sizeof buf, v);
    csv.append(buf, r.ptr);
  };
  static const char* kSites[] = {"A", "B", "C", "D"};
  static const char* kSex[] = {"F", "M"};
  static const char* kArms[] = {"Placebo", "Drug"};
  static const char* kBools[] = {"0", "1", "true", "false", "Y", "N", "yes", "no"};
  const int64_t id = static_cast<int64_t>(i + 1);
  const int64_t site = h & 3;
  const int64_t age = 18 + static_cast<int64_t>((h >> 2) % 83);
  const int64_t sex = (h >> 9) & 1;
  const bool weightMissing = ((h >> 10) % 50) == 0;
  const double weight = 40 + static_cast<double>((h >> 16) % 1500) / 10.0;
  const double height = 140 + static_cast<double>((h >> 27) % 600) / 10.0;
  const bool bmiMissing = ((h >> 37) % 20) == 0;
  const double bmi = 15 + static_cast<double>((h >> 38) % 2500) / 100.0;
  const int64_t arm = (h >> 50) & 1;
  const int smokerSel = static_cast<int>((h >> 51) % 9);                    // 8 = missing
  const int64_t enrolled = 16436 + static_cast<int64_t>((h >> 20) % 3000);  // from 2015-01-01
  const int ecogSel = static_cast<int>((h >> 33) % 6);                      // 5 = missing
  const bool sbpMissing = ((h >> 44) % 25) == 0;
  const int64_t sbp = 90 + static_cast<int64_t>((h >> 45) % 100);

  csv += std::to_string(id);
  csv += ',';
  csv += kSites[site];
  csv += ',';
  csv += std::to_string(age);
  csv += ',';
  csv += kSex[sex];
  csv += ',';
  if (!weightMissing) num(weight);
  csv += ',';
  num(height);
  csv += ',';
  if (bmiMissing) {
    csv += "NA";
  } else {
    num(bmi);
  }
  csv += ',';
  csv += kArms[arm];
  csv += ',';
  if (smokerSel < 8) csv += kBools[smokerSel];
  csv += ',';
  csv += formatIsoDate(static_cast<int32_t>(enrolled));
  csv += ',';
  if (ecogSel < 5) csv += static_cast<char>('0' + ecogSel);
  csv += ',';
  if (!sbpMissing) csv += std::to_string(sbp);
  csv += ",";
  if (i % 7 == 0) csv += "\"note, with comma\"";
  csv += '\n';

  if (cells) {
    cells->clear();
    cells->push_back(Cell::integer(id));
    cells->push_back(Cell::integer(site));
    cells->push_back(Cell::integer(age));
    cells->push_back(Cell::integer(sex));
    cells->push_back(weightMissing ? Cell::none() : Cell::real(weight));
    cells->push_back(Cell::real(height));
    cells->push_back(bmiMissing ? Cell::none() : Cell::real(bmi));
    cells->push_back(Cell::integer(arm));
    static const int64_t kBoolValues[] = {0, 1, 1, 0, 1, 0, 1, 0};
    cells->push_back(smokerSel < 8 ? Cell::integer(kBoolValues[smokerSel]) : Cell::none());
    cells->push_back(Cell::integer(enrolled));
    cells->push_back(ecogSel < 5 ? Cell::integer(ecogSel) : Cell::none());
    cells->push_back(sbpMissing ? Cell::none() : Cell::integer(sbp));
  }
}

// Writes a CSV of `rows` generated rows; returns false on I/O failure.
inline bool writeTrialCsv(const std::string& path, uint64_t rows, uint64_t salt = 0) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return false;
  std::string buf = trialCsvHeader();
  for (uint64_t i = 0; i < rows; ++i) {
    generateRow(i, buf, nullptr, salt);
    if (buf.size() > (1u << 20)) {
      if (std::fwrite(buf.data(), 1, buf.size(), f) != buf.size()) return std::fclose(f), false;
      buf.clear();
    }
  }
  bool ok = std::fwrite(buf.data(), 1, buf.size(), f) == buf.size();
  return std::fclose(f) == 0 && ok;
}

}  // namespace trialmesh::storage::testing
