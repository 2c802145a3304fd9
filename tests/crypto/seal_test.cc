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

}  // namespace
}  // namespace trialmesh::crypto
