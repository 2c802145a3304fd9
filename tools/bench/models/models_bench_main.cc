// trialmesh-bench-models: time per federated model fit (issue #6) against real trialmesh-node
// processes on 127.0.0.1 (node/local_federation.h), for N sites x R rows per site of the
// generated LUNG-7 study: Cox (Efron) and logistic fits to convergence, with the rounds and
// iterations, then the site's own work per round (the kernel, timed in-process on one site's
// store after the federation stops). Prints a markdown report for BENCHMARKS.md.
//
//   trialmesh-bench-models --sites 3,10 --rows-per-site 100000 --repeat 3
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "common/allocator.h"
#include "node/coordinator.h"
#include "node/local_federation.h"
#include "node/model_runner.h"
#include "query/engine.h"
#include "query/model_runner.h"
#include "query/query.h"
#include "storage/store.h"
#include "tools/bench/machine.h"

namespace {

using namespace trialmesh;
using Clock = std::chrono::steady_clock;

double msSince(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

std::string loadAverage() {
  double l[3] = {0, 0, 0};
  if (::getloadavg(l, 3) != 3) return "unknown";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.2f %.2f %.2f", l[0], l[1], l[2]);
  return buf;
}

struct Model {
  const char* label;
  const char* text;
};

constexpr Model kModels[] = {
    {"Cox (Efron)", "coxph(time, event ~ age + sex + arm + ecog + smoker)"},
    {"logistic", "glm(event ~ age + sex + arm + ecog + smoker, family = binomial)"},
};

int run(const std::vector<uint32_t>& siteCounts, uint64_t rowsPerSite, int repeat,
        const std::string& workdir, const std::vector<std::string>& modes) {
  std::printf("## Models (issue #6): trialmesh-bench-models\n\n");
  std::printf("%s", bench::machineDescription(TRIALMESH_BUILD_TYPE).c_str());
  std::printf("- Load average at start: %s (shared machine: other jobs run; numbers are noisy)\n",
              loadAverage().c_str());
  std::printf(
      "- aggregation: secure = masked rounds, cox times on the approval's grid (time_bin 1, "
      "whole days: exact); plain = each site's sums visible to the coordinator\n");
  std::printf("- %llu rows per site; each fit repeated %d times (min and median shown)\n\n",
              static_cast<unsigned long long>(rowsPerSite), repeat);
  std::printf(
      "| sites | rows | aggregation | model | rounds | iterations | min ms | median ms | load avg "
      "|\n");
  std::printf("|---|---|---|---|---|---|---|---|---|\n");
  std::vector<std::string> kernelLines;
  for (uint32_t sites : siteCounts)
    for (const std::string& mode : modes) {
      const std::string dir = workdir + "/models-" + std::to_string(sites) + "-" + mode;
      std::filesystem::remove_all(dir);
      node::LocalFederationOptions o;
      o.directory = dir;
      o.sites = sites;
      o.rows = rowsPerSite * sites;
      o.seed = 6;
      o.logFormat = "plain";
      o.aggregation =
          mode == "plain" ? ethics::AggregationMode::kPlain : ethics::AggregationMode::kSecure;
      auto fed = node::LocalFederation::create(o);
      if (!fed) {
        std::fprintf(stderr, "error: %s\n", fed.status().toString().c_str());
        return 1;
      }
      if (Status s = (*fed)->start(std::chrono::seconds(120)); !s.isOk()) {
        std::fprintf(stderr, "error: %s\n", s.toString().c_str());
        return 1;
      }
      std::string lastCoxRound;
      {
        node::CoordinatorSession session((*fed)->coordinator(), (*fed)->members());
        (void)session.connect(node::LocalFederation::kStudy, std::chrono::seconds(20));
        node::FederatedQueryOptions options;
        options.deadline = std::chrono::seconds(60);
        auto federated =
            node::federatedRoundRunner(session, node::LocalFederation::kStudy, options);
        // Wall time of every round of the last fit, to show where a fit's time goes.
        std::vector<double> roundMs;
        query::RoundRunner runner = [&](const std::string& text) {
          const auto t0 = Clock::now();
          auto answer = federated(text);
          roundMs.push_back(msSince(t0));
          return answer;
        };
        for (const Model& m : kModels) {
          auto q = query::parseQuery(m.text);
          std::vector<double> times;
          size_t rounds = 0;
          int iterations = 0;
          for (int r = 0; r < repeat; ++r) {
            const auto t0 = Clock::now();
            roundMs.clear();
            auto fit = query::fitModel(*q, runner);
            times.push_back(msSince(t0));
            if (!fit) {
              std::fprintf(stderr, "error: %s: %s\n", m.text, fit.status().toString().c_str());
              return 1;
            }
            rounds = fit->roundQueries.size();
            iterations = fit->cox ? fit->cox->iterations : fit->logistic->iterations;
            if (fit->cox) lastCoxRound = fit->roundQueries.back();
          }
          std::string perRound;
          for (double ms : roundMs)
            perRound += (perRound.empty() ? "" : ", ") + std::to_string(std::lround(ms));
          kernelLines.push_back("- " + std::to_string(sites) + " sites, " + mode + ", " + m.label +
                                ": rounds of the last fit (ms): " + perRound);
          std::sort(times.begin(), times.end());
          std::printf("| %u | %llu | %s | %s | %zu | %d | %.0f | %.0f | %s |\n", sites,
                      static_cast<unsigned long long>(rowsPerSite * sites), mode.c_str(), m.label,
                      rounds, iterations, times.front(), times[times.size() / 2],
                      loadAverage().c_str());
          std::fflush(stdout);
        }
        session.close();
      }
      (*fed)->stop();
      // The site's share of a round: one cox_sums round on site 1's store, in-process.
      storage::StoreOptions so;
      so.createIfMissing = false;
      auto store = storage::Store::open((*fed)->siteDirectory(0) + "/store", so);
      if (store) {
        auto source = (*store)->openDataset(node::LocalFederation::kDataset);
        auto q = query::parseQuery(lastCoxRound);
        if (source && q) {
          auto bound = query::bindQuery(*q, (*source)->dictionary());
          std::vector<double> ms;
          for (int r = 0; bound && r < 5; ++r) {
            const auto t0 = Clock::now();
            auto p = query::execute(*bound, **source);
            ms.push_back(msSince(t0));
            if (!p) break;
          }
          std::sort(ms.begin(), ms.end());
          if (!ms.empty())
            kernelLines.push_back(
                "- " + std::to_string(sites) + " sites, " + mode +
                ": one cox_sums round on one site's " + std::to_string(rowsPerSite) +
                " rows (in-process, read + design + sums): min " +
                std::to_string(static_cast<int>(ms.front() + 0.5)) + " ms, median " +
                std::to_string(static_cast<int>(ms[ms.size() / 2] + 0.5)) + " ms");
          // A Newton round as a site runs it: the design and the row order come from the
          // cache an earlier round of the fit filled (ExecOptions::cacheKey).
          query::ExecOptions cached;
          cached.cacheKey = "bench-models@" + std::to_string(sites) + mode;
          std::vector<double> warm;
          for (int r = 0; bound && r < 11; ++r) {
            const auto t0 = Clock::now();
            auto p = query::execute(*bound, **source, cached);
            if (r > 0) warm.push_back(msSince(t0));
            if (!p) break;
          }
          std::sort(warm.begin(), warm.end());
          if (!warm.empty()) {
            char line[256];
            std::snprintf(line, sizeof line,
                          "- %u sites, %s: the same round with the design and row order cached "
                          "(as a fit's later rounds run): min %.1f ms, median %.1f ms",
                          sites, mode.c_str(), warm.front(), warm[warm.size() / 2]);
            kernelLines.push_back(line);
          }
        }
      }
      fed->reset();
      std::filesystem::remove_all(dir);
    }
  std::printf("\n");
  for (const auto& l : kernelLines) std::printf("%s\n", l.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  trialmesh::retainFreedMemoryForReuse();
  CLI::App app{"trialmesh-bench-models: federated Cox and logistic fit times (issue #6)"};
  std::vector<uint32_t> sites{3, 10};
  uint64_t rowsPerSite = 100000;
  int repeat = 3;
  std::string workdir = std::filesystem::temp_directory_path().string();
  app.add_option("--sites", sites, "Site counts to run, e.g. 3,10")->delimiter(',');
  app.add_option("--rows-per-site", rowsPerSite, "Rows per site")->capture_default_str();
  app.add_option("--repeat", repeat, "Fits per model")->capture_default_str();
  app.add_option("--workdir", workdir, "Scratch directory")->capture_default_str();
  std::vector<std::string> modes{"secure", "plain"};
  app.add_option("--aggregation", modes, "Approval modes to run: secure, plain")
      ->delimiter(',')
      ->check(CLI::IsMember({"secure", "plain"}))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  return run(sites, rowsPerSite, std::max(1, repeat), workdir, modes);
}
