#include "crypto/hash.h"

#include <gtest/gtest.h>

namespace trialmesh::crypto {
namespace {

// FIPS 180-2 known answers.
TEST(Sha256, KnownAnswerAbc) {
  EXPECT_EQ(toHex(sha256("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Sha256, KnownAnswerEmptyAndTwoBlocks) {
  EXPECT_EQ(toHex(sha256("")), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(toHex(sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

TEST(ToHex, LowerCaseTwoCharsPerByte) {
  const uint8_t b[] = {0x00, 0x0f, 0xa0, 0xff};
  EXPECT_EQ(toHex(b), "000fa0ff");
}

}  // namespace
}  // namespace trialmesh::crypto
