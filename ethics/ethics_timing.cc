// Not a test: measures the audit log and approval checks (BENCHMARKS.md, "Ethics and audit").
// Usage: tm_ethics_timing [scratch-dir] [entries=1000000] [reps=5]
// Prints the median of `reps` runs for each measurement. The scratch dir must be on the disk
// whose fsync cost you want to measure.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "ethics/approval.h"
#include "ethics/audit_log.h"
#include "ethics/merkle.h"

using namespace trialmesh;
using namespace trialmesh::ethics;
using Clock = std::chrono::steady_clock;

namespace {

double secondsSince(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// Median over `reps` runs of fn(), which returns one measurement.
double median(int reps, const std::function<double()>& fn) {
  std::vector<double> v;
  for (int i = 0; i < reps; ++i) v.push_back(fn());
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

QueryEvent sampleQuery(const crypto::Identity& id, uint64_t i) {
  QueryEvent q;
  q.coordinator = id.pub;
  q.study = "LUNG-7";
  std::memcpy(q.queryHash.data(), &i, sizeof i);
  q.allowed = true;
  q.reason = "approval LUNG-7 v3 (id 1a2b3c4d…)";
  return q;
}

int die(const Status& s) {
  std::fprintf(stderr, "%s\n", s.toString().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string dir = argc > 1 ? argv[1] : "/tmp/tm_ethics_timing";
  const uint64_t kN = argc > 2 ? std::stoull(argv[2]) : 1'000'000;
  const int reps = argc > 3 ? std::stoi(argv[3]) : 5;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const crypto::Identity id = crypto::generateIdentity();
  std::printf("median of %d runs each\n", reps);

  // ---- Durable appends: one appender, then N concurrent appenders sharing fsyncs ----
  {
    auto log = AuditLog::open(dir + "/sync", id);
    if (!log.isOk()) return die(log.status());
    uint64_t seq = 0;
    const int kAppends = 300;
    const double us = median(reps, [&] {
      auto t = Clock::now();
      for (int i = 0; i < kAppends; ++i)
        (void)(*log)->append(EntryKind::kQuery, sampleQuery(id, seq++));
      return 1e6 * secondsSince(t) / kAppends;
    });
    std::printf("durable append, 1 appender: %.1f us each (%.0f appends/s)\n", us, 1e6 / us);
    for (int threads : {4, 16}) {
      const int each = 1200 / threads;
      const double rate = median(reps, [&] {
        std::vector<std::thread> ts;
        auto t = Clock::now();
        for (int k = 0; k < threads; ++k) {
          ts.emplace_back([&, k] {
            for (int i = 0; i < each; ++i) {
              if (!(*log)->append(EntryKind::kQuery, sampleQuery(id, 1'000'000 + k)).isOk()) {
                std::abort();
              }
            }
          });
        }
        for (auto& th : ts) th.join();
        return threads * each / secondsSince(t);
      });
      std::printf("durable append, %d concurrent appenders: %.0f appends/s in total\n", threads,
                  rate);
    }
  }

  // ---- Per query on the site: approval check + query entry (deferred) + result entry (synced)
  // ----
  {
    const crypto::Identity committee = crypto::generateIdentity();
    Approval a;
    a.study = "LUNG-7";
    a.protocolVersion = 3;
    a.leadCommittee = {"Regional REC", committee.pub};
    a.sites = {"site-a", "site-b", "site-c"};
    a.coordinators = {id.pub};
    a.variables = {"age", "arm", "bmi", "event", "sex", "time"};
    a.analyses = {"count", "mean"};
    a.minCellSize = 5;
    a.validFrom = {2020, 1, 1};
    a.validUntil = {2099, 1, 1};
    auto sa = signApproval(a, committee);
    if (!sa.isOk()) return die(sa.status());
    SitePolicy policy;
    policy.site = "site-a";
    policy.recognisedCommittees = {committee.pub};
    ApprovalRegistry registry(policy);
    if (Status s = registry.addApproval(*sa); !s.isOk()) return die(s);
    QueryUse use;
    use.site = "site-a";
    use.coordinator = id.pub;
    use.study = "LUNG-7";
    use.variables = {"age", "arm"};
    use.analyses = {"count", "mean"};
    use.today = {2026, 6, 1};
    auto log = AuditLog::open(dir + "/perquery", id);
    if (!log.isOk()) return die(log.status());
    const int kQueries = 300;
    uint64_t seq = 0;
    const double checkUs = median(reps, [&] {
      auto t = Clock::now();
      for (int i = 0; i < 10'000; ++i) {
        if (!registry.check(use).isOk()) std::abort();
      }
      return 1e6 * secondsSince(t) / 10'000;
    });
    const double perQueryUs = median(reps, [&] {
      auto t = Clock::now();
      for (int i = 0; i < kQueries; ++i) {
        auto grant = registry.check(use);
        if (!grant.isOk()) std::abort();
        (void)(*log)->append(EntryKind::kQuery, sampleQuery(id, seq), Durability::kDeferred);
        ResultReleasedEvent r;
        r.coordinator = id.pub;
        r.study = "LUNG-7";
        r.cells = 4;
        if (!(*log)->append(EntryKind::kResultReleased, r).isOk()) std::abort();
        ++seq;
      }
      return 1e6 * secondsSince(t) / kQueries;
    });
    const double bothSyncedUs = median(reps, [&] {
      auto t = Clock::now();
      for (int i = 0; i < kQueries; ++i) {
        if (!registry.check(use).isOk()) std::abort();
        (void)(*log)->append(EntryKind::kQuery, sampleQuery(id, seq));
        ResultReleasedEvent r;
        r.coordinator = id.pub;
        r.study = "LUNG-7";
        if (!(*log)->append(EntryKind::kResultReleased, r).isOk()) std::abort();
        ++seq;
      }
      return 1e6 * secondsSince(t) / kQueries;
    });
    std::printf("approval check alone: %.2f us\n", checkUs);
    std::printf("per query (check + decision entry + result entry, one fsync): %.1f us\n",
                perQueryUs);
    std::printf("per query if both entries were fsynced separately: %.1f us\n", bothSyncedUs);
  }

  // ---- A log of kN entries: build, open, verify, proofs ----
  {
    AuditLogOptions opts;
    opts.sync = false;
    auto log = AuditLog::open(dir + "/big", id, opts);
    if (!log.isOk()) return die(log.status());
    auto t = Clock::now();
    for (uint64_t i = 0; i < kN; ++i) {
      if (!(*log)->append(EntryKind::kQuery, sampleQuery(id, i), Durability::kDeferred).isOk())
        return 1;
    }
    if (Status s = (*log)->flush(); !s.isOk()) return die(s);
    std::printf("write %llu entries (no per-entry fsync; CPU + RocksDB): %.2f s\n",
                static_cast<unsigned long long>(kN), secondsSince(t));
  }
  // Open with the start-up check of every entry (the node's default since issue #12) and
  // without it (readers), to show what the check costs.
  const double openMs = median(reps, [&] {
    auto t = Clock::now();
    auto log = AuditLog::open(dir + "/big", id);
    if (!log) std::abort();
    return secondsSince(t) * 1e3;
  });
  std::printf("open a %llu-entry log, checking every entry: %.1f ms\n",
              static_cast<unsigned long long>(kN), openMs);
  const double openFastMs = median(reps, [&] {
    auto t = Clock::now();
    AuditLogOptions unchecked;
    unchecked.checkEntriesOnOpen = false;
    auto log = AuditLog::open(dir + "/big", id, unchecked);
    if (!log) std::abort();
    return secondsSince(t) * 1e3;
  });
  std::printf("open a %llu-entry log, last entry only: %.1f ms\n",
              static_cast<unsigned long long>(kN), openFastMs);
  auto log = AuditLog::open(dir + "/big", id).value();
  const SignedTreeHead sth = log->signedTreeHead();
  std::vector<StoredEntry> entries;
  const double readS = median(reps, [&] {
    auto t = Clock::now();
    entries = log->readRange(0, kN).value();
    return secondsSince(t);
  });
  std::printf("read all %llu stored entries: %.2f s\n", static_cast<unsigned long long>(kN), readS);
  const double verifyS = median(reps, [&] {
    auto t = Clock::now();
    if (!verifyLog(entries, sth, id.pub).isOk()) std::abort();
    return secondsSince(t);
  });
  std::printf("verifyLog over %llu entries: %.2f s\n", static_cast<unsigned long long>(kN),
              verifyS);

  std::mt19937_64 rng(1);
  constexpr int kProofs = 2000;
  std::vector<uint64_t> idx(kProofs);
  for (auto& i : idx) i = rng() % kN;
  std::vector<std::vector<Hash>> proofs(kProofs);
  const double genUs = median(reps, [&] {
    auto t = Clock::now();
    for (int i = 0; i < kProofs; ++i) proofs[i] = log->inclusionProof(idx[i], kN).value();
    return 1e6 * secondsSince(t) / kProofs;
  });
  const double verUs = median(reps, [&] {
    auto t = Clock::now();
    for (int i = 0; i < kProofs; ++i) {
      const Hash leaf = leafHash({reinterpret_cast<const uint8_t*>(entries[idx[i]].bytes.data()),
                                  entries[idx[i]].bytes.size()});
      if (!verifyInclusion(idx[i], kN, leaf, proofs[i], sth.root).isOk()) std::abort();
    }
    return 1e6 * secondsSince(t) / kProofs;
  });
  std::printf(
      "inclusion proof at %llu, from the stored log: generate %.1f us, verify %.1f us "
      "(leaf hash included)\n",
      static_cast<unsigned long long>(kN), genUs, verUs);
  std::vector<uint64_t> sizes(kProofs);
  for (auto& m : sizes) m = 1 + rng() % (kN - 1);
  std::vector<Hash> roots(kProofs);
  MerkleTree tree;
  for (const auto& e : entries)
    tree.append(leafHash({reinterpret_cast<const uint8_t*>(e.bytes.data()), e.bytes.size()}));
  for (int i = 0; i < kProofs; ++i) roots[i] = tree.rootAt(sizes[i]).value();
  const double cgenUs = median(reps, [&] {
    auto t = Clock::now();
    for (int i = 0; i < kProofs; ++i) proofs[i] = log->consistencyProof(sizes[i], kN).value();
    return 1e6 * secondsSince(t) / kProofs;
  });
  const double cverUs = median(reps, [&] {
    auto t = Clock::now();
    for (int i = 0; i < kProofs; ++i) {
      if (!verifyConsistency(sizes[i], kN, roots[i], sth.root, proofs[i]).isOk()) std::abort();
    }
    return 1e6 * secondsSince(t) / kProofs;
  });
  std::printf("consistency proof to %llu, from the stored log: generate %.1f us, verify %.1f us\n",
              static_cast<unsigned long long>(kN), cgenUs, cverUs);
  log.reset();
  std::filesystem::remove_all(dir);
  return 0;
}
