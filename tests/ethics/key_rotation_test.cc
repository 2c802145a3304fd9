// Issue #13 item 3: the key-rotation audit entry (signed by the old and the new key), its
// encoding and description, verifyLog's check of both signatures, and following a log across
// the change from a pinned head, with the whole log (boards) or with proofs only (peer sites):
// accepted through a valid chain, refused for a head by an unknown key, a rewritten or
// rolled-back log, a forged signature, or an old key that was revoked when it signed.
#include "ethics/key_rotation.h"

#include <gtest/gtest.h>

#include "ethics/head_pin.h"

namespace trialmesh::ethics {
namespace {

std::span<const uint8_t> bytesOf(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

constexpr int64_t kT0 = 1'790'000'000'000;

// A log built in memory, as a board downloads it.
struct MemLog {
  std::vector<StoredEntry> entries;
  MerkleTree tree;

  void add(EntryKind kind, EntryBody body) {
    Entry e;
    e.sequence = entries.size();
    e.timestampMs = kT0 + static_cast<int64_t>(entries.size());
    e.kind = kind;
    e.body = std::move(body);
    StoredEntry s;
    s.bytes = encodeEntry(e).value();
    tree.append(leafHash(bytesOf(s.bytes)));
    s.rootAfter = tree.root();
    entries.push_back(std::move(s));
  }
  void addEvents(int n) {
    for (int i = 0; i < n; ++i) add(EntryKind::kNodeStart, NodeEvent{"v" + std::to_string(i)});
  }
  SignedTreeHead head(const crypto::Identity& key, int64_t at = kT0 + 100'000) const {
    return signTreeHead(key, tree.size(), at, tree.root());
  }
  std::vector<Hash> proofFrom(uint64_t size) const {
    return tree.consistencyProof(size, tree.size()).value();
  }
  // The key-rotation entries with inclusion proofs, as the site's auditKeyRotations sends them.
  std::vector<ProvenEntry> rotations() const {
    std::vector<ProvenEntry> out;
    for (uint64_t i = 0; i < entries.size(); ++i) {
      auto e = decodeEntry(bytesOf(entries[i].bytes)).value();
      if (e.kind != EntryKind::kKeyRotation) continue;
      out.push_back({i, entries[i].bytes, tree.inclusionProof(i, tree.size()).value()});
    }
    return out;
  }
};

// Every key accepted at any time, except `refused` from `from` on.
struct Validity {
  std::optional<crypto::PublicKey> refused;
  int64_t from = 0;
  Status operator()(const crypto::PublicKey& key, int64_t at) const {
    if (refused && key == *refused && at >= from) {
      return Status::permissionDenied("key " + key.toText() + " of member 'west' is revoked");
    }
    return Status::ok();
  }
};

class KeyRotationTest : public ::testing::Test {
 protected:
  crypto::Identity old_ = crypto::generateIdentity();
  crypto::Identity new_ = crypto::generateIdentity();
  crypto::Identity intruder_ = crypto::generateIdentity();
};

TEST_F(KeyRotationTest, EntryRoundTripsIsDescribedAndBothSignaturesVerify) {
  KeyRotationEvent e = signKeyRotation(old_, new_, "west", kT0);
  EXPECT_TRUE(verifyKeyRotationSignatures(e).isOk());
  Entry entry{7, kT0, EntryKind::kKeyRotation, e};
  auto bytes = encodeEntry(entry);
  ASSERT_TRUE(bytes.isOk()) << bytes.status().toString();
  EXPECT_EQ(static_cast<uint8_t>((*bytes)[17]), 17);  // kind byte, frozen value 17
  auto back = decodeEntry(bytesOf(*bytes));
  ASSERT_TRUE(back.isOk()) << back.status().toString();
  EXPECT_EQ(std::get<KeyRotationEvent>(back->body), e);
  const std::string text = describeEntry(*back);
  EXPECT_NE(text.find("key-rotation member=west " + old_.pub.toText() + " -> " + new_.pub.toText()),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("signed by both keys (verified)"), std::string::npos) << text;

  // Each signature covers the member, both keys and the time.
  KeyRotationEvent forged = e;
  forged.newKey = intruder_.pub;
  EXPECT_NE(verifyKeyRotationSignatures(forged).message().find("signature of the old key"),
            std::string::npos);
  forged = e;
  forged.newSignature[3] ^= 1;
  EXPECT_NE(verifyKeyRotationSignatures(forged).message().find("signature of the new key"),
            std::string::npos);
  forged = e;
  forged.signedAtMs += 1;
  EXPECT_FALSE(verifyKeyRotationSignatures(forged).isOk());
  forged = e;
  forged.member = "east";
  EXPECT_FALSE(verifyKeyRotationSignatures(forged).isOk());
  entry.body = forged;
  EXPECT_NE(describeEntry(entry).find("INVALID"), std::string::npos);
  EXPECT_FALSE(verifyKeyRotationSignatures(signKeyRotation(old_, old_, "west", kT0)).isOk());
}

TEST_F(KeyRotationTest, VerifyLogRefusesARotationWithABadSignature) {
  MemLog log;
  log.addEvents(3);
  KeyRotationEvent e = signKeyRotation(old_, new_, "west", kT0);
  e.oldSignature[0] ^= 1;
  log.add(EntryKind::kKeyRotation, e);
  Status s = verifyLog(log.entries, log.head(new_), new_.pub);
  EXPECT_EQ(s.code(), StatusCode::kCorruption);
  EXPECT_NE(s.message().find("entry 3: key rotation of 'west': the signature of the old key"),
            std::string::npos)
      << s.message();
}

TEST_F(KeyRotationTest, FollowsTheLogAcrossAValidRotation) {
  MemLog log;
  log.addEvents(5);
  const SignedTreeHead pinned = log.head(old_);
  log.add(EntryKind::kKeyRotation, signKeyRotation(old_, new_, "west", kT0 + 10));
  log.addEvents(4);
  const SignedTreeHead next = log.head(new_);
  ASSERT_TRUE(verifyLog(log.entries, next, new_.pub).isOk());

  auto full = followKeyRotation(pinned, next, log.entries, Validity{}, {});
  ASSERT_TRUE(full.isOk()) << full.status().toString();
  ASSERT_EQ(full->size(), 1u);
  EXPECT_EQ((*full)[0].newKey, new_.pub);

  const auto proof = log.proofFrom(pinned.treeSize);
  const auto rotations = log.rotations();
  auto proven = followKeyRotation(pinned, next, proof, rotations, Validity{}, {});
  ASSERT_TRUE(proven.isOk()) << proven.status().toString();

  // Two rotations in a row are one chain.
  crypto::Identity third = crypto::generateIdentity();
  log.add(EntryKind::kKeyRotation, signKeyRotation(new_, third, "west", kT0 + 20));
  auto twice = followKeyRotation(pinned, log.head(third), log.entries, Validity{}, {});
  ASSERT_TRUE(twice.isOk()) << twice.status().toString();
  EXPECT_EQ(twice->size(), 2u);
}

TEST_F(KeyRotationTest, AHeadByAnUnknownKeyOrAForgedRotationIsAFork) {
  MemLog log;
  log.addEvents(5);
  const SignedTreeHead pinned = log.head(old_);
  log.addEvents(2);
  // No rotation entry at all: the intruder just signs a head.
  auto none = followKeyRotation(pinned, log.head(intruder_), log.proofFrom(5), log.rotations(),
                                Validity{}, {});
  ASSERT_FALSE(none.isOk());
  EXPECT_EQ(none.status().code(), StatusCode::kPermissionDenied);
  EXPECT_NE(none.status().message().find("fork detected: the head is signed by " +
                                         intruder_.pub.toText()),
            std::string::npos)
      << none.status().message();

  // A rotation "signed" by the old key that the intruder cannot have made.
  KeyRotationEvent forged = signKeyRotation(intruder_, new_, "west", kT0);
  forged.oldKey = old_.pub;
  log.add(EntryKind::kKeyRotation, forged);
  auto bad = followKeyRotation(pinned, log.head(new_), log.entries, Validity{}, {});
  EXPECT_NE(bad.status().message().find("signature of the old key"), std::string::npos)
      << bad.status().message();
}

TEST_F(KeyRotationTest, ARewrittenOrRolledBackLogStillFailsWithAValidRotation) {
  MemLog log;
  log.addEvents(6);
  const SignedTreeHead pinned = log.head(old_);
  // The same history with entry 2 changed, then a valid rotation.
  MemLog rewritten;
  rewritten.addEvents(2);
  rewritten.add(EntryKind::kNodeStart, NodeEvent{"changed"});
  for (int i = 3; i < 6; ++i) rewritten.add(EntryKind::kNodeStart, NodeEvent{"x"});
  rewritten.add(EntryKind::kKeyRotation, signKeyRotation(old_, new_, "west", kT0));
  const SignedTreeHead next = rewritten.head(new_);
  auto full = followKeyRotation(pinned, next, rewritten.entries, Validity{}, {});
  EXPECT_EQ(full.status().code(), StatusCode::kCorruption);
  EXPECT_NE(full.status().message().find("fork detected"), std::string::npos);
  // A peer with proofs only: the site cannot prove consistency (we give the best it has).
  auto proven = followKeyRotation(pinned, next, rewritten.proofFrom(6), rewritten.rotations(),
                                  Validity{}, {});
  EXPECT_EQ(proven.status().code(), StatusCode::kCorruption);
  EXPECT_NE(proven.status().message().find("is not an extension of the head pinned before"),
            std::string::npos)
      << proven.status().message();

  MemLog shorter;
  shorter.addEvents(3);
  shorter.add(EntryKind::kKeyRotation, signKeyRotation(old_, new_, "west", kT0));
  auto rolledBack = followKeyRotation(pinned, shorter.head(new_), shorter.entries, Validity{}, {});
  EXPECT_NE(rolledBack.status().message().find("rolled back"), std::string::npos);

  // A rotation entry that is not in the head's tree.
  MemLog real;
  real.addEvents(6);
  real.add(EntryKind::kKeyRotation, signKeyRotation(old_, new_, "west", kT0));
  real.addEvents(1);
  auto entries = real.rotations();
  entries[0].inclusionProof[0][0] ^= 1;
  auto notIn =
      followKeyRotation(pinned, real.head(new_), real.proofFrom(6), entries, Validity{}, {});
  EXPECT_NE(notIn.status().message().find("not in the log of the head"), std::string::npos)
      << notIn.status().message();
}

TEST_F(KeyRotationTest, ARevokedOldKeyCanOnlyRotateToTheKeyTheMembersFileVouchesFor) {
  MemLog log;
  log.addEvents(4);
  const SignedTreeHead pinned = log.head(old_);
  // The old key counts as compromised from kT0 + 5; the rotation is signed after that.
  log.add(EntryKind::kKeyRotation, signKeyRotation(old_, new_, "west", kT0 + 10));
  const Validity revoked{old_.pub, kT0 + 5};
  auto refused = followKeyRotation(pinned, log.head(new_), log.entries, revoked, {});
  ASSERT_FALSE(refused.isOk());
  EXPECT_NE(refused.status().message().find("the old key could no longer sign it"),
            std::string::npos)
      << refused.status().message();
  EXPECT_NE(refused.status().message().find("revoked"), std::string::npos);
  // The organiser published the new key as the member's current key: that is the authority.
  auto vouched = followKeyRotation(pinned, log.head(new_), log.entries, revoked,
                                   [this](const crypto::PublicKey& k) { return k == new_.pub; });
  EXPECT_TRUE(vouched.isOk()) << vouched.status().toString();
  // A rotation before the revocation time needs no vouching.
  MemLog early;
  early.addEvents(4);
  early.add(EntryKind::kKeyRotation, signKeyRotation(old_, new_, "west", kT0 + 1));
  EXPECT_TRUE(
      followKeyRotation(early.head(old_), early.head(new_), early.entries, revoked, {}).isOk());
  // The head's own key must be accepted too.
  const Validity newRevoked{new_.pub, 0};
  EXPECT_NE(followKeyRotation(pinned, log.head(new_), log.entries, newRevoked, {})
                .status()
                .message()
                .find("the head's key is not accepted"),
            std::string::npos);
}

TEST_F(KeyRotationTest, BoardPinsFollowTheRotationWithoutAcceptKey) {
  MemLog log;
  log.addEvents(5);
  std::vector<PinnedHead> pins = withPin({}, "west", log.head(old_));
  log.add(EntryKind::kKeyRotation, signKeyRotation(old_, new_, "west", kT0));
  log.addEvents(2);
  PinCheck c;
  c.pins = &pins;
  c.site = "west";
  c.entries = log.entries;
  c.head = log.head(new_);
  // Without a validity policy (as before this change) a new key needs --accept-key.
  auto before = checkAgainstPins(c);
  EXPECT_EQ(before.status().code(), StatusCode::kPermissionDenied);
  c.keyValidity = Validity{};
  auto outcome = checkAgainstPins(c);
  ASSERT_TRUE(outcome.isOk()) << outcome.status().toString();
  EXPECT_EQ(*outcome, PinOutcome::kKeyRotated);

  // A head by a key the log never rotated to is still refused, and names the fork.
  c.head = log.head(intruder_);
  auto intruder = checkAgainstPins(c);
  ASSERT_FALSE(intruder.isOk());
  EXPECT_NE(intruder.status().message().find("holds no key-rotation entry"), std::string::npos)
      << intruder.status().message();
}

}  // namespace
}  // namespace trialmesh::ethics
