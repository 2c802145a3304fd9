// Issue #12, a verifier that remembers: pinned tree heads (truncation, consistent rewrites by
// the same key, same-size forks, expected heads, key rotation, the state file) and the node's
// start-up integrity check over every stored entry.
#include <gtest/gtest.h>

#include <rocksdb/db.h>

#include <filesystem>
#include <fstream>

#include "ethics/audit_log.h"
#include "ethics/head_pin.h"

namespace trialmesh::ethics {
namespace {

std::span<const uint8_t> bytesOf(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// A log as a board downloads it, built in memory: entries (node events whose detail is
// `prefix` + i), their stored roots, the tree (for proofs) and heads signed by `key`.
struct MemLog {
  crypto::Identity* key;
  std::vector<StoredEntry> entries;
  MerkleTree tree;

  void add(const std::string& detail) {
    Entry e;
    e.sequence = entries.size();
    e.timestampMs = 1'780'000'000'000 + static_cast<int64_t>(entries.size());
    e.kind = EntryKind::kNodeStart;
    e.body = NodeEvent{detail};
    StoredEntry s;
    s.bytes = encodeEntry(e).value();
    tree.append(leafHash(bytesOf(s.bytes)));
    s.rootAfter = tree.root();
    entries.push_back(std::move(s));
  }
  static MemLog make(crypto::Identity& key, int n, const std::string& prefix = "v") {
    MemLog log{&key, {}, {}};
    for (int i = 0; i < n; ++i) log.add(prefix + std::to_string(i));
    return log;
  }
  SignedTreeHead head() const {
    return signTreeHead(*key, tree.size(), 1'780'000'100'000, tree.root());
  }
  std::vector<Hash> proofFrom(uint64_t size) const {
    return tree.consistencyProof(size, tree.size()).value();
  }
};

class PinTest : public ::testing::Test {
 protected:
  Result<PinOutcome> check(const MemLog& log, uint64_t proofFrom,
                           std::optional<ExpectedHead> expected = std::nullopt,
                           std::optional<crypto::PublicKey> accept = std::nullopt) {
    EXPECT_TRUE(verifyLog(log.entries, log.head(), log.key->pub).isOk());
    proof_ = proofFrom <= log.tree.size() ? log.proofFrom(proofFrom) : std::vector<Hash>{};
    PinCheck c;
    c.pins = &pins_;
    c.site = "site-a";
    c.entries = log.entries;
    c.head = log.head();
    c.consistencyProof = proof_;
    c.expected = expected;
    c.acceptKey = accept;
    return checkAgainstPins(c);
  }
  void pin(const MemLog& log) { pins_ = withPin(pins_, "site-a", log.head()); }

  crypto::Identity key_ = crypto::generateIdentity();
  std::vector<PinnedHead> pins_;
  std::vector<Hash> proof_;
};

TEST_F(PinTest, FirstUseIsTrustOnFirstUseThenExtensionsAreConsistent) {
  MemLog log = MemLog::make(key_, 10);
  EXPECT_EQ(check(log, 0).value(), PinOutcome::kFirstUse);
  pin(log);
  for (int i = 10; i < 25; ++i) log.add("w" + std::to_string(i));
  EXPECT_EQ(check(log, 10).value(), PinOutcome::kConsistent);
  pin(log);
  EXPECT_EQ(findPin(pins_, "site-a", key_.pub)->head.treeSize, 25u);
}

TEST_F(PinTest, TruncatedLogFailsAgainstThePin) {
  pin(MemLog::make(key_, 10));
  Result<PinOutcome> r = check(MemLog::make(key_, 6), 0);
  ASSERT_FALSE(r.isOk());
  EXPECT_EQ(r.status().code(), StatusCode::kCorruption);
  EXPECT_NE(r.status().message().find("truncated or rolled back"), std::string::npos)
      << r.status().message();
  EXPECT_NE(r.status().message().find("(6 entries)"), std::string::npos) << r.status().message();
}

TEST_F(PinTest, ConsistentlyRewrittenLogSignedBySameKeyFails) {
  pin(MemLog::make(key_, 10));
  // The same key re-signs a history whose entry 3 differs, and it is longer than the pin: on
  // its own it verifies perfectly (check() asserts that); only the pin catches it.
  MemLog rewritten = MemLog::make(key_, 3);
  rewritten.add("erased");
  for (int i = 4; i < 14; ++i) rewritten.add("v" + std::to_string(i));
  Result<PinOutcome> r = check(rewritten, 10);
  ASSERT_FALSE(r.isOk());
  EXPECT_EQ(r.status().code(), StatusCode::kCorruption);
  EXPECT_NE(r.status().message().find("the log was rewritten"), std::string::npos)
      << r.status().message();
  EXPECT_NE(r.status().message().find("cannot prove"), std::string::npos) << r.status().message();
}

TEST_F(PinTest, ProofAloneIsNotTrustedTheEntriesMustHashToThePin) {
  // A site that sends a valid proof for the pinned history but entries of another one.
  MemLog honest = MemLog::make(key_, 12);
  pin(MemLog::make(key_, 10));
  MemLog forged = MemLog::make(key_, 12, "x");
  PinCheck c;
  c.pins = &pins_;
  c.site = "site-a";
  c.entries = forged.entries;
  c.head = honest.head();
  auto proof = honest.proofFrom(10);
  c.consistencyProof = proof;
  Result<PinOutcome> r = checkAgainstPins(c);
  ASSERT_FALSE(r.isOk());
  EXPECT_NE(r.status().message().find("first 10 entries hash to root"), std::string::npos)
      << r.status().message();
}

TEST_F(PinTest, SameSizeDifferentRootNamesBoth) {
  MemLog a = MemLog::make(key_, 8);
  pin(a);
  MemLog b = MemLog::make(key_, 8, "y");
  Result<PinOutcome> r = check(b, 8);
  ASSERT_FALSE(r.isOk());
  EXPECT_NE(r.status().message().find("same size 8"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find(hashHex(a.tree.root())), std::string::npos);
  EXPECT_NE(r.status().message().find(hashHex(b.tree.root())), std::string::npos);
}

TEST_F(PinTest, ExpectedHeadWithoutTrustOnFirstUse) {
  MemLog log = MemLog::make(key_, 10);
  const SignedTreeHead earlier = log.head();
  for (int i = 10; i < 20; ++i) log.add("v" + std::to_string(i));
  auto expected = parseExpectedHead(formatExpectedHead(earlier));
  ASSERT_TRUE(expected.isOk()) << expected.status().toString();
  EXPECT_EQ(check(log, 0, *expected).value(), PinOutcome::kExpected);

  ExpectedHead wrong = *expected;
  wrong.root[0] ^= 1;
  Result<PinOutcome> r = check(log, 0, wrong);
  ASSERT_FALSE(r.isOk());
  EXPECT_NE(r.status().message().find("first 10 entries hash to root"), std::string::npos)
      << r.status().message();

  ExpectedHead larger{25, log.tree.root()};
  r = check(log, 0, larger);
  ASSERT_FALSE(r.isOk());
  EXPECT_NE(r.status().message().find("covers 25 entries but the site's log has 20"),
            std::string::npos)
      << r.status().message();
}

TEST_F(PinTest, ParseExpectedHeadRefusesMalformedText) {
  const std::string root(64, 'a');
  EXPECT_TRUE(parseExpectedHead(root + "@12").isOk());
  for (const std::string& bad :
       {root, root + "@", root + "@x", root + "@12x", root.substr(2) + "@1",
        std::string(64, 'g') + "@1", std::string("@1"), root + "@-1"}) {
    auto r = parseExpectedHead(bad);
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << bad;
    if (!r) {
      EXPECT_NE(r.status().message().find("<tree size>"), std::string::npos);
    }
  }
}

TEST_F(PinTest, HeadByAnotherKeyFailsUnlessTheNewKeyIsAcceptedExplicitly) {
  pin(MemLog::make(key_, 10));
  crypto::Identity rotated = crypto::generateIdentity();
  MemLog newLog = MemLog::make(rotated, 3);
  Result<PinOutcome> r = check(newLog, 0);
  ASSERT_FALSE(r.isOk());
  EXPECT_EQ(r.status().code(), StatusCode::kPermissionDenied);
  EXPECT_NE(r.status().message().find("--accept-key " + rotated.pub.toText()), std::string::npos)
      << r.status().message();

  crypto::Identity other = crypto::generateIdentity();
  EXPECT_EQ(check(newLog, 0, std::nullopt, other.pub).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(check(newLog, 0, std::nullopt, rotated.pub).value(), PinOutcome::kKeyAccepted);
  pins_ = withPin(pins_, "site-a", newLog.head());
  // Both keys stay pinned; the new one is checked like any other from now on.
  newLog.add("after rotation");
  EXPECT_EQ(check(newLog, 3).value(), PinOutcome::kConsistent);
  EXPECT_NE(findPin(pins_, "site-a", key_.pub), nullptr);
}

TEST_F(PinTest, StateFileRoundTripsAndRefusesAnEditedHead) {
  const std::string path = ::testing::TempDir() + "/pins-" +
                           ::testing::UnitTest::GetInstance()->current_test_info()->name() +
                           "/sub/audit-pins";
  std::filesystem::remove_all(std::filesystem::path(path).parent_path().parent_path());
  EXPECT_TRUE(loadPins(path).value().empty());  // a missing file is no pins
  pin(MemLog::make(key_, 10));
  pins_ = withPin(pins_, "site-b", MemLog::make(key_, 4).head());
  ASSERT_TRUE(savePins(path, pins_).isOk());
  auto loaded = loadPins(path);
  ASSERT_TRUE(loaded.isOk()) << loaded.status().toString();
  ASSERT_EQ(loaded->size(), 2u);
  EXPECT_EQ(encodeTreeHead((*loaded)[0].head), encodeTreeHead(pins_[0].head));
  EXPECT_EQ((*loaded)[1].site, "site-b");

  // Someone lowers the pinned size by editing the file: the signature no longer verifies.
  std::ifstream in(path);
  std::string header, line1, line2;
  std::getline(in, header);
  std::getline(in, line1);
  std::getline(in, line2);
  in.close();
  const size_t sizeHex = line1.find(' ') + 1 + 2 * 34 + 15;  // last byte of the tree size
  line1[sizeHex] = line1[sizeHex] == '0' ? '1' : '0';
  std::ofstream(path, std::ios::trunc) << header << "\n" << line1 << "\n" << line2 << "\n";
  auto edited = loadPins(path);
  ASSERT_FALSE(edited.isOk());
  EXPECT_NE(edited.status().message().find(":2: pinned head does not verify"), std::string::npos)
      << edited.status().message();
}

// ---- The node's start-up check over every stored entry ----

class StartCheckTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/startcheck_" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::remove_all(dir_);
    auto log = AuditLog::open(dir_, node_);
    ASSERT_TRUE(log.isOk()) << log.status().toString();
    for (int i = 0; i < 40; ++i) {
      ASSERT_TRUE(
          (*log)->append(EntryKind::kNodeStart, NodeEvent{"start " + std::to_string(i)}).isOk());
    }
    root_ = (*log)->root();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Direct access to the store, as an attacker with disk access would have.
  template <typename Fn>
  void editStore(Fn fn) {
    rocksdb::DBOptions options;
    std::vector<rocksdb::ColumnFamilyDescriptor> families = {
        {rocksdb::kDefaultColumnFamilyName, {}}, {"audit_entries", {}}};
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* db = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(options, dir_, families, &handles, &db).ok());
    fn(db, handles[0], handles[1]);
    for (auto* h : handles) ASSERT_TRUE(db->DestroyColumnFamilyHandle(h).ok());
    ASSERT_TRUE(db->Close().ok());
    delete db;
  }
  static std::string key(uint64_t i) {
    std::string k(8, '\0');
    for (int b = 7; b >= 0; --b, i >>= 8) k[static_cast<size_t>(b)] = static_cast<char>(i & 0xff);
    return k;
  }
  void flipEntry(uint64_t i, bool alsoLeaf) {
    editStore([&](rocksdb::DB* db, rocksdb::ColumnFamilyHandle* nodes,
                  rocksdb::ColumnFamilyHandle* entries) {
      std::string v;
      ASSERT_TRUE(db->Get({}, entries, key(i), &v).ok());
      v[v.size() - 2] ^= 0x01;  // a byte of the detail text: still decodes
      ASSERT_TRUE(db->Put({}, entries, key(i), v).ok());
      if (alsoLeaf) {
        const Hash leaf = leafHash(bytesOf(v.substr(sizeof(Hash))));
        std::string nodeKey = "n";
        nodeKey += '\0';
        nodeKey += key(i);
        ASSERT_TRUE(db->Put({}, nodes, nodeKey,
                            rocksdb::Slice(reinterpret_cast<const char*>(leaf.data()), leaf.size()))
                        .ok());
      }
    });
  }

  std::string dir_;
  crypto::Identity node_ = crypto::generateIdentity();
  Hash root_{};
};

TEST_F(StartCheckTest, UntouchedLogReopensWithTheSameRootEveryTime) {
  for (int i = 0; i < 2; ++i) {
    auto log = AuditLog::open(dir_, node_);
    ASSERT_TRUE(log.isOk()) << log.status().toString();
    EXPECT_EQ((*log)->size(), 40u);
    EXPECT_EQ((*log)->root(), root_);
  }
}

TEST_F(StartCheckTest, ModifiedMiddleEntryRefusesToOpenNamingIt) {
  flipEntry(17, /*alsoLeaf=*/false);
  auto log = AuditLog::open(dir_, node_);
  ASSERT_FALSE(log.isOk());
  EXPECT_EQ(log.status().code(), StatusCode::kCorruption);
  EXPECT_NE(log.status().message().find("entry 17: its content does not match the leaf hash"),
            std::string::npos)
      << log.status().message();
  EXPECT_NE(log.status().message().find("refuses to start"), std::string::npos);
  EXPECT_NE(log.status().message().find("restore the directory from a backup"), std::string::npos);
  // A reader for the board's report can still open it without the check.
  AuditLogOptions reader;
  reader.checkEntriesOnOpen = false;
  EXPECT_TRUE(AuditLog::open(dir_, node_, reader).isOk());
}

TEST_F(StartCheckTest, ModifiedEntryWithItsLeafRewrittenFailsOnTheRoot) {
  flipEntry(5, /*alsoLeaf=*/true);
  auto log = AuditLog::open(dir_, node_);
  ASSERT_FALSE(log.isOk());
  EXPECT_NE(log.status().message().find("the 40 entries hash to root"), std::string::npos)
      << log.status().message();
}

TEST_F(StartCheckTest, DeletedMiddleEntryIsNamed) {
  editStore([](rocksdb::DB* db, rocksdb::ColumnFamilyHandle*, rocksdb::ColumnFamilyHandle* e) {
    ASSERT_TRUE(db->Delete({}, e, key(12)).ok());
  });
  auto log = AuditLog::open(dir_, node_);
  ASSERT_FALSE(log.isOk());
  EXPECT_NE(log.status().message().find("entry 12: missing"), std::string::npos)
      << log.status().message();
}

}  // namespace
}  // namespace trialmesh::ethics
