// Cross-table tests against R at test time: tables generated here (2 x 2 with zeros, at the ends
// of the hypergeometric support, tiny and large; r x c) go to Rscript, which runs chisq.test
// (with and without Yates' correction) and fisher.test; statistic, df and p must agree to 1e-10
// relative (closed form), Fisher's p to 1e-9 (R's dhyper is Loader's algorithm, ours lgamma),
// the odds ratio and its limits (uniroot) to 1e-6, and R's warning exactly.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "stats/contingency.h"

namespace trialmesh::stats {
namespace {

const char* kScript = R"(
args <- commandArgs(trailingOnly = TRUE)
lines <- readLines(args[1])
out <- file(args[2], "w")
put <- function(key, v) writeLines(sprintf("%s %.17g", key, v), out)
for (ln in lines) {
  f <- strsplit(ln, " ")[[1]]
  id <- f[1]; nr <- as.integer(f[2]); nc <- as.integer(f[3])
  m <- matrix(as.integer(f[-(1:3)]), nrow = nr, ncol = nc, byrow = TRUE)
  for (corr in c(TRUE, FALSE)) {
    w <- FALSE
    t <- withCallingHandlers(chisq.test(m, correct = corr),
                             warning = function(e) { w <<- TRUE; invokeRestart("muffleWarning") })
    k <- paste0(id, if (corr) ".c" else ".u")
    put(paste0(k, ".stat"), t$statistic); put(paste0(k, ".df"), t$parameter)
    put(paste0(k, ".p"), t$p.value); put(paste0(k, ".warn"), as.numeric(w))
  }
  if (nr == 2 && nc == 2) {
    t <- fisher.test(m)
    put(paste0(id, ".f.p"), t$p.value); put(paste0(id, ".f.or"), t$estimate)
    put(paste0(id, ".f.lo"), t$conf.int[1]); put(paste0(id, ".f.hi"), t$conf.int[2])
  }
}
close(out)
)";

std::vector<CountTable> makeTables() {
  std::vector<CountTable> t = {
      {{3, 1}, {1, 3}},         {{10, 2}, {3, 15}},
      {{0, 5}, {6, 4}},         {{5, 0}, {2, 7}},
      {{4, 6}, {0, 3}},         {{7, 3}, {2, 0}},
      {{1, 1}, {1, 1}},         {{120, 80}, {95, 105}},
      {{1, 0}, {0, 1}},         {{2, 9}, {11, 2}},
      {{0, 10}, {10, 0}},       {{50, 1}, {1, 50}},
      {{12, 5, 7}, {3, 9, 4}},  {{10, 20, 30, 5}, {6, 2, 11, 40}, {3, 3, 3, 9}},
      {{1, 2}, {3, 4}, {5, 6}}, {{200, 150, 90}, {180, 170, 85}},
  };
  std::mt19937_64 rng(20261205);
  for (int k = 0; k < 40; ++k) {  // random 2 x 2 tables from tiny to a few hundred rows
    const int scale = k < 20 ? 8 : 300;
    std::uniform_int_distribution<int> cell(0, scale);
    CountTable m{{cell(rng), cell(rng)}, {cell(rng), cell(rng)}};
    bool ok = true;
    for (int i = 0; i < 2; ++i) ok = ok && m[i][0] + m[i][1] > 0 && m[0][i] + m[1][i] > 0;
    if (ok) t.push_back(m);
  }
  return t;
}

std::map<std::string, double> runR(const std::vector<CountTable>& tables) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("tm_contingency_r_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  {
    std::ofstream in(dir / "tables.txt");
    for (size_t k = 0; k < tables.size(); ++k) {
      in << "t" << k << " " << tables[k].size() << " " << tables[k][0].size();
      for (const auto& row : tables[k])
        for (int64_t v : row) in << " " << v;
      in << "\n";
    }
    std::ofstream script(dir / "run.R");
    script << kScript;
  }
  // Appended piece by piece: `std::string(...) + " " + ...` trips GCC 12's false -Warray-bounds.
  std::string cmd = TRIALMESH_RSCRIPT;
  for (const auto& arg : {dir / "run.R", dir / "tables.txt", dir / "out.txt"})
    cmd += " " + arg.string();
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  std::map<std::string, double> out;
  std::ifstream in(dir / "out.txt");
  std::string key, value;
  while (in >> key >> value) {
    out[key] = value == "Inf" ? INFINITY : std::strtod(value.c_str(), nullptr);
  }
  std::filesystem::remove_all(dir);
  return out;
}

void near(double got, double want, double rel, const std::string& what) {
  if (std::isinf(want)) {
    EXPECT_TRUE(std::isinf(got)) << what << ": got " << got << ", R Inf";
    return;
  }
  EXPECT_LE(std::fabs(got - want), rel * std::max(1.0, std::fabs(want)))
      << what << ": got " << got << ", R " << want;
}

TEST(ContingencyRTest, ChisqAndFisherMatchR) {
  const auto tables = makeTables();
  const auto r = runR(tables);
  ASSERT_FALSE(r.empty()) << "R returned nothing";
  size_t warnings = 0, yates = 0, fishers = 0;
  for (size_t k = 0; k < tables.size(); ++k) {
    const std::string id = "t" + std::to_string(k);
    for (bool correct : {true, false}) {
      const std::string key = id + (correct ? ".c" : ".u");
      auto got = chiSquaredTest(tables[k], correct);
      ASSERT_TRUE(got.isOk()) << key << ": " << got.status().toString();
      near(got->statistic, r.at(key + ".stat"), 1e-10, key + " statistic");
      near(got->df, r.at(key + ".df"), 0, key + " df");
      near(got->p, r.at(key + ".p"), 1e-10, key + " p");
      EXPECT_EQ(got->approximationWarning, r.at(key + ".warn") == 1) << key << " warning";
      warnings += got->approximationWarning;
      yates += got->yates;
    }
    if (tables[k].size() != 2 || tables[k][0].size() != 2) continue;
    ++fishers;
    auto f = fisherTest(tables[k]);
    ASSERT_TRUE(f.isOk()) << id << ": " << f.status().toString();
    near(f->p, r.at(id + ".f.p"), 1e-9, id + " fisher p");
    near(f->oddsRatio, r.at(id + ".f.or"), 1e-6, id + " odds ratio");
    near(f->confLow, r.at(id + ".f.lo"), 1e-6, id + " conf_low");
    near(f->confHigh, r.at(id + ".f.hi"), 1e-6, id + " conf_high");
  }
  // The tables exercise R's warning, Yates' correction and the Fisher ends of the support.
  EXPECT_GT(warnings, 5u);
  EXPECT_GT(yates, 20u);
  EXPECT_GT(fishers, 40u);
}

TEST(ContingencyTest, RejectsTablesRCannotTest) {
  EXPECT_FALSE(chiSquaredTest({{1, 2}}, true).isOk());            // one row
  EXPECT_FALSE(chiSquaredTest({{1, 0}, {2, 0}}, true).isOk());    // an empty column
  EXPECT_FALSE(fisherTest({{1, 2, 3}, {4, 5, 6}}).isOk());        // not 2 x 2
  EXPECT_FALSE(chiSquaredTest({{1, -2}, {3, 4}}, false).isOk());  // negative
  auto f = fisherTest({{0, 5}, {6, 4}});
  ASSERT_TRUE(f.isOk());
  EXPECT_EQ(f->oddsRatio, 0);  // x at the low end of the support: R's mle is 0
  EXPECT_EQ(f->confLow, 0);
}

}  // namespace
}  // namespace trialmesh::stats
