// farringtonFlexible (the original defaults and the improved variant, plus a few other controls)
// against R's surveillance package at test time: series generated here (seasonal, trended, with
// injected outbreaks, with long zero runs, sparse, large counts) go to Rscript; every assessed
// week's upper bound must agree to 1e-9 relative (NA where R's is NA) and its alarm exactly.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "stats/farrington.h"

namespace trialmesh::stats {
namespace {

// Each configuration: its key, the R control list and the same options here.
struct Config {
  const char* key;
  const char* control;
  FarringtonOptions options;
};

std::vector<Config> configs() {
  std::vector<Config> c;
  c.push_back({"default", "list()", {}});
  c.push_back({"improved",
               "list(noPeriods = 10, pastWeeksNotIncluded = 26, thresholdMethod = \"nbPlugin\")",
               FarringtonOptions::improved()});
  FarringtonOptions muan = FarringtonOptions::improved();
  muan.thresholdMethod = FarringtonThreshold::kMuan;
  c.push_back({"muan",
               "list(noPeriods = 10, pastWeeksNotIncluded = 26, thresholdMethod = \"muan\")",
               muan});
  FarringtonOptions b3;
  b3.b = 3;
  b3.w = 2;
  b3.alpha = 0.01;
  b3.powertrans = PowerTransform::kNone;
  b3.weightsThreshold = 1;
  c.push_back(
      {"b3", "list(b = 3, w = 2, alpha = 0.01, powertrans = \"none\", weightsThreshold = 1)", b3});
  FarringtonOptions plain;
  plain.reweight = false;
  plain.trend = false;
  plain.powertrans = PowerTransform::kHalf;
  plain.limitCases = 0;
  c.push_back({"plain",
               "list(reweight = FALSE, trend = FALSE, powertrans = \"1/2\", limit54 = c(0, 4))",
               plain});
  FarringtonOptions b2 = FarringtonOptions::improved();
  b2.b = 2;
  b2.noPeriods = 4;
  c.push_back(
      {"b2",
       "list(b = 2, noPeriods = 4, pastWeeksNotIncluded = 26, thresholdMethod = \"nbPlugin\")",
       b2});
  return c;
}

std::vector<std::pair<std::string, std::vector<double>>> makeSeries() {
  std::mt19937_64 rng(20261205);
  std::vector<std::pair<std::string, std::vector<double>>> all;
  const int n = 52 * 5 + 4 + 60;
  auto poisson = [&](double mu) {
    return static_cast<double>(std::poisson_distribution<int>(mu)(rng));
  };
  auto negbin = [&](double mu, double size) {
    std::gamma_distribution<double> g(size, mu / size);
    return poisson(g(rng));
  };
  std::vector<double> seasonal, trended, outbreak, zeros, sparse, large;
  for (int t = 0; t < n; ++t) {
    const double season = std::sin(2 * M_PI * t / 52.0);
    seasonal.push_back(negbin(20 + 12 * season, 5));
    trended.push_back(poisson(4 + 0.04 * t + 3 * season));
    double o = poisson(8 + 4 * season);
    if ((t >= 290 && t < 294) || t == 315 || (t >= 150 && t < 153)) o += poisson(30);
    outbreak.push_back(o);
    // Long zero runs: nothing for 20 weeks at a time, then a few cases.
    zeros.push_back((t / 20) % 2 == 0 ? 0 : poisson(2));
    sparse.push_back(t % 13 == 0 ? poisson(1) : (t > 280 && t % 5 == 0 ? poisson(6) : 0));
    large.push_back(negbin(400 + 150 * season + (t > 300 ? 300 : 0), 20));
  }
  all.push_back({"seasonal", seasonal});
  all.push_back({"trended", trended});
  all.push_back({"outbreak", outbreak});
  all.push_back({"zeros", zeros});
  all.push_back({"sparse", sparse});
  all.push_back({"large", large});
  // A monthly series (R's frequency 12), run with the default control only.
  std::vector<double> monthly;
  for (int t = 0; t < n; ++t)
    monthly.push_back(negbin(60 + 25 * std::sin(2 * M_PI * t / 12.0) + (t > 300 ? 80 : 0), 8));
  all.push_back({"monthly", monthly});
  return all;
}

struct RValue {
  double bound;
  std::optional<bool> alarm;
};

// Where R's output for these inputs is kept: a file named by an FNV-1a hash of the input files
// and of the Rscript binary's and the surveillance package's size and time; empty if R's
// installation cannot be identified.
std::filesystem::path rCacheFile(const std::vector<std::filesystem::path>& inputs) {
  uint64_t h = 1469598103934665603ull;
  auto mix = [&h](const std::string& bytes) {
    for (unsigned char c : bytes) h = (h ^ c) * 1099511628211ull;
    h = (h ^ 0xff) * 1099511628211ull;
  };
  for (const auto& path : inputs) {
    std::ifstream in(path, std::ios::binary);
    mix(std::string(std::istreambuf_iterator<char>(in), {}));
  }
  for (const char* installed :
       {TRIALMESH_RSCRIPT, "/usr/lib/R/site-library/surveillance/DESCRIPTION"}) {
    std::error_code ec;
    const auto size = std::filesystem::file_size(installed, ec);
    if (ec) return {};
    const auto time = std::filesystem::last_write_time(installed, ec);
    if (ec) return {};
    mix(std::string(installed) + ":" + std::to_string(size) + ":" +
        std::to_string(time.time_since_epoch().count()));
  }
  char name[32];
  std::snprintf(name, sizeof name, "%016llx.txt", static_cast<unsigned long long>(h));
  return std::filesystem::temp_directory_path() / "trialmesh-r-cache" / "farrington" / name;
}

std::map<std::string, std::map<int, RValue>> runR(
    const std::vector<std::pair<std::string, std::vector<double>>>& series,
    const std::vector<Config>& cfgs) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("tm_farrington_r_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  {
    std::ofstream csv(dir / "series.csv");
    csv << "series,t,count\n";
    for (const auto& [name, x] : series)
      for (size_t t = 0; t < x.size(); ++t) csv << name << "," << t + 1 << "," << x[t] << "\n";
    std::ofstream script(dir / "run.R");
    script << "suppressPackageStartupMessages(library(surveillance))\n"
              "args <- commandArgs(trailingOnly = TRUE)\n"
              "d <- read.csv(args[1])\n"
              "out <- file(args[2], \"w\")\n"
              "cfgs <- list(";
    for (size_t i = 0; i < cfgs.size(); ++i)
      script << (i ? ", " : "") << cfgs[i].key << " = " << cfgs[i].control;
    script << ")\n"
              "for (s in unique(d$series)) {\n"
              "  x <- d$count[d$series == s]\n"
              "  f <- if (s == \"monthly\") 12 else 52\n"
              "  st <- sts(observed = x, frequency = f, start = c(2000, 1))\n"
              "  for (k in names(cfgs)) {\n"
              "    if (!(k %in% c(\"default\", \"improved\")) && !(s %in% c(\"outbreak\", "
              "\"trended\"))) next\n"
              "    ctl <- cfgs[[k]]\n"
              "    b <- if (is.null(ctl$b)) 5 else ctl$b\n"
              "    w <- if (is.null(ctl$w)) 3 else ctl$w\n"
              "    ctl$range <- (f * b + w + 1):length(x)\n"
              "    r <- suppressWarnings(farringtonFlexible(st, control = ctl))\n"
              "    ub <- upperbound(r)[, 1]; al <- alarms(r)[, 1]\n"
              "    writeLines(sprintf(\"%s.%s %d %.17g %s\", s, k, ctl$range, ub,\n"
              "      ifelse(is.na(al), \"NA\", ifelse(al, \"1\", \"0\"))), out)\n"
              "  }\n"
              "}\n"
              "close(out)\n";
  }
  // R takes ~40 s for these series. Its answer is kept, keyed by the script, the series and
  // the installed R and surveillance package, so the second build of one test run (the
  // sanitizer suite after the release one) compares with the same R output without running R
  // again; anything that changes R's input or R itself misses the cache.
  const std::filesystem::path cached = rCacheFile({dir / "run.R", dir / "series.csv"});
  std::error_code ec;
  if (!cached.empty() && std::filesystem::exists(cached, ec)) {
    std::filesystem::copy_file(cached, dir / "out.txt",
                               std::filesystem::copy_options::overwrite_existing, ec);
  }
  if (cached.empty() || ec || !std::filesystem::exists(dir / "out.txt")) {
    const std::string cmd = std::string(TRIALMESH_RSCRIPT) + " " + (dir / "run.R").string() + " " +
                            (dir / "series.csv").string() + " " + (dir / "out.txt").string();
    const int rc = std::system(cmd.c_str());
    EXPECT_EQ(rc, 0) << cmd;
    if (rc == 0 && !cached.empty()) {
      std::filesystem::create_directories(cached.parent_path(), ec);
      const std::filesystem::path partial = cached.string() + "." + std::to_string(::getpid());
      std::filesystem::copy_file(dir / "out.txt", partial,
                                 std::filesystem::copy_options::overwrite_existing, ec);
      if (!ec) std::filesystem::rename(partial, cached, ec);
    }
  }
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

TEST(FarringtonRTest, MatchesR) {
  const auto series = makeSeries();
  const auto cfgs = configs();
  const auto r = runR(series, cfgs);
  std::map<std::string, size_t> alarms, nas;
  for (const auto& [name, x] : series) {
    for (const Config& c : cfgs) {
      // The other controls run on two series only, to keep R's time down.
      if (std::string(c.key) != "default" && std::string(c.key) != "improved" &&
          name != "outbreak" && name != "trended")
        continue;
      FarringtonOptions options = c.options;
      if (name == "monthly") {
        if (std::string(c.key) != "default") continue;
        options.periodsPerYear = 12;
      }
      const std::string key = name + "." + c.key;
      auto got = farringtonFlexible(x, options);
      ASSERT_TRUE(got.isOk()) << got.status().toString();
      ASSERT_TRUE(r.count(key)) << key << ": R returned nothing";
      const auto& want = r.at(key);
      size_t assessed = 0;
      for (size_t t = 0; t < got->size(); ++t) {
        const Signal& g = (*got)[t];
        auto it = want.find(static_cast<int>(t + 1));
        if (it == want.end()) {
          EXPECT_FALSE(g.assessed) << key << " t=" << t + 1 << " assessed but not by R";
          continue;
        }
        ++assessed;
        ASSERT_TRUE(g.assessed) << key << " t=" << t + 1;
        const double w = it->second.bound;
        if (std::isnan(w)) {
          EXPECT_TRUE(std::isnan(g.upperBound))
              << key << " t=" << t + 1 << " got " << g.upperBound << ", R NA";
          ++nas[c.key];
        } else {
          EXPECT_LE(std::fabs(g.upperBound - w), 1e-9 * std::max(1.0, std::fabs(w)))
              << key << " t=" << t + 1 << " got " << g.upperBound << ", R " << w;
        }
        EXPECT_EQ(g.alarm, it->second.alarm) << key << " t=" << t + 1;
        alarms[c.key] += g.alarm.value_or(false);
      }
      EXPECT_EQ(assessed, want.size()) << key;
    }
  }
  // Both outcomes and the limit54 NA occur, so the comparison can fail either way.
  for (const char* k : {"default", "improved"}) {
    EXPECT_GT(alarms[k], 3u) << k;
    EXPECT_GT(nas[k], 0u) << k;
  }
}

TEST(FarringtonRTest, ShortHistoryIsNotAssessed) {
  // farringtonFlexible needs b years and w weeks before the first assessed week (R refuses the
  // default range on a shorter series); nothing is assessed here.
  const std::vector<double> x(52 * 5 + 3, 4.0);
  for (const auto& o : {FarringtonOptions{}, FarringtonOptions::improved()}) {
    auto got = farringtonFlexible(x, o);
    ASSERT_TRUE(got.isOk());
    for (const Signal& s : *got) EXPECT_FALSE(s.assessed);
  }
  const std::vector<double> y(52 * 5 + 4, 4.0);
  auto got = farringtonFlexible(y, {});
  ASSERT_TRUE(got.isOk());
  EXPECT_TRUE(got->back().assessed);
}

TEST(FarringtonRTest, RejectsBadInput) {
  FarringtonOptions o;
  o.noPeriods = 60;
  EXPECT_FALSE(farringtonFlexible(std::vector<double>(300, 1), o).isOk());
  o = {};
  o.alpha = 0.7;
  EXPECT_FALSE(farringtonFlexible(std::vector<double>(300, 1), o).isOk());
  EXPECT_FALSE(farringtonFlexible(std::vector<double>{1, -2, 3}, {}).isOk());
}

}  // namespace
}  // namespace trialmesh::stats
