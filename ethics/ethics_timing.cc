// Not a test: measures the audit log's durable append rate and Merkle proof generation and
// verification at 1M entries. Usage: tm_ethics_timing [scratch-dir] [sync-appends]
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>

#include "ethics/audit_log.h"
#include "ethics/merkle.h"

using namespace trialmesh;
using namespace trialmesh::ethics;
using Clock = std::chrono::steady_clock;

static double secondsSince(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

int main(int argc, char** argv) {
  const std::string dir = argc > 1 ? argv[1] : "/tmp/tm_ethics_timing";
  const int syncAppends = argc > 2 ? std::stoi(argv[2]) : 2000;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const crypto::Identity id = crypto::generateIdentity();

  QueryEvent q;
  q.coordinator = id.pub;
  q.study = "LUNG-7";
  q.allowed = true;
  q.reason = "approval LUNG-7 v3";
  {
    auto log = AuditLog::open(dir + "/sync", id);
    if (!log.isOk()) return std::fprintf(stderr, "%s\n", log.status().toString().c_str()), 1;
    auto t = Clock::now();
    for (int i = 0; i < syncAppends; ++i) {
      q.queryHash[0] = static_cast<uint8_t>(i);
      if (!(*log)->append(EntryKind::kQuery, q).isOk()) return 1;
    }
    const double s = secondsSince(t);
    std::printf("durable appends (sync=true): %d in %.3f s = %.0f/s, %.1f us each\n", syncAppends,
                s, syncAppends / s, 1e6 * s / syncAppends);
  }

  constexpr uint64_t kN = 1'000'000;
  MerkleTree tree;
  auto t = Clock::now();
  std::string entry(120, 'x');
  for (uint64_t i = 0; i < kN; ++i) {
    std::memcpy(entry.data(), &i, sizeof i);
    tree.append(leafHash({reinterpret_cast<const uint8_t*>(entry.data()), entry.size()}));
  }
  std::printf("build in-memory tree of 1M leaves (leaf hashing included): %.3f s\n",
              secondsSince(t));
  t = Clock::now();
  const Hash root = tree.root();
  std::printf("root at 1M: %.1f us\n", 1e6 * secondsSince(t));

  std::mt19937_64 rng(1);
  constexpr int kProofs = 10000;
  std::vector<std::pair<uint64_t, std::vector<Hash>>> proofs;
  t = Clock::now();
  for (int i = 0; i < kProofs; ++i) {
    const uint64_t idx = rng() % kN;
    proofs.emplace_back(idx, tree.inclusionProof(idx, kN).value());
  }
  std::printf("inclusion proof generation at 1M: %.2f us each\n", 1e6 * secondsSince(t) / kProofs);
  t = Clock::now();
  for (const auto& [idx, proof] : proofs) {
    if (!verifyInclusion(idx, kN, tree.leafHashAt(idx), proof, root).isOk()) return 1;
  }
  std::printf("inclusion proof verification at 1M: %.2f us each\n",
              1e6 * secondsSince(t) / kProofs);

  std::vector<std::tuple<uint64_t, Hash, std::vector<Hash>>> cproofs;
  t = Clock::now();
  for (int i = 0; i < kProofs; ++i) {
    const uint64_t m = 1 + rng() % (kN - 1);
    cproofs.emplace_back(m, Hash{}, tree.consistencyProof(m, kN).value());
  }
  std::printf("consistency proof generation at 1M: %.2f us each\n",
              1e6 * secondsSince(t) / kProofs);
  for (auto& [m, r, p] : cproofs) r = tree.rootAt(m).value();
  t = Clock::now();
  for (const auto& [m, r, p] : cproofs) {
    if (!verifyConsistency(m, kN, r, root, p).isOk()) return 1;
  }
  std::printf("consistency proof verification at 1M: %.2f us each\n",
              1e6 * secondsSince(t) / kProofs);

  {
    AuditLogOptions opts;
    opts.sync = false;
    auto log = AuditLog::open(dir + "/big", id, opts);
    if (!log.isOk()) return 1;
    t = Clock::now();
    for (uint64_t i = 0; i < kN; ++i) {
      if (!(*log)->append(EntryKind::kQuery, q).isOk()) return 1;
    }
    std::printf("1M appends without sync (CPU cost of encode+hash+root+put): %.3f s\n",
                secondsSince(t));
    const auto sth = (*log)->signedTreeHead();
    t = Clock::now();
    auto entries = (*log)->readRange(0, kN).value();
    std::printf("read 1M stored entries: %.3f s\n", secondsSince(t));
    t = Clock::now();
    Status s = verifyLog(entries, sth, id.pub);
    std::printf("verifyLog over 1M entries: %.3f s (%s)\n", secondsSince(t), s.toString().c_str());
  }
  t = Clock::now();
  {
    AuditLogOptions opts;
    opts.sync = false;
    auto log = AuditLog::open(dir + "/big", id, opts);
    if (!log.isOk()) return 1;
  }
  std::printf("reopen (full re-check) of a 1M-entry log: %.3f s\n", secondsSince(t));
  std::filesystem::remove_all(dir);
  return 0;
}
