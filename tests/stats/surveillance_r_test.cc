// The detection methods against R's `surveillance` package at test time: series generated here
// (seasonal, trended, with injected outbreaks, with long zero runs) go to Rscript, which runs
// earsC (and the CIDARS percentile with quantile(type = 7)); every assessed point's upper bound
// must agree to 1e-9 relative and its alarm exactly. Registered only when Rscript and the
// surveillance package are found (tests/stats/CMakeLists.txt).
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

#include "stats/surveillance.h"

namespace trialmesh::stats {
namespace {

const char* kScript = R"(
suppressPackageStartupMessages(library(surveillance))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1])
out <- file(args[2], "w")
put <- function(key, t, ub, al) {
  writeLines(sprintf("%s %d %.17g %s", key, t, ub, ifelse(is.na(al), "NA", ifelse(al, "1", "0"))), out)
}
for (s in unique(d$series)) {
  x <- d$count[d$series == s]
  st <- sts(observed = x, epoch = seq_along(x), frequency = 52, start = c(2000, 1))
  cfgs <- list(C1 = list(method = "C1"), C2 = list(method = "C2"), C3 = list(method = "C3"),
               C1b10 = list(method = "C1", baseline = 10, alpha = 0.01),
               C2b5 = list(method = "C2", baseline = 5, alpha = 0.05),
               C3b4 = list(method = "C3", baseline = 4, alpha = 0.001, minSigma = 0.5))
  for (k in names(cfgs)) {
    r <- earsC(st, control = cfgs[[k]])
    put(paste0(s, ".", k), r@control$range, upperbound(r)[, 1], alarms(r)[, 1])
  }
  for (cfg in list(c(3, 80), c(2, 90), c(5, 50))) {
    k <- cfg[1]; p <- cfg[2]
    for (t in seq_along(x)) {
      if (t - 52 * k - 2 < 1) next
      idx <- as.vector(outer(-2:2, 52 * (1:k), function(dd, yy) t - yy + dd))
      q <- unname(quantile(x[idx], p / 100, type = 7))
      put(sprintf("%s.P%d_%d", s, k, p), t, q, x[t] > q)
    }
  }
}
close(out)
)";

struct RValue {
  double bound;
  std::optional<bool> alarm;
};

std::vector<std::pair<std::string, std::vector<double>>> makeSeries() {
  std::mt19937_64 rng(20261205);
  std::vector<std::pair<std::string, std::vector<double>>> all;
  const int n = 52 * 6 + 17;
  auto poisson = [&](double mu) {
    return static_cast<double>(std::poisson_distribution<int>(mu)(rng));
  };
  std::vector<double> seasonal, trended, outbreak, zeros, sparse;
  for (int t = 0; t < n; ++t) {
    const double season = std::sin(2 * M_PI * t / 52.0);
    seasonal.push_back(poisson(20 + 12 * season));
    trended.push_back(poisson(5 + 0.05 * t + 3 * season));
    double o = poisson(8 + 4 * season);
    if ((t >= 200 && t < 204) || t == 300) o += poisson(30);
    outbreak.push_back(o);
    // Long zero runs: nothing for 20 weeks at a time, then a few cases.
    zeros.push_back((t / 20) % 2 == 0 ? 0 : poisson(2));
    sparse.push_back(t % 13 == 0 ? poisson(1) : 0);
  }
  all.push_back({"seasonal", seasonal});
  all.push_back({"trended", trended});
  all.push_back({"outbreak", outbreak});
  all.push_back({"zeros", zeros});
  all.push_back({"sparse", sparse});
  return all;
}

std::map<std::string, std::map<int, RValue>> runR(
    const std::vector<std::pair<std::string, std::vector<double>>>& series) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("tm_surveil_r_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  {
    std::ofstream csv(dir / "series.csv");
    csv << "series,t,count\n";
    for (const auto& [name, x] : series)
      for (size_t t = 0; t < x.size(); ++t) csv << name << "," << t + 1 << "," << x[t] << "\n";
    std::ofstream script(dir / "run.R");
    script << kScript;
  }
  // Appended piece by piece: `std::string(...) + " " + ...` trips GCC 12's false -Warray-bounds.
  std::string cmd = TRIALMESH_RSCRIPT;
  for (const auto& arg : {dir / "run.R", dir / "series.csv", dir / "out.txt"})
    cmd += " " + arg.string();
  const int rc = std::system(cmd.c_str());
  EXPECT_EQ(rc, 0) << cmd;
  std::map<std::string, std::map<int, RValue>> out;
  std::ifstream in(dir / "out.txt");
  std::string key, bound, alarm;
  int t = 0;
  while (in >> key >> t >> bound >> alarm) {
    RValue v;
    v.bound = bound == "NA" || bound == "NaN" ? std::nan("") : std::strtod(bound.c_str(), nullptr);
    if (alarm != "NA") v.alarm = alarm == "1";
    out[key][t] = v;
  }
  std::filesystem::remove_all(dir);
  return out;
}

void compare(const std::string& key, const std::vector<Signal>& got,
             const std::map<int, RValue>& want) {
  ASSERT_FALSE(want.empty()) << key << ": R returned nothing";
  size_t assessed = 0;
  for (size_t t = 0; t < got.size(); ++t) {
    auto it = want.find(static_cast<int>(t + 1));
    if (it == want.end()) {
      EXPECT_FALSE(got[t].assessed) << key << " t=" << t + 1 << " assessed but not by R";
      continue;
    }
    ++assessed;
    ASSERT_TRUE(got[t].assessed) << key << " t=" << t + 1;
    const double w = it->second.bound, g = got[t].upperBound;
    if (std::isnan(w)) {
      EXPECT_TRUE(std::isnan(g)) << key << " t=" << t + 1 << " got " << g << ", R NaN";
    } else {
      EXPECT_LE(std::fabs(g - w), 1e-9 * std::max(1.0, std::fabs(w)))
          << key << " t=" << t + 1 << " got " << g << ", R " << w;
    }
    EXPECT_EQ(got[t].alarm, it->second.alarm) << key << " t=" << t + 1;
  }
  EXPECT_EQ(assessed, want.size()) << key;
}

TEST(SurveillanceRTest, EarsAndPercentileMatchR) {
  const auto series = makeSeries();
  const auto r = runR(series);
  size_t alarms = 0, nas = 0;
  for (const auto& [name, x] : series) {
    struct Cfg {
      const char* key;
      EarsOptions o;
    };
    const Cfg cfgs[] = {
        {"C1", {EarsMethod::kC1, 7, {}, 0}},     {"C2", {EarsMethod::kC2, 7, {}, 0}},
        {"C3", {EarsMethod::kC3, 7, {}, 0}},     {"C1b10", {EarsMethod::kC1, 10, 0.01, 0}},
        {"C2b5", {EarsMethod::kC2, 5, 0.05, 0}}, {"C3b4", {EarsMethod::kC3, 4, 0.001, 0.5}}};
    for (const Cfg& c : cfgs) {
      auto got = earsC(x, c.o);
      ASSERT_TRUE(got.isOk()) << got.status().toString();
      compare(name + "." + c.key, *got, r.at(name + "." + c.key));
      for (const Signal& s : *got) {
        alarms += s.alarm.value_or(false);
        nas += s.assessed && !s.alarm;
      }
    }
    for (auto [k, p] : {std::pair{3, 80}, {2, 90}, {5, 50}}) {
      PercentileOptions o;
      o.years = k;
      o.percentile = p;
      auto got = movingPercentile(x, o);
      ASSERT_TRUE(got.isOk()) << got.status().toString();
      const std::string key = name + ".P" + std::to_string(k) + "_" + std::to_string(p);
      compare(key, *got, r.at(key));
    }
  }
  // The series exercise both outcomes and R's NA (C3 on a zero baseline).
  EXPECT_GT(alarms, 10u);
  EXPECT_GT(nas, 0u);
}

}  // namespace
}  // namespace trialmesh::stats
