#include <algorithm>
#include <cmath>
#include <cstdio>

#include "tools/bench/engines.h"

namespace trialmesh::bench {

const std::array<BenchQuery, kQueryCount>& benchQueries() {
  static const std::array<BenchQuery, kQueryCount> kQueries = {{
      {"Q1", "count where age >= 65 and sex = \"F\"",
       "SELECT count(*) FROM lung WHERE age >= 65 AND sex = 'F'", "filtered count"},
      {"Q2", "count, mean(bmi), var(bmi) by arm",
       // SQLite has no variance: sample variance from the sums of values and squares.
       "SELECT arm, count(*), avg(bmi), (sum(bmi * bmi) - sum(bmi) * sum(bmi) / count(bmi)) / "
       "(count(bmi) - 1) FROM lung GROUP BY arm ORDER BY arm",
       "moments by arm"},
      {"Q3", "hist(age, 0, 120, 10)",
       "SELECT age / 10, count(*) FROM lung WHERE age >= 0 AND age < 120 GROUP BY age / 10 "
       "ORDER BY 1",
       "histogram, 12 bins"},
      {"Q4", "count by arm, ecog",
       "SELECT arm, ecog, count(*) FROM lung GROUP BY arm, ecog ORDER BY arm, ecog IS NULL, ecog",
       "cross-table 2 x 6"},
  }};
  return kQueries;
}

std::string compareAnswers(const Answer& expected, const Answer& actual) {
  if (expected.size() != actual.size()) {
    return "expected " + std::to_string(expected.size()) + " values, got " +
           std::to_string(actual.size());
  }
  for (size_t i = 0; i < expected.size(); ++i) {
    const double e = expected[i], a = actual[i];
    // Counts are exact; means and variances of millions of values may differ in the last
    // digits between summation orders.
    const double tolerance = 1e-8 * std::max(1.0, std::fabs(e));
    if (!(std::fabs(e - a) <= tolerance)) {
      char buf[128];
      std::snprintf(buf, sizeof buf, "value %zu: expected %.10g, got %.10g", i, e, a);
      return buf;
    }
  }
  return "";
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const size_t m = values.size() / 2;
  return values.size() % 2 ? values[m] : (values[m - 1] + values[m]) / 2;
}

}  // namespace trialmesh::bench
