// trialmesh-bench-federation: federated query latency, the federation's overhead over the
// slowest site's local scan, concurrent query throughput and channel throughput (issue #3),
// measured in one run against real trialmesh-node processes on 127.0.0.1 (node::LocalFederation)
// and printed as the markdown section of BENCHMARKS.md. Not used by any test.

#include <time.h>
#include <unistd.h>
#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/allocator.h"
#include "node/coordinator.h"
#include "node/local_federation.h"
#include "query/engine.h"
#include "query/query.h"
#include "storage/dictionary.h"
#include "storage/store.h"
#include "tools/bench/federation/micro_bench.h"
#include "tools/bench/machine.h"

namespace trialmesh::bench {
namespace {

namespace fs = std::filesystem;
using WallClock = std::chrono::steady_clock;

const char* const kQueries[] = {"count", "count, mean(bmi), var(bmi) by arm"};
constexpr size_t kQueryCount = 2;
// The query of the concurrency runs.
constexpr size_t kConcurrencyQuery = 1;

struct Flags {
  std::string workdir;
  std::string out;
  bool keep = false;
  uint64_t smallRows = 3000;
  uint64_t largeRows = 1000000;
  std::vector<uint32_t> smallSites{1, 3, 10};
  std::vector<uint32_t> largeSites{1, 3, 10};
  int smallQueries = 50;
  int largeQueries = 11;
  int warmup = 5;
  std::vector<int> concurrency{1, 4, 16};
  double concurrencySeconds = 3;
  size_t channelMiB = 1024;
  int costIterations = 200;
  uint64_t seed = 1;
  std::string commandLine;
};

double processCpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// CPU seconds (user + system) the site processes have used so far, from /proc/<pid>/stat
// (clock ticks of 10 ms: divide a difference over many queries, not one).
double sitesCpuSeconds(node::LocalFederation& fed) {
  double total = 0;
  const double tick = static_cast<double>(::sysconf(_SC_CLK_TCK));
  for (size_t s = 0; s < fed.siteCount(); ++s) {
    node::ChildProcess* p = fed.siteProcess(s);
    if (p == nullptr) continue;
    std::ifstream in("/proc/" + std::to_string(p->pid()) + "/stat");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const size_t close = text.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream fields(text.substr(close + 2));
    std::string field;
    // After "pid (comm) ": state is field 3; utime and stime are fields 14 and 15.
    for (int i = 3; i <= 15 && fields >> field; ++i) {
      if (i == 14 || i == 15) total += std::strtod(field.c_str(), nullptr) / tick;
    }
  }
  return total;
}

double msSince(WallClock::time_point t0) {
  return std::chrono::duration<double, std::milli>(WallClock::now() - t0).count();
}

// Nearest-rank percentile of an unsorted sample.
double percentile(std::vector<double> v, double p) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(v.size())));
  return v[std::min(v.size(), std::max<size_t>(rank, 1)) - 1];
}

double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? NAN : s / static_cast<double>(v.size());
}

std::string fmt(double v, int decimals = 2) {
  if (std::isnan(v)) return "n/a";
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

std::string loadAverage() {
  std::ifstream in("/proc/loadavg");
  double one = -1, five = -1, fifteen = -1;
  in >> one >> five >> fifteen;
  char buf[96];
  std::snprintf(buf, sizeof buf, "%.2f / %.2f / %.2f (1 / 5 / 15 min)", one, five, fifteen);
  return buf;
}

std::string nowUtc() {
  std::time_t t = std::time(nullptr);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M UTC", std::gmtime(&t));
  return buf;
}

// The `elapsed_ms` of every query_served event appended to a node log after `offset`: the
// site's own handling time (checks, pool hand-off, scan, building the answer).
std::vector<double> servedTimesSince(const std::string& logPath, std::streamoff offset) {
  std::ifstream in(logPath);
  in.seekg(offset);
  std::vector<double> out;
  std::string line;
  while (std::getline(in, line)) {
    if (line.find("query_served") == std::string::npos) continue;
    size_t p = line.find("elapsed_ms");
    if (p == std::string::npos) continue;
    p = line.find_first_of("0123456789", p + 10);
    if (p != std::string::npos) out.push_back(std::strtod(line.c_str() + p, nullptr));
  }
  return out;
}

std::streamoff fileSize(const std::string& path) {
  std::error_code ec;
  auto n = fs::file_size(path, ec);
  return ec ? 0 : static_cast<std::streamoff>(n);
}

struct LocalScan {
  double executeP50Ms = 0;  // query::execute alone (1 thread, warm)
  double siteJobP50Ms = 0;  // what the node's scan job does: open snapshot, bind, execute, toToml
};

struct QueryRow {
  uint32_t sites = 0;
  uint64_t minRows = 0, maxRows = 0;
  std::string query;
  int queries = 0;
  double p50 = 0, p99 = 0, meanMs = 0;
  double slowestExecuteMs = 0;  // max over sites of the local execute p50
  double slowestJobMs = 0;      // max over sites of the local site-job p50
  double slowestServedMs = 0;   // max over sites of the p50 of the node's own elapsed_ms
  double lastAnswerP50 = 0;     // p50 of the time until the last site's answer was in
  double coordCpuUs = 0;        // coordinator process CPU (all its threads) per session query
  double sitesCpuUs = 0;        // CPU of all site processes together per session query
  int oneShotQueries = 0;
  double oneShotP50 = 0, oneShotP99 = 0;  // runFederatedQuery: connect + handshake every time
  uint64_t handshakes = 0;                // handshakes the session made over all its queries
};

struct ConcurrencyRow {
  int threads = 0;
  double seconds = 0;
  uint64_t ok = 0, failed = 0;
  double qps = 0, p50 = 0, p99 = 0;
  std::string firstFailure;
};

struct Report {
  std::vector<QueryRow> rows;
  std::vector<ConcurrencyRow> concurrency;
  std::vector<CostItem> costs;
  ChannelNumbers channel;
  std::vector<std::string> notes;
  std::string loadStart, loadEnd, startedAt;
};

// Times the local scan on every site's store in this process (before the nodes start: a store
// is opened by one process at a time). Returns per-site, per-query numbers and the row counts.
Result<std::vector<std::vector<LocalScan>>> measureLocalScans(node::LocalFederation& fed, int runs,
                                                              std::vector<uint64_t>& rowsPerSite) {
  std::vector<std::vector<LocalScan>> out;
  for (size_t s = 0; s < fed.siteCount(); ++s) {
    TM_ASSIGN_OR_RETURN(auto store, storage::Store::open(fed.siteDirectory(s) + "/store"));
    std::vector<LocalScan> perQuery;
    for (size_t qi = 0; qi < kQueryCount; ++qi) {
      TM_ASSIGN_OR_RETURN(query::Query q, query::parseQuery(kQueries[qi]));
      std::vector<double> exec, job;
      for (int i = 0; i < runs + 2; ++i) {  // two untimed warm-up runs
        auto t0 = WallClock::now();
        TM_ASSIGN_OR_RETURN(auto source, store->openDataset(node::LocalFederation::kDataset));
        TM_ASSIGN_OR_RETURN(auto info, store->datasetInfo(node::LocalFederation::kDataset));
        TM_ASSIGN_OR_RETURN(query::BoundQuery bound, query::bindQuery(q, source->dictionary()));
        query::ExecOptions options;
        options.threads = 1;  // the node's default limits.scan_threads
        auto e0 = WallClock::now();
        TM_ASSIGN_OR_RETURN(query::PartialResult partial, query::execute(bound, *source, options));
        double execMs = msSince(e0);
        std::string toml = source->dictionary().toToml();
        double jobMs = msSince(t0);
        if (i >= 2) {
          exec.push_back(execMs);
          job.push_back(jobMs);
        }
        if (qi == 0 && i == 0) rowsPerSite.push_back(partial.rowsScanned);
        (void)info;
      }
      perQuery.push_back({percentile(exec, 50), percentile(job, 50)});
    }
    out.push_back(std::move(perQuery));
  }
  return out;
}

Status checkResult(const node::FederatedResult& r, uint64_t totalRows) {
  if (r.partial() || !r.merged) {
    for (const auto& s : r.sites) {
      if (s.outcome != node::SiteOutcomeKind::kAnswered) {
        return Status::unavailable("site " + s.site + " " + node::outcomeName(s.outcome) + ": " +
                                   s.reason);
      }
    }
    return Status::unavailable("no merged result");
  }
  if (r.merged->rowsScanned != totalRows) {
    return Status::internal("merged result scanned " + std::to_string(r.merged->rowsScanned) +
                            " rows; the sites hold " + std::to_string(totalRows));
  }
  return Status::ok();
}

Status runConcurrency(const Flags& flags, node::CoordinatorSession& session, uint64_t totalRows,
                      Report& report) {
  for (int threads : flags.concurrency) {
    std::atomic<bool> stop{false};
    std::vector<std::vector<double>> latencies(static_cast<size_t>(threads));
    std::vector<uint64_t> ok(static_cast<size_t>(threads), 0), failed(ok);
    std::vector<std::string> failure(static_cast<size_t>(threads));
    std::vector<std::thread> pool;
    const auto t0 = WallClock::now();
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&, t]() {
        const size_t i = static_cast<size_t>(t);
        while (!stop.load(std::memory_order_relaxed)) {
          auto q0 = WallClock::now();
          auto r = session.query(node::LocalFederation::kStudy, kQueries[kConcurrencyQuery]);
          const double ms = msSince(q0);
          Status s = r ? checkResult(*r, totalRows) : r.status();
          if (s.isOk()) {
            ++ok[i];
            latencies[i].push_back(ms);
          } else {
            ++failed[i];
            if (failure[i].empty()) failure[i] = s.toString();
          }
        }
      });
    }
    std::this_thread::sleep_for(std::chrono::duration<double>(flags.concurrencySeconds));
    stop = true;
    for (auto& th : pool) th.join();
    ConcurrencyRow row;
    row.threads = threads;
    row.seconds = msSince(t0) / 1000.0;
    std::vector<double> all;
    for (size_t i = 0; i < latencies.size(); ++i) {
      row.ok += ok[i];
      row.failed += failed[i];
      all.insert(all.end(), latencies[i].begin(), latencies[i].end());
      if (row.firstFailure.empty()) row.firstFailure = failure[i];
    }
    row.qps = static_cast<double>(row.ok) / row.seconds;
    row.p50 = percentile(all, 50);
    row.p99 = percentile(all, 99);
    std::cerr << "  concurrency " << threads << ": " << fmt(row.qps, 0) << " queries/s, "
              << row.failed << " failed\n";
    report.concurrency.push_back(std::move(row));
  }
  return Status::ok();
}

Status runFederation(const Flags& flags, uint32_t sites, uint64_t rowsPerSite, int queries,
                     bool extras, Report& report) {
  const std::string dir =
      flags.workdir + "/fed-" + std::to_string(sites) + "x" + std::to_string(rowsPerSite);
  fs::remove_all(dir);
  std::cerr << "federation: " << sites << " sites x " << rowsPerSite << " rows (" << dir << ")\n";
  node::LocalFederationOptions options;
  options.directory = dir;
  options.sites = sites;
  options.rows = rowsPerSite * sites;
  options.seed = flags.seed;
  // The concurrency runs put up to 16 queries on each site at once; the default of 8 would
  // refuse some of them ("retry later"), which measures the limit, not the throughput.
  options.extraLimits = "max_concurrent_queries = 64";
  const auto c0 = WallClock::now();
  TM_ASSIGN_OR_RETURN(auto fed, node::LocalFederation::create(options));
  std::cerr << "  created in " << fmt(msSince(c0) / 1000, 1) << " s\n";

  std::vector<uint64_t> rows;
  TM_ASSIGN_OR_RETURN(auto local, measureLocalScans(*fed, queries, rows));
  uint64_t total = 0;
  for (uint64_t r : rows) total += r;
  TM_RETURN_IF_ERROR(fed->start(std::chrono::seconds(60)));

  // The coordinator of a real analysis keeps one session for all its queries.
  node::CoordinatorSession session(fed->coordinator(), fed->members());
  for (size_t qi = 0; qi < kQueryCount; ++qi) {
    for (int i = 0; i < flags.warmup; ++i) {
      TM_ASSIGN_OR_RETURN(auto r, session.query(node::LocalFederation::kStudy, kQueries[qi]));
      TM_RETURN_IF_ERROR(checkResult(r, total));
    }
    std::vector<std::streamoff> offsets;
    for (size_t s = 0; s < fed->siteCount(); ++s) offsets.push_back(fileSize(fed->siteLogPath(s)));
    std::vector<double> ms, lastAnswer;
    const double cpu0 = processCpuSeconds();
    const double sitesCpu0 = sitesCpuSeconds(*fed);
    for (int i = 0; i < queries; ++i) {
      const auto t0 = WallClock::now();
      auto r = session.query(node::LocalFederation::kStudy, kQueries[qi]);
      ms.push_back(msSince(t0));
      if (!r) return r.status();
      TM_RETURN_IF_ERROR(checkResult(*r, total));
      double last = 0;
      for (const auto& site : r->sites) last = std::max(last, site.elapsedMs);
      lastAnswer.push_back(last);
    }
    const double coordCpuUs = (processCpuSeconds() - cpu0) * 1e6 / queries;
    const double sitesCpuUs = (sitesCpuSeconds(*fed) - sitesCpu0) * 1e6 / queries;
    // One-shot (a new session per query: TCP connect + handshake to every site), as the CLI.
    const int oneShot = std::max(1, std::min(queries, 20));
    std::vector<double> oneShotMs;
    for (int i = 0; i < oneShot; ++i) {
      const auto t0 = WallClock::now();
      auto r = node::runFederatedQuery(fed->coordinator(), fed->members(),
                                       node::LocalFederation::kStudy, kQueries[qi]);
      oneShotMs.push_back(msSince(t0));
      if (!r) return r.status();
      TM_RETURN_IF_ERROR(checkResult(*r, total));
    }
    QueryRow row;
    row.sites = sites;
    row.minRows = *std::min_element(rows.begin(), rows.end());
    row.maxRows = *std::max_element(rows.begin(), rows.end());
    row.query = kQueries[qi];
    row.queries = queries;
    row.p50 = percentile(ms, 50);
    row.p99 = percentile(ms, 99);
    row.meanMs = mean(ms);
    row.lastAnswerP50 = percentile(lastAnswer, 50);
    row.coordCpuUs = coordCpuUs;
    row.sitesCpuUs = sitesCpuUs;
    row.oneShotQueries = oneShot;
    row.oneShotP50 = percentile(oneShotMs, 50);
    row.oneShotP99 = percentile(oneShotMs, 99);
    row.handshakes = session.handshakesCompleted();
    for (size_t s = 0; s < fed->siteCount(); ++s) {
      row.slowestExecuteMs = std::max(row.slowestExecuteMs, local[s][qi].executeP50Ms);
      row.slowestJobMs = std::max(row.slowestJobMs, local[s][qi].siteJobP50Ms);
      row.slowestServedMs = std::max(
          row.slowestServedMs, percentile(servedTimesSince(fed->siteLogPath(s), offsets[s]), 50));
    }
    std::cerr << "  " << row.query << ": session p50 " << fmt(row.p50) << " ms, p99 "
              << fmt(row.p99) << " ms; one-shot p50 " << fmt(row.oneShotP50) << " ms\n";
    report.rows.push_back(std::move(row));
  }

  if (extras) {
    TM_ASSIGN_OR_RETURN(storage::Dictionary dict,
                        storage::Dictionary::loadFile(fed->dictionaryPath()));
    TM_ASSIGN_OR_RETURN(report.costs,
                        measureCostModel(dict.toToml(), kQueries[1], fed->coordinator(),
                                         fed->members(), fed->siteName(0), flags.costIterations));
    TM_RETURN_IF_ERROR(runConcurrency(flags, session, total, report));
  }
  session.close();
  std::vector<int> statuses = fed->stop();
  for (size_t s = 0; s < statuses.size(); ++s) {
    if (statuses[s] != 0) {
      report.notes.push_back("site " + std::to_string(s) + " of the " + std::to_string(sites) +
                             "-site federation exited with status " + std::to_string(statuses[s]));
    }
  }
  fed.reset();
  if (!flags.keep) fs::remove_all(dir);
  return Status::ok();
}

std::string renderReport(const Flags& flags, const Report& r) {
  std::ostringstream o;
  o << "### Report as printed by trialmesh-bench-federation, " << r.startedAt << "\n\n";
  o << "Command: `" << flags.commandLine << "`\n\n" << machineDescription(TRIALMESH_BUILD_TYPE);
  o << "- Load average at start: " << r.loadStart << "; at end: " << r.loadEnd << "\n";
  o << "- Sites: `trialmesh-node` processes on 127.0.0.1 (node::LocalFederation), default "
       "limits except `max_concurrent_queries = 64`, `worker_threads = 2`, `scan_threads` = 1; "
       "all processes share the machine's cores with the coordinator\n\n";

  o << "#### Federated query latency (coordinator wall time of `CoordinatorSession::query` on "
       "an open session: parse, sign once for all sites, RPC over the open connections, merge, "
       "finalize; "
       "and of one-shot `runFederatedQuery`, which also connects and handshakes per site)\n\n";
  o << "| sites | rows per site (min-max) | query | queries | session p50 ms | session p99 ms | "
       "session mean ms | coordinator CPU us / query | all sites' CPU us / query | one-shot p50 ms "
       "(n) | one-shot p99 ms | "
       "slowest site: local `execute` p50 ms | slowest site: local scan job p50 ms | slowest "
       "site: node-reported p50 ms | last site answered p50 ms | overhead p50 ms (session p50 - "
       "slowest local execute) |\n";
  o << "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  for (const auto& q : r.rows) {
    o << "| " << q.sites << " | " << q.minRows << "-" << q.maxRows << " | `" << q.query << "` | "
      << q.queries << " | " << fmt(q.p50) << " | " << fmt(q.p99) << " | " << fmt(q.meanMs) << " | "
      << fmt(q.coordCpuUs, 0) << " | " << fmt(q.sitesCpuUs, 0) << " | " << fmt(q.oneShotP50) << " ("
      << q.oneShotQueries << ") | " << fmt(q.oneShotP99) << " | " << fmt(q.slowestExecuteMs, 3)
      << " | " << fmt(q.slowestJobMs, 3) << " | " << fmt(q.slowestServedMs, 3) << " | "
      << fmt(q.lastAnswerP50) << " | " << fmt(q.p50 - q.slowestExecuteMs) << " |\n";
  }
  o << "\nLocal `execute`: `query::execute` with 1 thread on the site's own store in this process, "
       "warm, median of as many runs as federated queries (before the nodes start). Local scan "
       "job: what the node's scan job does around it (open snapshot, bind, execute, "
       "`Dictionary::toToml`). Node-reported: the `elapsed_ms` of the node's `query_served` log "
       "events (signature and freshness checks, pool hand-off, scan, answer). Last site answered: "
       "`SiteOutcome::elapsedMs` of the slowest site; the rest of p50 is the signing, the hand-off "
       "to the session's event-loop thread, merge and finalize. Coordinator CPU: CPU time of the "
       "whole coordinator process (caller thread + session event-loop thread) over the session "
       "queries, divided by their number; all sites' CPU: user + system time of every site "
       "process over the same queries (from /proc, 10 ms ticks), divided by their number: "
       "with the machine shared, these CPU figures explain the latency better than wall time. "
       "One-shot: min(queries, 20) calls of "
       "`runFederatedQuery` after the session series. The session made one handshake per site "
       "for all its queries. p99 of 50 queries is the second-largest sample; of 11, the "
       "largest.\n\n";

  if (!r.concurrency.empty()) {
    o << "#### Concurrent query throughput (3 sites x " << flags.smallRows << " rows, `"
      << kQueries[kConcurrencyQuery]
      << "`; N threads sharing one `CoordinatorSession`, each calling `query` in a loop for "
      << fmt(flags.concurrencySeconds, 0) << " s)\n\n";
    o << "| coordinator threads | queries/s | p50 ms | p99 ms | complete answers | failed |\n";
    o << "|---:|---:|---:|---:|---:|---:|\n";
    for (const auto& c : r.concurrency) {
      o << "| " << c.threads << " | " << fmt(c.qps, 0) << " | " << fmt(c.p50) << " | " << fmt(c.p99)
        << " | " << c.ok << " | " << c.failed
        << (c.firstFailure.empty() ? "" : " (" + c.firstFailure + ")") << " |\n";
    }
    o << "\n";
  }

  const auto& ch = r.channel;
  o << "#### Channel throughput (" << ch.frameBytes / 1024 << " KiB frames, " << fmt(ch.totalMiB, 0)
    << " MiB; MB = 10^6 bytes; rows without 'two threads' run on one thread)\n\n";
  o << "| what | MB/s (wall) | MB/s (thread CPU) |\n|---|---:|---:|\n";
  o << "| `FrameSealer::seal` + `FrameOpener::feed`/`nextFrame` | " << fmt(ch.sealOpenWallMBps, 0)
    << " | " << fmt(ch.sealOpenCpuMBps, 0) << " |\n";
  o << "| of which `seal` alone (the sender's core) | | " << fmt(ch.sealCpuMBps, 0) << " |\n";
  o << "| of which `feed` + `nextFrame` alone (the receiver's core) | | " << fmt(ch.openCpuMBps, 0)
    << " |\n";
  o << "| libsodium XChaCha20-Poly1305 encrypt + decrypt alone (floor) | " << fmt(ch.rawAeadMBps, 0)
    << " | " << fmt(ch.rawAeadCpuMBps, 0) << " |\n";
  o << "| " << ch.streamNote << " | " << fmt(ch.streamWallMBps, 0) << " | "
    << fmt(ch.streamCpuMBps, 0) << " |\n";
  o << "| **one direction, sealer and opener on two threads** (queue of 32 frames between them) | "
    << fmt(ch.pipeWallMBps, 0) << " | seal " << fmt(ch.pipeSealCpuMBps, 0) << " / open "
    << fmt(ch.pipeOpenCpuMBps, 0) << " |\n";
  o << "| **SecureStream -> TCP 127.0.0.1 -> SecureStream, writer and reader on two threads** "
       "(a KJ loop each) | "
    << fmt(ch.stream2WallMBps, 0) << " | writer " << fmt(ch.stream2WriterCpuMBps, 0) << " / reader "
    << fmt(ch.stream2ReaderCpuMBps, 0) << " |\n\n";

  if (!r.costs.empty()) {
    o << "#### Fixed costs of one federated query (in-process, median of " << flags.costIterations
      << " runs)\n\n| item | wall us | CPU us (this thread) | paid |\n|---|---:|---:|---|\n";
    for (const auto& c : r.costs) {
      o << "| " << c.what << " | " << fmt(c.medianUs, 1) << " | " << fmt(c.medianCpuUs, 1) << " | "
        << c.perQuery << " |\n";
    }
    o << "\n";
  }

  o << "#### Against the targets of issue #3\n\n| target | measured | met |\n|---|---|---|\n";
  for (const auto& q : r.rows) {
    if (q.sites == 3 && q.maxRows <= 10 * flags.smallRows) {
      o << "| 3 sites, few thousand rows each, `" << q.query << "` p50 <= 2 ms (session) | "
        << fmt(q.p50) << " ms | " << (q.p50 <= 2.0 ? "yes" : "**no**") << " |\n";
    }
  }
  for (const auto& q : r.rows) {
    if (q.sites == 10) {
      const double overhead = q.p50 - q.slowestExecuteMs;
      o << "| overhead over slowest local scan <= 1 ms at 10 sites, session (" << q.maxRows
        << " rows max, `" << q.query << "`) | " << fmt(overhead) << " ms | "
        << (overhead <= 1.0 ? "yes" : "**no**") << " |\n";
    }
  }
  o << "| channel >= 500 MB/s per direction (sealer and opener on two threads, wall) | "
    << fmt(ch.pipeWallMBps, 0) << " MB/s | " << (ch.pipeWallMBps >= 500 ? "yes" : "**no**")
    << " |\n";
  o << "| channel >= 500 MB/s per direction (SecureStream over loopback TCP, two threads, wall) | "
    << fmt(ch.stream2WallMBps, 0) << " MB/s | " << (ch.stream2WallMBps >= 500 ? "yes" : "**no**")
    << " |\n";
  o << "| (for comparison) seal + open on one core, wall | " << fmt(ch.sealOpenWallMBps, 0)
    << " MB/s | " << (ch.sealOpenWallMBps >= 500 ? "yes" : "no") << " |\n";
  for (const auto& n : r.notes) o << "\nNote: " << n << "\n";
  return o.str();
}

int run(Flags flags) {
  if (flags.workdir.empty()) {
    flags.workdir =
        (fs::temp_directory_path() / ("tm-bench-fed-" + std::to_string(::getpid()))).string();
  }
  fs::create_directories(flags.workdir);
  Report report;
  report.startedAt = nowUtc();
  report.loadStart = loadAverage();
  std::cerr << "load average at start: " << report.loadStart << "\n";

  auto fail = [](const Status& s) {
    std::cerr << "trialmesh-bench-federation: " << s.toString() << "\n";
    return 1;
  };
  std::cerr << "channel: " << flags.channelMiB << " MiB\n";
  auto ch = measureChannel(size_t{64} * 1024, flags.channelMiB);
  if (!ch) return fail(ch.status());
  report.channel = *ch;

  for (uint32_t sites : flags.smallSites) {
    if (sites == 0) continue;
    Status s = runFederation(flags, sites, flags.smallRows, flags.smallQueries, sites == 3, report);
    if (!s.isOk()) return fail(s);
  }
  for (uint32_t sites : flags.largeSites) {
    if (sites == 0) continue;
    Status s = runFederation(flags, sites, flags.largeRows, flags.largeQueries, false, report);
    if (!s.isOk()) return fail(s);
  }
  report.loadEnd = loadAverage();
  const std::string text = renderReport(flags, report);
  std::cout << text;
  if (!flags.out.empty()) {
    std::ofstream out(flags.out, std::ios::trunc);
    out << text;
    if (!out) return fail(Status::ioError("cannot write " + flags.out));
  }
  if (!flags.keep) fs::remove(flags.workdir);  // only if empty
  return 0;
}

}  // namespace
}  // namespace trialmesh::bench

int main(int argc, char** argv) {
  trialmesh::retainFreedMemoryForReuse();
  trialmesh::bench::Flags f;
  CLI::App app{
      "trialmesh-bench-federation: federated query latency, overhead, throughput and "
      "channel speed against real trialmesh-node processes on 127.0.0.1"};
  app.add_option("--small-rows", f.smallRows, "Rows per site, small federations")
      ->capture_default_str();
  app.add_option("--large-rows", f.largeRows, "Rows per site, large federations")
      ->capture_default_str();
  app.add_option("--small-sites", f.smallSites, "Site counts at --small-rows (comma-separated)")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--large-sites", f.largeSites,
                 "Site counts at --large-rows (comma-separated; 0: none)")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--queries", f.smallQueries, "Timed queries per query type, small")
      ->capture_default_str();
  app.add_option("--large-queries", f.largeQueries, "Timed queries per query type, large")
      ->capture_default_str();
  app.add_option("--warmup", f.warmup, "Untimed queries before each timed series")
      ->capture_default_str();
  app.add_option("--concurrency", f.concurrency, "Coordinator threads (comma-separated)")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--concurrency-seconds", f.concurrencySeconds, "Duration of each level")
      ->capture_default_str();
  app.add_option("--channel-mib", f.channelMiB, "MiB through the channel")->capture_default_str();
  app.add_option("--cost-iterations", f.costIterations, "Runs per fixed-cost item")
      ->capture_default_str();
  app.add_option("--seed", f.seed, "Generator seed")->capture_default_str();
  app.add_option("--workdir", f.workdir, "Folder for the federations (default: a temp folder)");
  app.add_flag("--keep", f.keep, "Keep the federations' folders");
  app.add_option("--out", f.out, "Also write the markdown report to this file");
  CLI11_PARSE(app, argc, argv);
  std::string cmd = "trialmesh-bench-federation";
  for (int i = 1; i < argc; ++i) cmd += std::string(" ") + argv[i];
  f.commandLine = cmd;
  return trialmesh::bench::run(std::move(f));
}
