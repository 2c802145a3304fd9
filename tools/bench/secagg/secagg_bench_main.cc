// trialmesh-bench-secagg: what secure aggregation (issue #5) costs over plain aggregation.
//
//  * in process: for n = 3, 10, 30 sites and vectors of 1, 100, 10,000 words, the time of one
//    round's cryptography: every site derives its pair keys (PairwiseMasker::create), masks its
//    vector and seals it to the coordinator; the coordinator opens every box and sums the words.
//    (Encoding and decoding are linear passes over the partial and are in the end-to-end time.)
//  * end to end: LocalFederation with real trialmesh-node processes, once with a plain and once
//    with a secure approval, the same data; the median wall time of repeated queries through one
//    CoordinatorSession (connections reused).
//
//   trialmesh-bench-secagg --rows 1000000 --sites 3,10 --reps 9 --dir /var/tmp/secagg
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "common/allocator.h"
#include "crypto/identity.h"
#include "crypto/mask.h"
#include "crypto/random.h"
#include "crypto/seal.h"
#include "node/coordinator.h"
#include "node/local_federation.h"
#include "tools/bench/machine.h"

namespace trialmesh {
namespace {

using Clock = std::chrono::steady_clock;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double msSince(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

void inProcess(int reps) {
  std::printf(
      "\n## In process: one round's cryptography (all sites + coordinator, one thread)\n\n");
  std::printf(
      "| sites | words | per site: create (ms) | mask+seal (ms) | coordinator: open+sum (ms) "
      "| round total (ms) |\n|---|---|---|---|---|---|\n");
  const crypto::Identity coordinator = crypto::generateIdentity();
  for (size_t n : {3, 10, 30}) {
    std::vector<crypto::Identity> sites;
    for (size_t i = 0; i < n; ++i) sites.push_back(crypto::generateIdentity());
    std::sort(sites.begin(), sites.end(),
              [](const crypto::Identity& a, const crypto::Identity& b) { return a.pub < b.pub; });
    std::vector<crypto::PublicKey> keys;
    for (const auto& s : sites) keys.push_back(s.pub);
    for (size_t words : {1, 100, 10000}) {
      std::vector<double> createMs, maskMs, openMs, totalMs;
      for (int r = 0; r < reps; ++r) {
        std::vector<uint8_t> round(16);
        crypto::randomBytes(round);
        std::vector<std::vector<uint8_t>> boxes;
        double create = 0, mask = 0;
        const auto t0 = Clock::now();
        for (size_t i = 0; i < n; ++i) {
          std::vector<crypto::MaskWord> v(words, crypto::MaskWord(i + 1));
          auto t = Clock::now();
          auto masker = crypto::PairwiseMasker::create(sites[i], keys, round);
          create += msSince(t);
          t = Clock::now();
          (void)masker->addMask(v);
          boxes.push_back(
              *crypto::sealForRound(sites[i], coordinator.pub, round, crypto::maskWordsToBytes(v)));
          mask += msSince(t);
        }
        const auto t1 = Clock::now();
        std::vector<crypto::MaskWord> sum(words, 0);
        for (size_t i = 0; i < n; ++i) {
          auto opened = crypto::openForRound(coordinator, keys[i], round, boxes[i]);
          auto w = crypto::maskWordsFromBytes(*opened);
          for (size_t k = 0; k < words; ++k) sum[k] += (*w)[k];
        }
        openMs.push_back(msSince(t1));
        totalMs.push_back(msSince(t0));
        createMs.push_back(create / static_cast<double>(n));
        maskMs.push_back(mask / static_cast<double>(n));
        // Masks cancel: the sum is 1 + 2 + ... + n in every word.
        if (sum[0] != crypto::MaskWord(n * (n + 1) / 2)) std::fprintf(stderr, "BAD SUM\n");
      }
      std::printf("| %zu | %zu | %.3f | %.3f | %.3f | %.2f |\n", n, words, median(createMs),
                  median(maskMs), median(openMs), median(totalMs));
    }
  }
}

// Both federations (same data, plain and secure approvals) run at once and the queries
// alternate between them, so the machine's noise hits both series alike.
int endToEnd(const std::string& dir, uint64_t rows, uint32_t sites, int reps) {
  const std::vector<std::string> queries = {"count, mean(age) by arm", "km(time, event) by arm"};
  const std::vector<ethics::AggregationMode> modes = {ethics::AggregationMode::kPlain,
                                                      ethics::AggregationMode::kSecure};
  std::vector<std::unique_ptr<node::LocalFederation>> feds;
  std::vector<std::unique_ptr<node::CoordinatorSession>> sessions;
  for (auto mode : modes) {
    node::LocalFederationOptions o;
    o.directory = dir + "/fed-" + std::to_string(sites) + "-" + ethics::aggregationModeName(mode);
    std::filesystem::remove_all(o.directory);
    o.sites = sites;
    o.rows = rows;
    o.seed = 3;
    o.aggregation = mode;
    const auto tc = Clock::now();
    auto fed = node::LocalFederation::create(o);
    if (!fed) {
      std::fprintf(stderr, "%s\n", fed.status().toString().c_str());
      return 1;
    }
    Status s = (*fed)->start(std::chrono::seconds(120));
    if (!s.isOk()) {
      std::fprintf(stderr, "%s\n", s.toString().c_str());
      return 1;
    }
    std::fprintf(stderr, "federation %s x%u ready in %.0f ms\n", ethics::aggregationModeName(mode),
                 sites, msSince(tc));
    sessions.push_back(
        std::make_unique<node::CoordinatorSession>((*fed)->coordinator(), (*fed)->members()));
    feds.push_back(std::move(*fed));
  }
  std::vector<std::vector<std::vector<double>>> ms(
      modes.size(), std::vector<std::vector<double>>(queries.size()));
  node::FederatedQueryOptions options;
  options.deadline = std::chrono::seconds(60);
  constexpr int kWarmup = 3;  // connections, policy fetch, dictionary, page cache, pair secrets
  for (int r = 0; r < kWarmup + reps; ++r) {
    for (size_t q = 0; q < queries.size(); ++q) {
      for (size_t k = 0; k < modes.size(); ++k) {
        const size_t m = (r % 2 == 0) ? k : modes.size() - 1 - k;  // alternate who goes first
        const auto t = Clock::now();
        auto result = sessions[m]->query(node::LocalFederation::kStudy, queries[q], options);
        const double elapsed = msSince(t);
        if (!result || result->answered() != sites || result->aggregation != modes[m]) {
          std::fprintf(stderr, "query failed: %s\n",
                       result ? "not every site answered" : result.status().toString().c_str());
          return 1;
        }
        if (r >= kWarmup) ms[m][q].push_back(elapsed);
      }
    }
  }
  for (size_t m = 0; m < modes.size(); ++m) {
    sessions[m]->close();
    feds[m]->stop();
    std::filesystem::remove_all(feds[m]->directory());
  }
  for (size_t q = 0; q < queries.size(); ++q) {
    const double p = median(ms[0][q]), sec = median(ms[1][q]);
    std::printf("| %u | %llu | `%s` | %.1f | %.1f | %+.1f%% |\n", sites,
                static_cast<unsigned long long>(rows), queries[q].c_str(), p, sec,
                100.0 * (sec - p) / p);
  }
  return 0;
}

}  // namespace
}  // namespace trialmesh

int main(int argc, char** argv) {
  trialmesh::retainFreedMemoryForReuse();
  CLI::App app{"Overhead of secure aggregation over plain (issue #5)"};
  std::string dir = "/var/tmp/trialmesh-secagg-bench";
  uint64_t rows = 1000000;
  std::vector<uint32_t> sites = {3, 10};
  int reps = 9;
  bool skipE2e = false;
  app.add_option("--dir", dir, "Scratch directory for the federations");
  app.add_option("--rows", rows, "Rows of the whole study");
  app.add_option("--sites", sites, "Federation sizes")->delimiter(',');
  app.add_option("--reps", reps, "Repetitions (median)");
  bool skipInProcess = false;
  app.add_flag("--skip-e2e", skipE2e, "Only the in-process part");
  app.add_flag("--skip-inprocess", skipInProcess, "Only the end-to-end part");
  CLI11_PARSE(app, argc, argv);
  std::printf("%s\n", trialmesh::bench::machineDescription(TRIALMESH_BUILD_TYPE).c_str());
  if (!skipInProcess) trialmesh::inProcess(reps);
  if (skipE2e) return 0;
  std::printf(
      "\n## End to end (real trialmesh-node processes, medians of %d queries per series, the plain "
      "and the secure federation running at once and queried alternately)\n\n",
      reps);
  std::printf(
      "| sites | rows | query | plain (ms) | secure (ms) | overhead |\n"
      "|---|---|---|---|---|---|\n");
  for (uint32_t n : sites) {
    if (int rc = trialmesh::endToEnd(dir, rows, n, reps); rc != 0) return rc;
    std::fflush(stdout);
  }
  return 0;
}
