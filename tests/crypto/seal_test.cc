#include "crypto/seal.h"

#include <gtest/gtest.h>

#include <string>

namespace trialmesh::crypto {
namespace {

std::vector<uint8_t> bytes(std::string_view s) { return {s.begin(), s.end()}; }

TEST(SealedBox, RoundTripToIdentityDerivedKey) {
  Identity bob = generateIdentity();
  Result<X25519PublicKey> bobX = toX25519(bob.pub);
  ASSERT_TRUE(bobX.isOk());
  std::vector<uint8_t> box = sealTo(*bobX, bytes("mask seed 0123456789"));
  EXPECT_EQ(box.size(), 20 + kSealOverheadBytes);
  Result<std::vector<uint8_t>> opened = openSealed(toX25519(bob), box);
  ASSERT_TRUE(opened.isOk()) << opened.status().toString();
  EXPECT_EQ(*opened, bytes("mask seed 0123456789"));
}

TEST(SealedBox, FreshCiphertextEachTime) {
  X25519KeyPair kp = generateX25519KeyPair();
  EXPECT_NE(sealTo(kp.pub, bytes("same")), sealTo(kp.pub, bytes("same")));
  Result<std::vector<uint8_t>> empty = openSealed(kp, sealTo(kp.pub, {}));
  ASSERT_TRUE(empty.isOk());
  EXPECT_TRUE(empty->empty());
}

TEST(SealedBox, TamperedWrongKeyOrShortRefused) {
  X25519KeyPair kp = generateX25519KeyPair();
  X25519KeyPair other = generateX25519KeyPair();
  const std::vector<uint8_t> box = sealTo(kp.pub, bytes("secret"));
  for (size_t i = 0; i < box.size(); ++i) {
    std::vector<uint8_t> bad = box;
    bad[i] ^= 0x01;
    Result<std::vector<uint8_t>> r = openSealed(kp, bad);
    ASSERT_FALSE(r.isOk()) << "byte " << i;
    EXPECT_NE(r.status().message().find("does not open"), std::string::npos);
  }
  Result<std::vector<uint8_t>> r = openSealed(other, box);
  ASSERT_FALSE(r.isOk());
  EXPECT_EQ(r.status().code(), StatusCode::kCorruption);
  r = openSealed(kp, std::vector<uint8_t>(47));
  ASSERT_FALSE(r.isOk());
  EXPECT_NE(r.status().message().find("shorter than the 48-byte minimum"), std::string::npos);
}

TEST(RoundSeal, OnlyTheRecipientOpensForTheSameRoundAndSender) {
  Identity site = generateIdentity();
  Identity coordinator = generateIdentity();
  Identity other = generateIdentity();
  const std::vector<uint8_t> round = bytes("round-0001"), nextRound = bytes("round-0002");
  const std::vector<uint8_t> vector = bytes("masked words 0123456789abcdef");
  auto box = sealForRound(site, coordinator.pub, round, vector);
  ASSERT_TRUE(box.isOk()) << box.status().toString();
  EXPECT_EQ(box->size(), vector.size() + kRoundSealOverheadBytes);
  auto again = sealForRound(site, coordinator.pub, round, vector);
  ASSERT_TRUE(again.isOk());
  EXPECT_NE(*box, *again);  // random nonce

  auto opened = openForRound(coordinator, site.pub, round, *box);
  ASSERT_TRUE(opened.isOk()) << opened.status().toString();
  EXPECT_EQ(*opened, vector);

  auto expectRefused = [](const Result<std::vector<uint8_t>>& r, const char* why) {
    ASSERT_FALSE(r.isOk()) << why;
    EXPECT_EQ(r.status().code(), StatusCode::kCorruption) << why;
    EXPECT_NE(r.status().message().find("does not open"), std::string::npos) << why;
  };
  expectRefused(openForRound(coordinator, site.pub, nextRound, *box), "another round");
  expectRefused(openForRound(other, site.pub, round, *box), "another recipient");
  expectRefused(openForRound(coordinator, other.pub, round, *box), "another claimed sender");
  // The reverse direction has its own key: the site cannot be fed its own box back.
  expectRefused(openForRound(site, coordinator.pub, round, *box), "reflected");
  for (size_t i = 0; i < box->size(); i += 7) {
    std::vector<uint8_t> bad = *box;
    bad[i] ^= 0x20;
    expectRefused(openForRound(coordinator, site.pub, round, bad), "flipped byte");
  }
  auto shortBox = openForRound(coordinator, site.pub, round, std::vector<uint8_t>(39));
  ASSERT_FALSE(shortBox.isOk());
  EXPECT_NE(shortBox.status().message().find("shorter than the 40-byte minimum"),
            std::string::npos);
  auto noRound = sealForRound(site, coordinator.pub, {}, vector);
  ASSERT_FALSE(noRound.isOk());
  EXPECT_EQ(noRound.status().code(), StatusCode::kInvalidArgument);
  // A recipient key that is not a curve point is refused by name.
  std::array<uint8_t, kPublicKeyBytes> junk{};
  junk[0] = 2;  // small-order / invalid encodings fail the conversion or the agreement
  auto badKey = sealForRound(site, PublicKey(junk), round, vector);
  ASSERT_FALSE(badKey.isOk());
  EXPECT_EQ(badKey.status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace trialmesh::crypto
