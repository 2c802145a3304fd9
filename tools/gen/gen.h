// Synthetic clinical-trial data for demos, tests and benchmarks: the fictitious LUNG-7 study,
// one row per subject, shaped like a CDISC ADSL/ADTTE export (survival time with censoring,
// baseline covariates, categorical codes, NA and empty missing values, quoted fields).
//
// Output is a pure function of GenOptions: the same (rows, seed, sites) gives byte-identical
// files on every run and every machine. Only integer arithmetic and IEEE +,-,*,/ are used (no
// std::*_distribution, no libm transcendental functions), so results do not depend on the
// standard library or CPU.
//
// CSV columns (header -> dictionary variable):
//   "USUBJID" (no variable; always quoted, e.g. "LUNG7-S01-000123"), SITEID -> site,
//   ARM -> arm, SEX -> sex, AGE -> age, BMI -> bmi, ph.ecog -> ecog (NA when missing),
//   meal.cal -> mealcal (NA when missing), BIOMARKER -> biomarker (empty when missing),
//   AVAL -> time (days), EVENT -> event (1/0), RANDDT -> randdt, SMOKER -> smoker (Y/N).
// LF line endings; a field is quoted only when it needs to be, except USUBJID.
//
// Errors come back as Status (InvalidArgument for bad options, IOError naming the file).
// Thread-safety: the free functions share no state; a TrialRowGenerator is single-threaded.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace trialmesh::gen {

inline constexpr const char* kStudyName = "LUNG-7";
inline constexpr uint32_t kMaxSites = 999;  // site codes S01..S99, then S100..S999

struct GenOptions {
  uint64_t rows = 1000;  // subjects in the whole study (all sites together)
  uint64_t seed = 1;     // any value; different seeds give different data
  uint32_t sites = 3;    // 1..kMaxSites
  // Generation threads; 0 = one per hardware thread. The output does not depend on it.
  uint32_t threads = 0;
};

// One generated subject, in the units written to the CSV. Exposed so benchmarks can fill their
// own in-memory columns with exactly the rows the CSV holds.
struct TrialRow {
  uint32_t site = 0;                // 0-based: 0 is "S01"
  uint64_t subject = 0;             // 1-based number within the site (the USUBJID suffix)
  uint8_t arm = 0;                  // level index: 0 "PBO", 1 "TRT"
  uint8_t sex = 0;                  // level index: 0 "F", 1 "M"
  int32_t age = 0;                  // years, 18..95
  int32_t bmiTenths = 0;            // BMI * 10, 140..600
  int32_t ecog = 0;                 // 0..4, or -1 when missing
  int32_t mealcal = 0;              // kcal 0..3000, or -1 when missing
  int32_t biomarkerHundredths = 0;  // biomarker * 100, 1..10000, or -1 when missing
  int32_t time = 0;                 // days 1..1825
  uint8_t event = 0;                // 1 event, 0 censored
  int32_t randdt = 0;               // days since 1970-01-01, 2021-01-01..2024-12-31
  uint8_t smoker = 0;               // 1 "Y", 0 "N"
};

// Produces the rows of a dataset in file order, the same rows the writers below write.
// REQUIRES: validateOptions(options) is OK. Not thread-safe; one generator per thread.
class TrialRowGenerator {
 public:
  explicit TrialRowGenerator(const GenOptions& options);
  ~TrialRowGenerator();
  TrialRowGenerator(TrialRowGenerator&&) noexcept;
  TrialRowGenerator& operator=(TrialRowGenerator&&) noexcept;
  // Fills `row` with the next subject. Calls beyond options.rows continue the sequence.
  void next(TrialRow& row);

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// Checks rows/sites; InvalidArgument naming the bad option otherwise.
Status validateOptions(const GenOptions& options);

// Site code of a 0-based site index: 0 -> "S01".
std::string siteCode(uint32_t site);

// The dictionary TOML for the dataset (storage/dictionary.h format); depends only on sites.
std::string trialDictionaryToml(const GenOptions& options);

// Writes the whole study to csvPath and its dictionary to dictionaryPath (files are replaced).
Status writeTrialDataset(const GenOptions& options, const std::string& csvPath,
                         const std::string& dictionaryPath);

// Writes the same rows split by site: <dir>/site-S01.csv, ... (one per site, in file order,
// each with the header) and <dir>/dictionary.toml. Creates dir if needed. On success, returns
// the CSV paths in site order.
Result<std::vector<std::string>> writeTrialDatasetPerSite(const GenOptions& options,
                                                          const std::string& dir);

}  // namespace trialmesh::gen
