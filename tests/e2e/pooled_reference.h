// The pooled reference of the end-to-end model tests: the site CSVs read back and the design
// matrix built by hand, so the reference fit (stats/) is independent of the query engine.
#pragma once

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "stats/cox.h"
#include "stats/regression.h"
#include "stats/rows.h"

namespace trialmesh::node::e2e {

inline constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// One subject as written to the CSV; NaN = missing.
struct Subject {
  double age = kNaN, bmi = kNaN, biomarker = kNaN, time = kNaN, event = kNaN;
  double male = kNaN, treated = kNaN, smoker = kNaN;
  int ecog = -1;  // -1 missing
};

inline std::vector<std::string> splitCsv(const std::string& line) {
  std::vector<std::string> out(1);
  bool quoted = false;
  for (char c : line) {
    if (c == '"') {
      quoted = !quoted;
    } else if (c == ',' && !quoted) {
      out.emplace_back();
    } else {
      out.back().push_back(c);
    }
  }
  return out;
}

inline std::vector<Subject> readSubjects(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  std::map<std::string, size_t> col;
  auto header = splitCsv(line);
  for (size_t i = 0; i < header.size(); ++i) col[header[i]] = i;
  std::vector<Subject> out;
  auto num = [](const std::string& s) { return s.empty() || s == "NA" ? kNaN : std::stod(s); };
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    auto f = splitCsv(line);
    Subject s;
    s.age = num(f[col.at("AGE")]);
    s.bmi = num(f[col.at("BMI")]);
    s.biomarker = num(f[col.at("BIOMARKER")]);
    s.time = num(f[col.at("AVAL")]);
    s.event = num(f[col.at("EVENT")]);
    s.male = f[col.at("SEX")] == "M" ? 1 : 0;
    s.treated = f[col.at("ARM")] == "TRT" ? 1 : 0;
    s.smoker = f[col.at("SMOKER")] == "Y" ? 1 : 0;
    const std::string& e = f[col.at("ph.ecog")];
    s.ecog = e.empty() || e == "NA" ? -1 : std::stoi(e);
    out.push_back(s);
  }
  return out;
}

// Pooled design: the named covariates (R's model.matrix names); NaN rows stay (stats/rows.h
// drops them as complete-case analysis).
inline stats::DesignMatrix design(const std::vector<Subject>& rows, bool intercept,
                                  const std::vector<std::string>& covariates,
                                  std::vector<std::string>& names) {
  names.clear();
  if (intercept) names.push_back("(Intercept)");
  for (const auto& c : covariates) {
    if (c == "ecog") {
      for (int l = 1; l <= 4; ++l) names.push_back("ecog" + std::to_string(l));
    } else {
      names.push_back(c);
    }
  }
  stats::DesignMatrix x;
  x.rows = rows.size();
  x.cols = names.size();
  for (const Subject& s : rows) {
    if (intercept) x.values.push_back(1.0);
    for (const auto& c : covariates) {
      if (c == "age") x.values.push_back(s.age);
      if (c == "biomarker") x.values.push_back(s.biomarker);
      if (c == "sexM") x.values.push_back(s.male);
      if (c == "armTRT") x.values.push_back(s.treated);
      if (c == "smokerTRUE") x.values.push_back(s.smoker);
      if (c == "ecog") {
        for (int l = 1; l <= 4; ++l) x.values.push_back(s.ecog < 0 ? kNaN : s.ecog == l ? 1 : 0);
      }
    }
  }
  return x;
}

inline void expectClose(double fed, double pooled, double tolerance, const std::string& what) {
  EXPECT_LE(std::fabs(fed - pooled), tolerance * std::max(1e-300, std::fabs(pooled)))
      << what << ": federated " << fed << " pooled " << pooled;
}

// Pooled Cox fit with stats/ on `rows` (grid from coxEventTimes, centring by the means).
inline Result<stats::CoxFit> pooledCox(const std::vector<Subject>& rows,
                                       const std::vector<std::string>& covariates,
                                       stats::CoxTies ties, bool strataBySex,
                                       std::vector<std::string>& names) {
  const stats::DesignMatrix x = design(rows, false, covariates, names);
  std::vector<double> time, event;
  std::vector<uint32_t> strata;
  for (const auto& s : rows) {
    time.push_back(s.time);
    event.push_back(s.event);
    if (strataBySex) strata.push_back(static_cast<uint32_t>(s.male));
  }
  stats::SurvivalRows data{&x, time, event, strata};
  const auto all = stats::allRows(x.rows);
  const size_t strataCount = strataBySex ? 2 : 1;
  TM_ASSIGN_OR_RETURN(auto grids, stats::coxEventTimes(data, all, strataCount));
  std::vector<double> center(x.cols, 0.0);
  size_t used = 0;
  for (size_t r = 0; r < x.rows; ++r) {
    bool complete = !std::isnan(time[r]) && !std::isnan(event[r]);
    for (size_t j = 0; j < x.cols; ++j) complete = complete && !std::isnan(x.at(r, j));
    if (!complete) continue;
    ++used;
    for (size_t j = 0; j < x.cols; ++j) center[j] += x.at(r, j);
  }
  for (double& c : center) c /= static_cast<double>(used);
  stats::CoxOptions options;
  options.ties = ties;
  return stats::fitCox(
      names,
      [&](const std::vector<double>& beta) {
        return stats::coxSumsFromRows(data, all, beta, center, grids);
      },
      options);
}

}  // namespace trialmesh::node::e2e
