// quantile_bench: times the federated quantile select (query/quantile.h) over S sites of R rows
// each, in-process: every site builds the keys of its column (its first round), answers each
// round's bucket counts, and the coordinator adds them and narrows; the network is not included.
// Floors on the same pooled values: std::nth_element (the fastest exact in-memory select) and,
// with --r, R's quantile() (Rscript; the values are passed as a binary file).
//   quantile_bench [sites=10] [rows=1000000] [reps=11] [--r]
// Prints min and median of: sequential (all sites one after another on one thread, plus the
// merge) and the critical path (per round, the slowest site plus the merge: what a federation
// of parallel sites waits for, less the network), and the number of rounds.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "query/quantile.h"

using namespace trialmesh;
using Clock = std::chrono::steady_clock;

namespace {

// This thread's CPU time: less sensitive than wall time to other processes on a busy host.
double cpuMs() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

double msSince(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

struct Summary {
  double min = 0, median = 0;
};
Summary summarize(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return {v.front(), v[v.size() / 2]};
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  const bool withR = std::erase(args, std::string("--r")) > 0;
  const size_t sites = args.size() > 0 ? std::stoul(args[0]) : 10;
  const size_t rows = args.size() > 1 ? std::stoul(args[1]) : 1000000;
  const size_t reps = args.size() > 2 ? std::stoul(args[2]) : 11;
  const std::vector<double> probs = {0.25, 0.5, 0.75};

  // Ages in years with a day resolution: many ties, as in real trial data. Each site its own
  // contiguous column, as a site's store holds it; ~2% missing (NaN here, skipped).
  std::mt19937_64 rng(7);
  std::normal_distribution<double> age(62, 11);
  std::vector<std::vector<double>> columns(sites, std::vector<double>(rows));
  for (auto& c : columns)
    for (auto& x : c) x = rng() % 50 == 0 ? NAN : std::round(age(rng) * 365.25) / 365.25;

  std::vector<double> seqMs, pathMs, seqCpu, pathCpu;
  uint32_t rounds = 0;
  query::QuantileResult last;
  for (size_t rep = 0; rep < reps; ++rep) {
    std::vector<query::QuantileSite> state;
    state.reserve(sites);
    double path = 0, pathC = 0;
    const auto t0 = Clock::now();
    const double c0 = cpuMs();
    bool firstRound = true;
    query::BucketCounter counter =
        [&](const query::SelectRound& round) -> Result<query::RoundCounts> {
      std::vector<uint64_t> total(round.intervals.size() * round.buckets, 0);
      double slowest = 0, slowestC = 0;
      for (size_t s = 0; s < sites; ++s) {
        const auto ts = Clock::now();
        const double cs = cpuMs();
        if (firstRound) {
          // The site's cached keys of the filtered column (kept for the later rounds).
          std::vector<uint64_t> keys;
          keys.reserve(rows);
          for (double x : columns[s])
            if (!std::isnan(x)) keys.push_back(query::quantileKey(x));
          state.emplace_back(std::move(keys));
        }
        TM_ASSIGN_OR_RETURN(std::vector<uint64_t> c, state[s].count(round));
        slowest = std::max(slowest, msSince(ts));
        slowestC = std::max(slowestC, cpuMs() - cs);
        const auto tm = Clock::now();
        const double cm = cpuMs();
        for (size_t i = 0; i < c.size(); ++i) total[i] += c[i];
        path += msSince(tm);
        pathC += cpuMs() - cm;
      }
      firstRound = false;
      path += slowest;
      pathC += slowestC;
      return query::RoundCounts{std::move(total), {}};
    };
    Result<query::QuantileResult> q =
        query::federatedQuantile(probs, query::KeyKind::kReal, counter);
    seqMs.push_back(msSince(t0));
    seqCpu.push_back(cpuMs() - c0);
    pathMs.push_back(path);
    pathCpu.push_back(pathC);
    if (!q.isOk()) {
      fmt::print(stderr, "quantile failed: {}\n", q.status().toString());
      return 1;
    }
    rounds = q->rounds;
    last = *q;
  }

  // Floor: nth_element on the pooled non-missing values (copy included, as the select's key
  // building is included above).
  std::vector<double> floorMs, floorCpu;
  std::vector<double> floorValues;
  for (size_t rep = 0; rep < reps; ++rep) {
    const auto t0 = Clock::now();
    const double c0 = cpuMs();
    std::vector<double> pooled;
    pooled.reserve(sites * rows);
    for (auto& c : columns)
      for (double x : c)
        if (!std::isnan(x)) pooled.push_back(x);
    floorValues.clear();
    for (double p : probs) {
      const double index = 1 + static_cast<double>(pooled.size() - 1) * p;
      const size_t lo = static_cast<size_t>(std::floor(index)) - 1;
      std::nth_element(pooled.begin(), pooled.begin() + lo, pooled.end());
      const double qs = pooled[lo];
      const double hi = *std::min_element(pooled.begin() + lo + 1, pooled.end());
      const double h = index - std::floor(index);
      floorValues.push_back(index > std::floor(index) && hi != qs ? (1 - h) * qs + h * hi : qs);
    }
    floorMs.push_back(msSince(t0));
    floorCpu.push_back(cpuMs() - c0);
  }

  const Summary seq = summarize(seqMs), path = summarize(pathMs), fl = summarize(floorMs);
  const Summary seqC = summarize(seqCpu), pathC = summarize(pathCpu), flC = summarize(floorCpu);
  fmt::print("quantile(x, [0.25, 0.5, 0.75]) over {} sites x {} rows (n = {}), {} reps\n", sites,
             rows, last.n, reps);
  for (size_t i = 0; i < probs.size(); ++i)
    fmt::print("  {:>4}  {:.17g}  (nth_element {:.17g}{})\n", query::quantileLabel(probs[i]),
               *last.values[i], floorValues[i],
               *last.values[i] == floorValues[i] ? ", equal" : ", DIFFERENT");
  fmt::print(
      "select, sequential (all sites on one thread + merge): min {:.1f} ms, median {:.1f} ms\n",
      seq.min, seq.median);
  fmt::print(
      "select, critical path (slowest site per round + merge): min {:.1f} ms, median {:.1f} ms\n",
      path.min, path.median);
  fmt::print(
      "  thread CPU time: sequential min {:.1f} / median {:.1f} ms, critical path min {:.1f} / "
      "median {:.1f} ms\n",
      seqC.min, seqC.median, pathC.min, pathC.median);
  fmt::print("rounds: {}\n", rounds);
  fmt::print("floor, std::nth_element on the pooled values: min {:.1f} ms, median {:.1f} ms\n",
             fl.min, fl.median);
  fmt::print("  thread CPU time: min {:.1f} ms, median {:.1f} ms\n", flC.min, flC.median);

  if (withR) {
    const auto dir = std::filesystem::temp_directory_path() / "tm_quantile_bench";
    std::filesystem::create_directories(dir);
    {
      std::ofstream bin(dir / "x.bin", std::ios::binary);
      for (auto& c : columns) bin.write(reinterpret_cast<const char*>(c.data()), c.size() * 8);
    }
    std::ofstream(dir / "q.R")
        << "x <- readBin('" << (dir / "x.bin").string() << "', 'double', " << sites * rows
        << ")\nx[is.nan(x)] <- NA\nt <- replicate(" << reps
        << ", system.time(quantile(x, c(0.25, 0.5, 0.75), na.rm = TRUE))[['elapsed']])\n"
           "q <- quantile(x, c(0.25, 0.5, 0.75), na.rm = TRUE)\n"
           "cat(sprintf('R quantile(): min %.1f ms, median %.1f ms\\n', 1000 * min(t), 1000 * "
           "median(t)))\nwriteLines(sprintf('%.17g', q), '"
        << (dir / "r.txt").string() << "')\n";
    std::fflush(stdout);
    const std::string cmd = "Rscript " + (dir / "q.R").string();
    const int rc = std::system(cmd.c_str());
    std::ifstream in(dir / "r.txt");
    for (size_t i = 0; i < probs.size(); ++i) {
      double v = 0;
      in >> v;
      fmt::print("  R {:>4}  {:.17g}  ({})\n", query::quantileLabel(probs[i]), v,
                 in && v == *last.values[i] ? "equal to the select" : "DIFFERENT");
    }
    std::filesystem::remove_all(dir);
    if (rc != 0) return 1;
  }
  return 0;
}
