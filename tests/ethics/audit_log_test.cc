// Audit log: encoding, durability across reopen, tamper detection through direct RocksDB edits,
// signed tree heads, and fork detection between peers.
#include "ethics/audit_log.h"

#include <gtest/gtest.h>

#include <rocksdb/db.h>
#include <set>
#include <thread>

#include <filesystem>

namespace trialmesh::ethics {
namespace {

class AuditLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/audit_" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::remove_all(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  AuditLogOptions fakeClock() {
    AuditLogOptions o;
    o.clock = [this] { return now_ += 1000; };
    return o;
  }

  QueryEvent query(int i, bool allowed) {
    QueryEvent q;
    q.coordinator = coordinator_.pub;
    q.study = "LUNG-7";
    q.queryHash[0] = static_cast<uint8_t>(i);
    q.allowed = allowed;
    q.reason = allowed ? "approval LUNG-7 v3" : "approval LUNG-7 v3 expired on 2026-10-01";
    return q;
  }

  // Appends n query entries, closes, and returns the tree head signed at the end.
  SignedTreeHead writeLog(int n) {
    auto log = AuditLog::open(dir_, node_, fakeClock());
    EXPECT_TRUE(log.isOk()) << log.status().toString();
    for (int i = 0; i < n; ++i)
      EXPECT_TRUE((*log)->append(EntryKind::kQuery, query(i, i % 2)).isOk());
    return (*log)->signedTreeHead();
  }

  // Direct access to the store, as an attacker with disk access would have.
  template <typename Fn>
  void editStore(Fn fn) {
    rocksdb::DBOptions options;
    std::vector<rocksdb::ColumnFamilyDescriptor> families = {
        {rocksdb::kDefaultColumnFamilyName, {}}, {"audit_entries", {}}};
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* db = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(options, dir_, families, &handles, &db).ok());
    fn(db, handles[1]);
    for (auto* h : handles) ASSERT_TRUE(db->DestroyColumnFamilyHandle(h).ok());
    ASSERT_TRUE(db->Close().ok());
    delete db;
  }
  static std::string key(uint64_t i) {
    std::string k(8, '\0');
    for (int b = 7; b >= 0; --b, i >>= 8) k[static_cast<size_t>(b)] = static_cast<char>(i & 0xff);
    return k;
  }

  Status verifyStored(const SignedTreeHead& sth) {
    auto entries = AuditLog::readAllUnchecked(dir_);
    if (!entries.isOk()) return entries.status();
    return verifyLog(*entries, sth, node_.pub);
  }

  std::string dir_;
  int64_t now_ = 1'780'000'000'000;
  crypto::Identity node_ = crypto::generateIdentity();
  crypto::Identity coordinator_ = crypto::generateIdentity();
};

TEST_F(AuditLogTest, EveryKindRoundTripsThroughItsCanonicalBytes) {
  const crypto::PublicKey k = coordinator_.pub;
  std::vector<Entry> entries = {
      {0, 1, EntryKind::kApprovalReceived, ApprovalEvent{"LUNG-7", 3, Hash{1}, "from lead"}},
      {1, 2, EntryKind::kApprovalRevoked, ApprovalEvent{"LUNG-7", 3, Hash{2}, "misconduct"}},
      {2, 3, EntryKind::kQuery, query(7, false)},
      {3, 4, EntryKind::kResultReleased, ResultReleasedEvent{k, "LUNG-7", Hash{3}, 40, 3}},
      {4, 5, EntryKind::kConfigChange, ConfigChangeEvent{"min_cell_size", "5", "10"}},
      {5, 6, EntryKind::kKeyChange, KeyChangeEvent{"node", k, node_.pub}},
      {6, 7, EntryKind::kNodeStart, NodeEvent{"trialmesh 0.1.0"}},
      {7, 8, EntryKind::kNodeStop, NodeEvent{"SIGTERM"}},
      {8, 9, EntryKind::kAlert, AlertEvent{k, "fork detected"}},
      {9, 10, EntryKind::kPrivacyBudgetCharged,
       BudgetChargeEvent{k, "LUNG-7", 2, Hash{4}, 0.1, 0.30000000000000004, 1.5, true, ""}},
      {10, 11, EntryKind::kPrivacyBudgetCharged,
       BudgetChargeEvent{k, "LUNG-7", 2, Hash{5}, 0.5, 0, 1.5, false, "budget exhausted"}},
      {11, 12, EntryKind::kRefusal,
       RefusalEvent{"bad-signature", "coordinator", "127.0.0.1:4242",
                    "PermissionDenied: query signature does not verify", 0}},
      {12, 13, EntryKind::kRefusal,
       RefusalEvent{"replay", "several", "several", "1234 further refusals", 1234}},
  };
  for (const Entry& e : entries) {
    auto bytes = encodeEntry(e);
    ASSERT_TRUE(bytes.isOk());
    auto back = decodeEntry({reinterpret_cast<const uint8_t*>(bytes->data()), bytes->size()});
    ASSERT_TRUE(back.isOk()) << back.status().toString();
    EXPECT_EQ(*encodeEntry(*back), *bytes);
    EXPECT_EQ(describeEntry(*back), describeEntry(e));
    // Truncation anywhere is refused.
    auto cut = decodeEntry({reinterpret_cast<const uint8_t*>(bytes->data()), bytes->size() - 1});
    EXPECT_EQ(cut.status().code(), StatusCode::kCorruption);
  }
  // Header layout: version 2, sequence u64 BE, timestamp i64 BE, kind.
  const std::string b = *encodeEntry(entries[6]);
  EXPECT_EQ(b[0], 2);
  EXPECT_EQ(b[8], 6);    // last byte of the sequence
  EXPECT_EQ(b[16], 7);   // last byte of the timestamp
  EXPECT_EQ(b[17], 10);  // kind node-start
  // Charges keep their exact doubles (IEEE bits), and say so in the one-line form.
  const std::string chargeBytes = *encodeEntry(entries[9]);
  auto charge =
      decodeEntry({reinterpret_cast<const uint8_t*>(chargeBytes.data()), chargeBytes.size()});
  ASSERT_TRUE(charge.isOk());
  EXPECT_EQ(std::get<BudgetChargeEvent>(charge->body).spent, 0.30000000000000004);
  EXPECT_NE(describeEntry(entries[9]).find("privacy-budget-charged study=LUNG-7 v2"),
            std::string::npos)
      << describeEntry(entries[9]);
  EXPECT_NE(
      describeEntry(entries[9]).find("charged: epsilon 0.1, spent 0.30000000000000004 of 1.5"),
      std::string::npos)
      << describeEntry(entries[9]);
  // A refusal before the ethics check: kind 16 (appended, never renumbered), its class, peer
  // and text in the one-line form; a summary says how many it stands for.
  const std::string refusalBytes = *encodeEntry(entries[11]);
  EXPECT_EQ(refusalBytes[17], 16);
  EXPECT_EQ(describeEntry(entries[11]),
            "#11 1970-01-01T00:00:00.012Z refusal class=bad-signature peer=coordinator "
            "remote=127.0.0.1:4242: PermissionDenied: query signature does not verify");
  EXPECT_NE(describeEntry(entries[12]).find("summarised=1234: 1234 further refusals"),
            std::string::npos)
      << describeEntry(entries[12]);
  EXPECT_EQ(
      std::get<RefusalEvent>(
          decodeEntry({reinterpret_cast<const uint8_t*>(refusalBytes.data()), refusalBytes.size()})
              ->body),
      std::get<RefusalEvent>(entries[11].body));
  Entry wrong{0, 0, EntryKind::kQuery, NodeEvent{"x"}};
  EXPECT_EQ(encodeEntry(wrong).status().code(), StatusCode::kInvalidArgument);
}

// A yes/no byte other than 0 or 1 (a query's decision, a budget charge's outcome) is Corruption
// naming the field and both meanings, never read as "yes".
TEST_F(AuditLogTest, DecisionAndChargedBytesMustBeZeroOrOne) {
  const crypto::PublicKey k = coordinator_.pub;
  // Header 18 bytes, then key 32, study (u32 length + 6 bytes), and the fields before the flag.
  const size_t studyEnd = 18 + 32 + 4 + 6;
  struct Case {
    Entry entry;
    size_t flagAt;
    const char* message;
  };
  const Case cases[] = {
      {{0, 1, EntryKind::kQuery, query(1, true)},
       studyEnd + 32,
       "audit entry: decision byte 2 is neither 0 (refused) nor 1 (allowed)"},
      {{1, 2, EntryKind::kPrivacyBudgetCharged,
        BudgetChargeEvent{k, "LUNG-7", 2, Hash{4}, 0.5, 1.0, 1.5, true, ""}},
       studyEnd + 4 + 32 + 3 * 8,
       "audit entry: charged byte 2 is neither 0 (refused) nor 1 (charged)"},
  };
  for (const Case& c : cases) {
    std::string bytes = *encodeEntry(c.entry);
    ASSERT_EQ(bytes[c.flagAt], 1) << c.message;  // the offset points at the flag
    bytes[c.flagAt] = 2;
    auto bad = decodeEntry({reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()});
    ASSERT_FALSE(bad.isOk());
    EXPECT_EQ(bad.status().code(), StatusCode::kCorruption);
    EXPECT_EQ(bad.status().message(), c.message);
  }
}

TEST_F(AuditLogTest, AppendsSurviveReopenWithTheSameRoot) {
  Hash root;
  {
    auto log = AuditLog::open(dir_, node_, fakeClock());
    ASSERT_TRUE(log.isOk());
    auto e = (*log)->append(EntryKind::kNodeStart, NodeEvent{"0.1.0"});
    ASSERT_TRUE(e.isOk());
    EXPECT_EQ(e->sequence, 0u);
    for (int i = 0; i < 20; ++i)
      ASSERT_EQ((*log)->append(EntryKind::kQuery, query(i, true))->sequence, i + 1u);
    root = (*log)->root();
  }
  auto log = AuditLog::open(dir_, node_, fakeClock());
  ASSERT_TRUE(log.isOk()) << log.status().toString();
  EXPECT_EQ((*log)->size(), 21u);
  EXPECT_EQ((*log)->root(), root);
  auto entries = (*log)->readRange(0, 21);
  ASSERT_TRUE(entries.isOk());
  MerkleTree naive;
  for (const auto& e : *entries)
    naive.append(leafHash({reinterpret_cast<const uint8_t*>(e.bytes.data()), e.bytes.size()}));
  EXPECT_EQ(naive.root(), root);
  auto first = decodeEntry(
      {reinterpret_cast<const uint8_t*>((*entries)[0].bytes.data()), (*entries)[0].bytes.size()});
  EXPECT_EQ(std::get<NodeEvent>(first->body).detail, "0.1.0");
  EXPECT_EQ(first->timestampMs, 1'780'000'001'000);
  // Appending continues the sequence.
  EXPECT_EQ((*log)->append(EntryKind::kNodeStop, NodeEvent{"test"})->sequence, 21u);
  EXPECT_EQ((*log)->readRange(5, 30).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(AuditLogTest, ProofsFromTheLogVerifyAgainstItsSignedTreeHead) {
  auto log = AuditLog::open(dir_, node_, fakeClock());
  ASSERT_TRUE(log.isOk());
  for (int i = 0; i < 37; ++i)
    ASSERT_TRUE((*log)->append(EntryKind::kQuery, query(i, true)).isOk());
  const SignedTreeHead old = (*log)->signedTreeHead();
  for (int i = 37; i < 100; ++i)
    ASSERT_TRUE((*log)->append(EntryKind::kQuery, query(i, true)).isOk());
  const SignedTreeHead sth = (*log)->signedTreeHead();
  ASSERT_TRUE(verifyTreeHeadSignature(sth).isOk());
  auto entries = (*log)->readRange(0, 100).value();
  for (uint64_t i : {0u, 36u, 63u, 99u}) {
    const auto& b = entries[i].bytes;
    auto proof = (*log)->inclusionProof(i, 100);
    ASSERT_TRUE(proof.isOk());
    EXPECT_TRUE(verifyInclusion(i, 100,
                                leafHash({reinterpret_cast<const uint8_t*>(b.data()), b.size()}),
                                *proof, sth.root)
                    .isOk());
  }
  auto consistency = (*log)->consistencyProof(37, 100);
  ASSERT_TRUE(consistency.isOk());
  EXPECT_TRUE(checkPeerHead(old, sth, *consistency).isOk());
  EXPECT_TRUE(verifyLog(entries, sth, node_.pub, &old).isOk());
}

TEST_F(AuditLogTest, UntouchedStoreVerifies) {
  const SignedTreeHead sth = writeLog(10);
  EXPECT_TRUE(verifyStored(sth).isOk()) << verifyStored(sth).toString();
}

TEST_F(AuditLogTest, FlippedByteInStoredEntryIsNamed) {
  const SignedTreeHead sth = writeLog(10);
  editStore([](rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf) {
    std::string v;
    ASSERT_TRUE(db->Get({}, cf, key(4), &v).ok());
    v[v.size() - 3] ^= 0x01;  // a byte of the reason text
    ASSERT_TRUE(db->Put({}, cf, key(4), v).ok());
  });
  Status s = verifyStored(sth);
  EXPECT_EQ(s.code(), StatusCode::kCorruption);
  EXPECT_EQ(s.message().rfind("entry 4: ", 0), 0u) << s.message();
}

TEST_F(AuditLogTest, NodeRefusesToReopenALogWhoseLastEntryWasModified) {
  // Opening is O(log n): it checks the last entry against the stored tree nodes (a modified
  // middle entry is `audit verify`'s job, above).
  writeLog(10);
  editStore([](rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf) {
    std::string v;
    ASSERT_TRUE(db->Get({}, cf, key(9), &v).ok());
    v[v.size() - 3] ^= 0x01;
    ASSERT_TRUE(db->Put({}, cf, key(9), v).ok());
  });
  auto reopened = AuditLog::open(dir_, node_);
  ASSERT_FALSE(reopened.isOk());
  EXPECT_NE(reopened.status().message().find("entry 9: does not match the stored tree"),
            std::string::npos)
      << reopened.status().message();
}

TEST_F(AuditLogTest, ReopenedLogServesTheSameProofsAsAnInMemoryTree) {
  // Independent reference: an in-memory MerkleTree over the stored entry bytes.
  writeLog(37);
  auto entries = AuditLog::readAllUnchecked(dir_).value();
  MerkleTree ref;
  for (const auto& e : entries)
    ref.append(leafHash({reinterpret_cast<const uint8_t*>(e.bytes.data()), e.bytes.size()}));
  auto log = AuditLog::open(dir_, node_, fakeClock()).value();
  ASSERT_EQ(log->size(), 37u);
  EXPECT_EQ(log->root(), ref.root());
  for (uint64_t size : {1u, 5u, 16u, 37u}) {
    for (uint64_t i = 0; i < size; i += 3)
      EXPECT_EQ(log->inclusionProof(i, size).value(), ref.inclusionProof(i, size).value());
    for (uint64_t m = 0; m <= size; m += 4)
      EXPECT_EQ(log->consistencyProof(m, size).value(), ref.consistencyProof(m, size).value());
  }
  // Appending after a reopen continues the same tree.
  ASSERT_TRUE(log->append(EntryKind::kQuery, query(99, true)).isOk());
  auto all = log->readRange(0, 38).value();
  ref.append(
      leafHash({reinterpret_cast<const uint8_t*>(all[37].bytes.data()), all[37].bytes.size()}));
  EXPECT_EQ(log->root(), ref.root());
  EXPECT_EQ(all[37].rootAfter, ref.root());
}

TEST_F(AuditLogTest, ConcurrentAppendersAreAllDurableAndDistinct) {
  auto log = AuditLog::open(dir_, node_).value();
  constexpr int kThreads = 4;
  constexpr int kEach = 25;
  std::vector<std::thread> threads;
  std::vector<std::vector<uint64_t>> seqs(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        auto e = log->append(EntryKind::kQuery, query(t * 100 + i, true));
        ASSERT_TRUE(e.isOk()) << e.status().toString();
        // Returned only once durable: the visible (durable) size already covers it.
        EXPECT_GT(log->size(), e->sequence);
        seqs[static_cast<size_t>(t)].push_back(e->sequence);
      }
    });
  }
  for (auto& th : threads) th.join();
  std::set<uint64_t> all;
  for (const auto& v : seqs) all.insert(v.begin(), v.end());
  EXPECT_EQ(all.size(), static_cast<size_t>(kThreads * kEach));
  EXPECT_EQ(*all.rbegin(), static_cast<uint64_t>(kThreads * kEach - 1));
  const SignedTreeHead sth = log->signedTreeHead();
  EXPECT_EQ(sth.treeSize, static_cast<uint64_t>(kThreads * kEach));
  log.reset();
  EXPECT_TRUE(verifyStored(sth).isOk()) << verifyStored(sth).toString();
}

TEST_F(AuditLogTest, DeferredEntriesAreInvisibleUntilFlushed) {
  auto log = AuditLog::open(dir_, node_).value();
  ASSERT_TRUE(log->append(EntryKind::kQuery, query(1, true)).isOk());
  auto deferred = log->append(EntryKind::kQuery, query(2, true), Durability::kDeferred);
  ASSERT_TRUE(deferred.isOk());
  EXPECT_EQ(deferred->sequence, 1u);
  EXPECT_EQ(log->size(), 1u);  // a tree head never covers a not-yet-durable entry
  EXPECT_EQ(log->signedTreeHead().treeSize, 1u);
  ASSERT_TRUE(log->flush().isOk());
  EXPECT_EQ(log->size(), 2u);
}

// The site appends on its event loop without waiting (kDeferred) and waits for the fsync on
// another thread with syncThrough; appenders on several threads share fsyncs that way.
TEST_F(AuditLogTest, SyncThroughMakesDeferredEntriesDurableFromAnotherThread) {
  auto log = AuditLog::open(dir_, node_).value();
  auto first = log->append(EntryKind::kQuery, query(1, true), Durability::kDeferred);
  auto second = log->append(EntryKind::kQuery, query(2, true), Durability::kDeferred);
  ASSERT_TRUE(first.isOk() && second.isOk());
  EXPECT_EQ(log->size(), 0u);
  Status synced;
  std::thread waiter([&] { synced = log->syncThrough(first->sequence + 1); });
  waiter.join();
  ASSERT_TRUE(synced.isOk()) << synced.toString();
  // One fsync covers everything written when it started, so the second entry is durable too.
  EXPECT_EQ(log->size(), 2u);
  EXPECT_TRUE(log->syncThrough(2).isOk());  // nothing pending: returns at once
  const Status beyond = log->syncThrough(3);
  EXPECT_EQ(beyond.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(beyond.message().find("only 2 entries were written"), std::string::npos)
      << beyond.toString();
}

TEST_F(AuditLogTest, FlippedByteInStoredHeaderIsNamed) {
  const SignedTreeHead sth = writeLog(10);
  editStore([](rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf) {
    std::string v;
    ASSERT_TRUE(db->Get({}, cf, key(7), &v).ok());
    v[32 + 12] ^= 0x40;  // inside the timestamp
    ASSERT_TRUE(db->Put({}, cf, key(7), v).ok());
  });
  Status s = verifyStored(sth);
  EXPECT_EQ(s.message().rfind("entry 7: ", 0), 0u) << s.message();
}

TEST_F(AuditLogTest, DeletedEntryIsNamed) {
  const SignedTreeHead sth = writeLog(10);
  editStore([](rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf) {
    ASSERT_TRUE(db->Delete({}, cf, key(3)).ok());
  });
  Status s = verifyStored(sth);
  EXPECT_EQ(s.message().rfind("entry 3: records sequence number 4", 0), 0u) << s.message();
}

TEST_F(AuditLogTest, DeletedLastEntryIsCaughtByTheTreeHead) {
  const SignedTreeHead sth = writeLog(10);
  editStore([](rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf) {
    ASSERT_TRUE(db->Delete({}, cf, key(9)).ok());
  });
  Status s = verifyStored(sth);
  EXPECT_EQ(s.message().rfind("entry 9: missing", 0), 0u) << s.message();
}

TEST_F(AuditLogTest, SwappedEntriesAreNamed) {
  const SignedTreeHead sth = writeLog(10);
  editStore([](rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf) {
    std::string a, b;
    ASSERT_TRUE(db->Get({}, cf, key(2), &a).ok());
    ASSERT_TRUE(db->Get({}, cf, key(6), &b).ok());
    ASSERT_TRUE(db->Put({}, cf, key(2), b).ok());
    ASSERT_TRUE(db->Put({}, cf, key(6), a).ok());
  });
  Status s = verifyStored(sth);
  EXPECT_EQ(s.message().rfind("entry 2: records sequence number 6", 0), 0u) << s.message();
}

TEST_F(AuditLogTest, ConsistentRewriteIsCaughtByTheSignedRoot) {
  const SignedTreeHead sth = writeLog(10);
  // An attacker rewrites entry 5 and recomputes every stored root after it.
  auto entries = AuditLog::readAllUnchecked(dir_).value();
  auto e5 = decodeEntry({reinterpret_cast<const uint8_t*>(entries[5].bytes.data()),
                         entries[5].bytes.size()})
                .value();
  std::get<QueryEvent>(e5.body).allowed = !std::get<QueryEvent>(e5.body).allowed;
  entries[5].bytes = encodeEntry(e5).value();
  MerkleTree t;
  for (auto& e : entries) {
    t.append(leafHash({reinterpret_cast<const uint8_t*>(e.bytes.data()), e.bytes.size()}));
    e.rootAfter = t.root();
  }
  Status s = verifyLog(entries, sth, node_.pub);
  EXPECT_EQ(s.code(), StatusCode::kCorruption);
  EXPECT_NE(s.message().find("but the signed tree head"), std::string::npos) << s.message();
}

TEST_F(AuditLogTest, ForgedOrForeignTreeHeadIsRefused) {
  SignedTreeHead sth = writeLog(5);
  auto entries = AuditLog::readAllUnchecked(dir_).value();
  SignedTreeHead forged = sth;
  forged.treeSize = 4;  // claims a shorter log without re-signing
  Status s = verifyLog(entries, forged, node_.pub);
  EXPECT_EQ(s.code(), StatusCode::kPermissionDenied);
  EXPECT_NE(s.message().find("invalid signature"), std::string::npos) << s.message();
  // Signed by someone else's key, claiming to be this node.
  const crypto::Identity mallory = crypto::generateIdentity();
  SignedTreeHead other = signTreeHead(mallory, sth.treeSize, sth.timestampMs, sth.root);
  EXPECT_EQ(verifyLog(entries, other, node_.pub).code(), StatusCode::kPermissionDenied);
  other.logKey = node_.pub;
  EXPECT_EQ(verifyLog(entries, other, node_.pub).code(), StatusCode::kPermissionDenied);
  // The wire form round-trips and is 82 + 64 bytes.
  const std::string wire = encodeTreeHead(sth);
  EXPECT_EQ(wire.size(), 146u);
  EXPECT_EQ(treeHeadBytes(sth).size(), 82u);
  auto back = decodeTreeHead({reinterpret_cast<const uint8_t*>(wire.data()), wire.size()});
  ASSERT_TRUE(back.isOk());
  EXPECT_TRUE(verifyTreeHeadSignature(*back).isOk());
  EXPECT_EQ(back->root, sth.root);
}

TEST_F(AuditLogTest, ForkBetweenLogsSharingAPrefixIsDetected) {
  // Two logs under the same node key share 12 entries, then diverge: what peers see if a node
  // shows one history to one peer and another history to another, or rewrites its history.
  const std::string dirA = dir_ + "/a", dirB = dir_ + "/b";
  std::filesystem::create_directories(dir_);
  auto a = AuditLog::open(dirA, node_, fakeClock()).value();
  auto b = AuditLog::open(dirB, node_, fakeClock()).value();
  for (int i = 0; i < 12; ++i) {
    ASSERT_TRUE(a->append(EntryKind::kQuery, query(i, true)).isOk());
    now_ -= 1000;  // same timestamps in both logs
    ASSERT_TRUE(b->append(EntryKind::kQuery, query(i, true)).isOk());
  }
  ASSERT_EQ(a->root(), b->root());
  SignedTreeHead seen;  // what a peer saw of a, after the divergence point
  for (int i = 12; i < 20; ++i) {
    ASSERT_TRUE(a->append(EntryKind::kQuery, query(i, true)).isOk());
    ASSERT_TRUE(b->append(EntryKind::kQuery, query(i + 100, false)).isOk());
    if (i == 15) seen = a->signedTreeHead();
  }
  ASSERT_EQ(seen.treeSize, 16u);
  // The honest continuation passes, the fork fails.
  EXPECT_TRUE(checkPeerHead(seen, a->signedTreeHead(), a->consistencyProof(16, 20).value()).isOk());
  const SignedTreeHead forked = b->signedTreeHead();
  Status s = checkPeerHead(seen, forked, b->consistencyProof(16, 20).value());
  EXPECT_EQ(s.code(), StatusCode::kCorruption);
  EXPECT_EQ(s.message().rfind("fork detected: peer " + node_.pub.toText(), 0), 0u) << s.message();
  // Even a proof made from a's honest tree cannot link seen to b's head.
  EXPECT_FALSE(checkPeerHead(seen, forked, a->consistencyProof(16, 20).value()).isOk());
  // Rollback: same key, smaller tree.
  Status rb = checkPeerHead(a->signedTreeHead(), seen, {});
  EXPECT_EQ(rb.code(), StatusCode::kCorruption);
  EXPECT_NE(rb.message().find("rolled back"), std::string::npos) << rb.message();
  // Same size, different root.
  Status same = checkPeerHead(a->signedTreeHead(), forked, {});
  EXPECT_EQ(same.message().rfind("fork detected", 0), 0u) << same.message();
  // A forged new head is refused before any comparison.
  SignedTreeHead tampered = a->signedTreeHead();
  tampered.root[0] ^= 1;
  EXPECT_EQ(checkPeerHead(seen, tampered, a->consistencyProof(16, 20).value()).code(),
            StatusCode::kPermissionDenied);
  // An ethics board holding `seen` catches b's history end to end, though b is self-consistent.
  auto entriesB = b->readRange(0, 20).value();
  EXPECT_TRUE(verifyLog(entriesB, forked, node_.pub).isOk());
  Status board = verifyLog(entriesB, forked, node_.pub, &seen);
  EXPECT_EQ(board.code(), StatusCode::kCorruption);
  EXPECT_NE(board.message().find("rewritten since then"), std::string::npos) << board.message();
}

}  // namespace
}  // namespace trialmesh::ethics

namespace trialmesh::ethics {
namespace {

QueryAuditFields auditFields(const std::string& id) {
  QueryAuditFields a;
  a.queryId = id;
  a.coordinatorName = "lead-coordinator";
  a.queryText = "km time=os_months event=death by arm";
  a.approvalStudy = "LUNG-7";
  a.approvalVersion = 3;
  a.approvalId[0] = 0xab;
  return a;
}

Result<Entry> decodeText(const std::string& bytes) {
  return decodeEntry({reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()});
}

// Issue 14: format 2 carries the query id, coordinator name, query text and approval on query,
// result-released and share-released entries, and they survive the round trip.
TEST(AuditEntryFormat2, QueryAndReleaseFieldsRoundTrip) {
  const crypto::Identity coordinator = crypto::generateIdentity();
  QueryEvent q{coordinator.pub, "LUNG-7", Hash{9}, true, "approval LUNG-7 v3", auditFields("0a1b")};
  ResultReleasedEvent r{coordinator.pub, "LUNG-7", Hash{9}, 12, 0, auditFields("0a1b")};
  for (const Entry& e :
       {Entry{0, 1, EntryKind::kQuery, q}, Entry{1, 2, EntryKind::kResultReleased, r},
        Entry{2, 3, EntryKind::kShareReleased, r}}) {
    auto bytes = encodeEntry(e);
    ASSERT_TRUE(bytes.isOk()) << bytes.status().toString();
    EXPECT_EQ((*bytes)[0], 2);
    auto back = decodeText(*bytes);
    ASSERT_TRUE(back.isOk()) << back.status().toString();
    EXPECT_EQ(back->formatVersion, 2);
    EXPECT_EQ(*encodeEntry(*back), *bytes);
    const QueryAuditFields& a = e.kind == EntryKind::kQuery
                                    ? std::get<QueryEvent>(back->body).audit
                                    : std::get<ResultReleasedEvent>(back->body).audit;
    EXPECT_EQ(a, auditFields("0a1b"));
    const std::string line = describeEntry(*back);
    EXPECT_NE(line.find("id=0a1b by=lead-coordinator approval=LUNG-7 v3 "
                        "text='km time=os_months event=death by arm'"),
              std::string::npos)
        << line;
    auto cut = decodeText(bytes->substr(0, bytes->size() - 1));
    EXPECT_EQ(cut.status().code(), StatusCode::kCorruption);
  }
  EXPECT_STREQ(entryKindName(EntryKind::kShareReleased), "share-released");
  Entry future{0, 1, EntryKind::kNodeStart, NodeEvent{"x"}, 3};
  EXPECT_EQ(encodeEntry(future).status().code(), StatusCode::kInvalidArgument);
  std::string bytes = *encodeEntry(Entry{0, 1, EntryKind::kNodeStart, NodeEvent{"x"}});
  bytes[0] = 3;
  auto unknown = decodeText(bytes);
  EXPECT_EQ(unknown.status().code(), StatusCode::kCorruption);
  EXPECT_NE(unknown.status().message().find("versions 1 and 2"), std::string::npos);
}

// A log written before issue 14 (format 1 entries, byte for byte as that build wrote them) still
// decodes, re-encodes to the same bytes (so its Merkle leaves are unchanged) and verifies.
TEST(AuditEntryFormat2, Format1EntriesStillDecodeAndVerify) {
  const crypto::Identity node = crypto::generateIdentity();
  const crypto::Identity coordinator = crypto::generateIdentity();
  // The layout of a format 1 query entry, written out field by field (docs/ethics.md).
  std::string v1;
  auto u64 = [&v1](uint64_t x) {
    for (int i = 7; i >= 0; --i) v1.push_back(static_cast<char>((x >> (8 * i)) & 0xff));
  };
  auto str = [&v1](const std::string& s) {
    const uint32_t n = static_cast<uint32_t>(s.size());
    for (int i = 3; i >= 0; --i) v1.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
    v1 += s;
  };
  v1.push_back(1);  // format version
  u64(0);           // sequence
  u64(1000);        // timestamp
  v1.push_back(6);  // kind query
  v1.append(reinterpret_cast<const char*>(coordinator.pub.bytes().data()), 32);
  str("LUNG-7");
  v1.append(32, '\x07');  // query hash
  v1.push_back(1);        // allowed
  str("approval LUNG-7 v1");
  auto old = decodeText(v1);
  ASSERT_TRUE(old.isOk()) << old.status().toString();
  EXPECT_EQ(old->formatVersion, 1);
  const auto& q = std::get<QueryEvent>(old->body);
  EXPECT_EQ(q.coordinator, coordinator.pub);
  EXPECT_EQ(q.reason, "approval LUNG-7 v1");
  EXPECT_EQ(q.audit, QueryAuditFields{});
  EXPECT_EQ(*encodeEntry(*old), v1);
  // Version 1 release entries decode too.
  Entry oldRelease{1, 2000, EntryKind::kResultReleased,
                   ResultReleasedEvent{coordinator.pub, "LUNG-7", Hash{7}, 4, 0}, 1};
  const std::string v1Release = *encodeEntry(oldRelease);
  EXPECT_EQ(v1Release[0], 1);
  // A log of an old entry followed by a new one verifies against its signed head.
  QueryEvent q2 = q;
  q2.audit = auditFields("ff00");
  const std::string v2 = *encodeEntry(Entry{2, 3000, EntryKind::kQuery, q2});
  const auto leaf = [](const std::string& b) {
    return leafHash({reinterpret_cast<const uint8_t*>(b.data()), b.size()});
  };
  const Hash root1 = leaf(v1);
  const Hash root2 = nodeHash(root1, leaf(v1Release));
  const Hash root3 = nodeHash(root2, leaf(v2));
  std::vector<StoredEntry> stored = {{root1, v1}, {root2, v1Release}, {root3, v2}};
  const SignedTreeHead head = signTreeHead(node, 3, 4000, root3);
  Status ok = verifyLog(stored, head, node.pub);
  EXPECT_TRUE(ok.isOk()) << ok.toString();
  stored[0].bytes[stored[0].bytes.size() - 1] ^= 1;  // tamper with the old entry's reason
  Status bad = verifyLog(stored, head, node.pub);
  EXPECT_EQ(bad.code(), StatusCode::kCorruption);
  EXPECT_EQ(bad.message().rfind("entry 0: ", 0), 0u) << bad.toString();
}

}  // namespace
}  // namespace trialmesh::ethics
