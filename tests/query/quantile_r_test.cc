// The federated quantile select against Rscript's quantile(x, probs, type = 7, na.rm = TRUE)
// on the pooled rows: generated sites of 1, 2, 4, 10, 100 and 1000 rows with ties, negative
// values, missing values and one real and one integer variable. Bit-for-bit equality, and R's
// names for the probabilities.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "query/quantile.h"

namespace trialmesh::query {
namespace {

const char* kScript = R"(
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1])
p <- c(0, 0.01, 0.025, 0.1, 0.25, 1/3, 0.5, 2/3, 0.75, 0.9, 0.975, 0.99, 1)
out <- file(args[2], "w")
for (v in c("real", "int")) {
  q <- quantile(d[[v]], p, type = 7, na.rm = TRUE)
  for (i in seq_along(q)) writeLines(sprintf("%s %d %s %.17g", v, i, names(q)[i], q[i]), out)
}
close(out)
)";

// The same doubles as R's literals above.
const std::vector<double> kProbs = {0,       0.01, 0.025, 0.1,   0.25, 1.0 / 3, 0.5,
                                    2.0 / 3, 0.75, 0.9,   0.975, 0.99, 1};

std::string csvValue(double v) {
  if (std::isnan(v)) return "NA";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

TEST(QuantileR, PooledSitesEqualR) {
  const std::vector<double>& probs = kProbs;
  std::mt19937_64 rng(2026);
  std::normal_distribution<double> normal(0, 30);
  std::uniform_int_distribution<int> age(18, 90);
  const std::vector<size_t> sizes = {1, 2, 4, 10, 100, 1000};
  std::vector<std::vector<uint64_t>> realKeys(sizes.size()), intKeys(sizes.size());
  const auto dir =
      std::filesystem::temp_directory_path() / ("tm_quantile_r_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  {
    std::ofstream csv(dir / "d.csv");
    csv << "site,real,int\n";
    for (size_t s = 0; s < sizes.size(); ++s)
      for (size_t i = 0; i < sizes[s]; ++i) {
        double real = std::round(normal(rng) * 8) / 8;  // ties on a 1/8 grid
        if (i % 7 == 3) real = -0.0;
        if (i % 11 == 5) real = NAN;
        double integer = i % 13 == 4 ? NAN : static_cast<double>(age(rng));
        if (!std::isnan(real)) realKeys[s].push_back(quantileKey(real));
        if (!std::isnan(integer)) intKeys[s].push_back(quantileKey(static_cast<int64_t>(integer)));
        csv << s << "," << csvValue(real) << "," << csvValue(integer) << "\n";
      }
  }
  std::ofstream(dir / "q.R") << kScript;
  const std::string cmd = std::string(TRIALMESH_RSCRIPT) + " " + (dir / "q.R").string() + " " +
                          (dir / "d.csv").string() + " " + (dir / "r.txt").string();
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  std::map<std::string, std::pair<std::string, double>> r;  // "real 3" -> (name, value)
  std::ifstream in(dir / "r.txt");
  std::string var, name, value;
  int index = 0;
  while (in >> var >> index >> name >> value)
    r[var + " " + std::to_string(index)] = {name, std::strtod(value.c_str(), nullptr)};
  std::filesystem::remove_all(dir);
  ASSERT_EQ(r.size(), 2 * probs.size());

  for (const char* v : {"real", "int"}) {
    const bool isReal = std::string(v) == "real";
    std::vector<QuantileSite> sites;
    for (auto& k : isReal ? realKeys : intKeys) sites.emplace_back(k);
    BucketCounter counter = [&](const SelectRound& round) -> Result<RoundCounts> {
      std::vector<uint64_t> total(round.intervals.size() * round.buckets, 0);
      for (auto& s : sites) {
        TM_ASSIGN_OR_RETURN(std::vector<uint64_t> c, s.count(round));
        for (size_t i = 0; i < c.size(); ++i) total[i] += c[i];
      }
      return RoundCounts{std::move(total), {}};
    };
    Result<QuantileResult> q =
        federatedQuantile(probs, isReal ? KeyKind::kReal : KeyKind::kInteger, counter);
    ASSERT_TRUE(q.isOk()) << q.status().toString();
    EXPECT_LE(q->rounds, 6u);
    for (size_t i = 0; i < probs.size(); ++i) {
      const auto& [rName, rValue] = r.at(std::string(v) + " " + std::to_string(i + 1));
      EXPECT_EQ(quantileLabel(probs[i]), rName);
      ASSERT_TRUE(q->values[i].has_value());
      EXPECT_EQ(*q->values[i], rValue) << v << " " << rName;
    }
  }
}

}  // namespace
}  // namespace trialmesh::query
