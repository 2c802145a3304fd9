#include "crypto/identity.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "crypto/hash.h"

namespace trialmesh::crypto {
namespace {

std::span<const uint8_t> bytesOf(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

std::vector<uint8_t> fromHex(std::string_view hex) {
  std::vector<uint8_t> out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<uint8_t>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
  }
  return out;
}

PublicKey sequentialKey() {
  std::array<uint8_t, 32> k;
  for (int i = 0; i < 32; ++i) k[i] = static_cast<uint8_t>(i);
  return PublicKey(k);
}

// Naive RFC 4648 base32 written independently of the library: one bit at a time.
std::string naiveBase32(const std::vector<uint8_t>& data) {
  std::string bits;
  for (uint8_t b : data) {
    for (int i = 7; i >= 0; --i) bits.push_back(((b >> i) & 1) ? '1' : '0');
  }
  while (bits.size() % 5 != 0) bits.push_back('0');
  std::string out;
  for (size_t i = 0; i < bits.size(); i += 5) {
    out.push_back("abcdefghijklmnopqrstuvwxyz234567"[std::stoi(bits.substr(i, 5), nullptr, 2)]);
  }
  return out;
}

TEST(PublicKeyText, KnownAnswerForFixedKey) {
  // Computed with Python's base64.b32encode and hashlib (see docs/keys.md).
  EXPECT_EQ(sequentialKey().toText(),
            "tmpk1aaaqeayeaudaocajbifqydiob4ibceqtcqkrmfyydenbwha5dyp2n3qki4");
  std::array<uint8_t, 32> ff;
  ff.fill(0xff);
  EXPECT_EQ(PublicKey(ff).toText(),
            "tmpk1777777777777777777777777777777777777777777777777777yzz4eyy");
}

TEST(PublicKeyText, MatchesNaiveEncoding) {
  for (int i = 0; i < 20; ++i) {
    Identity id = generateIdentity();
    std::vector<uint8_t> payload(id.pub.bytes().begin(), id.pub.bytes().end());
    std::string domain = "trialmesh-pk";
    std::vector<uint8_t> hin(domain.begin(), domain.end());
    hin.insert(hin.end(), payload.begin(), payload.end());
    Sha256Digest d = sha256(std::span<const uint8_t>(hin));
    payload.insert(payload.end(), d.begin(), d.begin() + 4);
    EXPECT_EQ(id.pub.toText(), "tmpk1" + naiveBase32(payload));
    EXPECT_EQ(id.pub.toText().size(), 63u);
  }
}

TEST(PublicKeyText, RoundTrip) {
  for (int i = 0; i < 50; ++i) {
    Identity id = generateIdentity();
    Result<PublicKey> parsed = parsePublicKey(id.pub.toText());
    ASSERT_TRUE(parsed.isOk()) << parsed.status().toString();
    EXPECT_EQ(*parsed, id.pub);
  }
}

TEST(PublicKeyText, AcceptsSurroundingWhitespaceAndUpperCase) {
  std::string text = sequentialKey().toText();
  std::string upper;
  for (char c : text) upper.push_back(static_cast<char>(std::toupper(c)));
  for (const std::string& t : {"  " + text + "\n", upper, "\t" + text + "\r\n"}) {
    Result<PublicKey> parsed = parsePublicKey(t);
    ASSERT_TRUE(parsed.isOk()) << t << ": " << parsed.status().toString();
    EXPECT_EQ(*parsed, sequentialKey());
  }
}

void expectParseError(const std::string& text, const std::string& fragment) {
  Result<PublicKey> r = parsePublicKey(text);
  ASSERT_FALSE(r.isOk()) << "accepted: " << text;
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find(fragment), std::string::npos)
      << "message: " << r.status().message() << "\nexpected fragment: " << fragment;
}

TEST(PublicKeyText, WrongPrefix) {
  std::string text = sequentialKey().toText();
  expectParseError("tmpk2" + text.substr(5), "does not start with 'tmpk1'");
  expectParseError(text.substr(5), "does not start with 'tmpk1'");
  expectParseError("", "does not start with 'tmpk1'");
  expectParseError("ssh-ed25519 AAAAC3", "does not start with 'tmpk1'");
}

TEST(PublicKeyText, BadCharacterNamesItsPosition) {
  std::string text = sequentialKey().toText();
  std::string t = text;
  t[10] = '0';
  expectParseError(t, "invalid character '0' at position 11");
  t = text;
  t[62] = '1';
  expectParseError(t, "invalid character '1' at position 63");
  t = text;
  t[20] = '\x01';
  expectParseError(t, "invalid character 0x01 at position 21");
  expectParseError(text.substr(0, 30) + " " + text.substr(30), "at position 31");
}

TEST(PublicKeyText, WrongLength) {
  std::string text = sequentialKey().toText();
  expectParseError(text.substr(0, 62), "has 57 characters after 'tmpk1', expected 58");
  expectParseError(text + "a", "has 59 characters");
  expectParseError(text + text.substr(5), "has 116 characters");
  expectParseError("tmpk1", "has 0 characters");
}

TEST(PublicKeyText, EverySingleCharacterTypoIsCaught) {
  const std::string alphabet = "abcdefghijklmnopqrstuvwxyz234567";
  for (const PublicKey& key : {sequentialKey(), generateIdentity().pub}) {
    const std::string text = key.toText();
    for (size_t pos = 5; pos < text.size(); ++pos) {
      for (char c : alphabet) {
        if (c == text[pos]) continue;
        std::string t = text;
        t[pos] = c;
        expectParseError(t,
                         "public key checksum does not match: a character was probably "
                         "mistyped");
      }
    }
  }
}

TEST(PublicKeyText, SwappedAdjacentCharactersAreCaught) {
  const std::string text = sequentialKey().toText();
  for (size_t pos = 5; pos + 1 < text.size(); ++pos) {
    if (text[pos] == text[pos + 1]) continue;
    std::string t = text;
    std::swap(t[pos], t[pos + 1]);
    expectParseError(t, "checksum does not match");
  }
}

TEST(PublicKey, FromBytesChecksLength) {
  std::vector<uint8_t> b(31);
  Result<PublicKey> r = PublicKey::fromBytes(b);
  ASSERT_FALSE(r.isOk());
  EXPECT_NE(r.status().message().find("must be 32 bytes, got 31"), std::string::npos);
  b.resize(32, 7);
  ASSERT_TRUE(PublicKey::fromBytes(b).isOk());
  EXPECT_EQ(PublicKey::fromBytes(b)->bytes()[31], 7);
}

TEST(Signing, SignVerify) {
  Identity a = generateIdentity();
  Identity b = generateIdentity();
  EXPECT_NE(a.pub, b.pub);
  Signature sig = sign(a.secret, bytesOf("approve query 42"));
  EXPECT_TRUE(verify(a.pub, bytesOf("approve query 42"), sig));
  EXPECT_FALSE(verify(a.pub, bytesOf("approve query 43"), sig));
  EXPECT_FALSE(verify(b.pub, bytesOf("approve query 42"), sig));
  sig[5] ^= 1;
  EXPECT_FALSE(verify(a.pub, bytesOf("approve query 42"), sig));
}

// RFC 8032, section 7.1, test 1 (empty message).
TEST(Signing, VerifiesRfc8032Vector) {
  auto pk = PublicKey::fromBytes(
      fromHex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"));
  ASSERT_TRUE(pk.isOk());
  std::vector<uint8_t> s = fromHex(
      "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9"
      "b46bd25bf5f0595bbe24655141438e7a100b");
  Signature sig;
  std::copy(s.begin(), s.end(), sig.begin());
  EXPECT_TRUE(verify(*pk, {}, sig));
  EXPECT_FALSE(verify(*pk, bytesOf("x"), sig));
}

TEST(SecretKey, MoveLeavesUsableKey) {
  Identity a = generateIdentity();
  SecretKey moved = std::move(a.secret);
  Signature sig = sign(moved, bytesOf("m"));
  EXPECT_TRUE(verify(a.pub, bytesOf("m"), sig));
}

TEST(X25519, ConversionOfPublicAndSecretAgree) {
  Identity a = generateIdentity();
  X25519KeyPair kp = toX25519(a);
  Result<X25519PublicKey> fromPub = toX25519(a.pub);
  ASSERT_TRUE(fromPub.isOk());
  EXPECT_EQ(kp.pub, *fromPub);
  EXPECT_FALSE(toX25519(generateIdentity()).pub == kp.pub);
}

}  // namespace
}  // namespace trialmesh::crypto
