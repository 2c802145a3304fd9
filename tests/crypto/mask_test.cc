#include "crypto/mask.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <string>
#include <vector>

#include "crypto/seal.h"

namespace trialmesh::crypto {
namespace {

// Chi-square critical values at p = 1e-9 (Rscript: qchisq(1e-9, df, lower.tail = FALSE) and
// qchisq(1e-9, df)). Identities are random per run, so a test of uniformity must pass for every
// correct run with overwhelming probability; 1e-9 on each tail makes a false alarm negligible
// while a biased or structured stream (a counter, a repeated key, an unmasked value) exceeds the
// upper bound by orders of magnitude.
constexpr double kChi2Upper255 = 414.545;  // bytes: 256 buckets
constexpr double kChi2Lower255 = 141.927;
constexpr double kChi2Upper128 = 248.341;  // bits: 128 positions, 1 df each

struct Federation {
  std::vector<Identity> sites;  // sorted by public key
  std::vector<PublicKey> keys;  // ascending
};

Federation makeFederation(size_t n) {
  Federation f;
  for (size_t i = 0; i < n; ++i) f.sites.push_back(generateIdentity());
  std::sort(f.sites.begin(), f.sites.end(),
            [](const Identity& a, const Identity& b) { return a.pub < b.pub; });
  for (const auto& s : f.sites) f.keys.push_back(s.pub);
  return f;
}

std::vector<uint8_t> roundId(std::string_view s) { return {s.begin(), s.end()}; }

std::vector<MaskWord> maskOf(const Identity& self, std::span<const PublicKey> keys,
                             std::string_view round, size_t length) {
  auto m = pairwiseMask(self, keys, roundId(round), length);
  EXPECT_TRUE(m.isOk()) << m.status().toString();
  return m.isOk() ? *m : std::vector<MaskWord>(length, 0);
}

// Pearson's statistic of the 256 byte values over all bytes of `words`.
double byteChiSquare(const std::vector<MaskWord>& words) {
  std::array<double, 256> counts{};
  std::vector<uint8_t> bytes = maskWordsToBytes(words);
  for (uint8_t b : bytes) counts[b] += 1;
  const double expected = static_cast<double>(bytes.size()) / 256;
  double chi2 = 0;
  for (double c : counts) chi2 += (c - expected) * (c - expected) / expected;
  return chi2;
}

// Sum over the 128 bit positions of the squared z-score of that bit's frequency of ones.
double bitChiSquare(const std::vector<MaskWord>& words) {
  double chi2 = 0;
  const double n = static_cast<double>(words.size());
  for (int bit = 0; bit < 128; ++bit) {
    double ones = 0;
    for (MaskWord w : words) ones += static_cast<double>((w >> bit) & 1);
    chi2 += (ones - n / 2) * (ones - n / 2) / (n / 4);
  }
  return chi2;
}

TEST(PairwiseMask, MasksOfAllParticipantsSumToZero) {
  for (size_t n : {3u, 10u, 30u}) {
    SCOPED_TRACE("participants " + std::to_string(n));
    Federation f = makeFederation(n);
    // 600 words cross the 512-word chunk of the generator.
    for (size_t length : {1u, 3u, 600u}) {
      std::vector<MaskWord> sum(length, 0);
      size_t nonZero = 0;
      for (const auto& site : f.sites) {
        std::vector<MaskWord> m = maskOf(site, f.keys, "round-1", length);
        for (size_t w = 0; w < length; ++w) {
          sum[w] += m[w];
          nonZero += m[w] != 0;
        }
      }
      EXPECT_EQ(nonZero, n * length) << "length " << length;
      for (size_t w = 0; w < length; ++w) ASSERT_TRUE(sum[w] == 0) << "word " << w;
    }
  }
}

TEST(PairwiseMask, MaskedVectorsRevealOnlyTheirSum) {
  Federation f = makeFederation(10);
  const size_t length = 4096;
  std::vector<MaskWord> plainSum(length, 0), maskedSum(length, 0);
  for (size_t i = 0; i < f.sites.size(); ++i) {
    // Deterministic, highly structured plain vectors: small counts.
    std::vector<MaskWord> plain(length);
    for (size_t w = 0; w < length; ++w) plain[w] = (w * (i + 1)) % 50;
    auto masker = PairwiseMasker::create(f.sites[i], f.keys, roundId("q-7"));
    ASSERT_TRUE(masker.isOk()) << masker.status().toString();
    EXPECT_EQ(masker->selfRank(), i);
    EXPECT_EQ(masker->participantCount(), 10u);
    std::vector<MaskWord> masked = plain;
    ASSERT_TRUE(masker->addMask(masked).isOk());
    for (size_t w = 0; w < length; ++w) {
      ASSERT_FALSE(masked[w] == plain[w]) << "site " << i << " word " << w;
      plainSum[w] += plain[w];
      maskedSum[w] += masked[w];
    }
    const double bytes = byteChiSquare(masked);
    EXPECT_LT(bytes, kChi2Upper255) << "site " << i;
    EXPECT_GT(bytes, kChi2Lower255) << "site " << i;
    EXPECT_LT(bitChiSquare(masked), kChi2Upper128) << "site " << i;
    // The test itself can fail: the plain vector is far from uniform.
    EXPECT_GT(byteChiSquare(plain), 100 * kChi2Upper255);
  }
  for (size_t w = 0; w < length; ++w) ASSERT_TRUE(maskedSum[w] == plainSum[w]) << "word " << w;
}

TEST(PairwiseMask, DifferentRoundIdsGiveUnrelatedMasks) {
  Federation f = makeFederation(3);
  const size_t length = 4096;
  std::vector<MaskWord> a = maskOf(f.sites[1], f.keys, "round-1", length);
  std::vector<MaskWord> b = maskOf(f.sites[1], f.keys, "round-2", length);
  std::vector<MaskWord> again = maskOf(f.sites[1], f.keys, "round-1", length);
  EXPECT_EQ(a, again);  // deterministic for one round
  std::vector<MaskWord> diff(length), xors(length);
  size_t equalBytes = 0;
  std::vector<uint8_t> ab = maskWordsToBytes(a), bb = maskWordsToBytes(b);
  for (size_t k = 0; k < ab.size(); ++k) equalBytes += ab[k] == bb[k];
  for (size_t w = 0; w < length; ++w) {
    diff[w] = a[w] - b[w];
    xors[w] = a[w] ^ b[w];
  }
  // Unrelated streams: their difference and xor look uniform too, and about 1/256 of the bytes
  // agree by chance (expected 256, sd 16).
  EXPECT_LT(byteChiSquare(diff), kChi2Upper255);
  EXPECT_LT(byteChiSquare(xors), kChi2Upper255);
  EXPECT_LT(bitChiSquare(xors), kChi2Upper128);
  EXPECT_LT(equalBytes, 256u + 8 * 16);
}

TEST(PairwiseMask, TamperedParticipantListBreaksCancellation) {
  Federation f = makeFederation(5);
  Identity outsider = generateIdentity();
  const size_t length = 64;
  // Site 2 is given a list in which site 4 is replaced by an outsider; everyone else uses the
  // signed list. Site 2 is still in its list, so it computes masks without complaint.
  std::vector<PublicKey> tampered = f.keys;
  tampered[4] = outsider.pub;
  std::sort(tampered.begin(), tampered.end());
  ASSERT_TRUE(std::find(tampered.begin(), tampered.end(), f.sites[2].pub) != tampered.end());
  std::vector<MaskWord> sum(length, 0);
  for (size_t i = 0; i < f.sites.size(); ++i) {
    auto m =
        maskOf(f.sites[i], i == 2 ? std::span<const PublicKey>(tampered) : f.keys, "r", length);
    for (size_t w = 0; w < length; ++w) sum[w] += m[w];
  }
  size_t zero = 0;
  for (MaskWord w : sum) zero += w == 0;
  EXPECT_EQ(zero, 0u);

  // A list that only adds a participant (whose vector never arrives) changes every pair key
  // too: the list hash is bound into the key derivation.
  std::vector<PublicKey> longer = f.keys;
  longer.push_back(outsider.pub);
  std::sort(longer.begin(), longer.end());
  std::vector<MaskWord> honest = maskOf(f.sites[0], f.keys, "r", length);
  std::vector<MaskWord> padded = maskOf(f.sites[0], longer, "r", length);
  size_t same = 0;
  for (size_t w = 0; w < length; ++w) same += honest[w] == padded[w];
  EXPECT_EQ(same, 0u);

  // A different round id at one site breaks cancellation as well.
  std::vector<MaskWord> sum2(length, 0);
  for (size_t i = 0; i < f.sites.size(); ++i) {
    auto m = maskOf(f.sites[i], f.keys, i == 3 ? "r'" : "r", length);
    for (size_t w = 0; w < length; ++w) sum2[w] += m[w];
  }
  zero = 0;
  for (MaskWord w : sum2) zero += w == 0;
  EXPECT_EQ(zero, 0u);
}

TEST(PairwiseMask, MaskingInPiecesEqualsMaskingAtOnce) {
  Federation f = makeFederation(4);
  auto masker = PairwiseMasker::create(f.sites[2], f.keys, roundId("pieces"));
  ASSERT_TRUE(masker.isOk());
  const size_t length = 1500;
  std::vector<MaskWord> whole(length, 7);
  ASSERT_TRUE(masker->addMask(whole).isOk());
  std::vector<MaskWord> pieces(length, 7);
  // Odd offsets start inside a ChaCha20 block; 513 crosses the generator's chunk.
  size_t at = 0;
  for (size_t step : {1u, 3u, 5u, 513u, 2u, 700u}) {
    step = std::min(step, length - at);
    ASSERT_TRUE(masker->addMask(std::span<MaskWord>(pieces).subspan(at, step), at).isOk());
    at += step;
  }
  ASSERT_TRUE(masker->addMask(std::span<MaskWord>(pieces).subspan(at), at).isOk());
  EXPECT_EQ(whole, pieces);

  std::vector<MaskWord> one(1, 0);
  Status beyond = masker->addMask(one, kMaxMaskWords);
  ASSERT_FALSE(beyond.isOk());
  EXPECT_NE(beyond.message().find("at most 2^34 words"), std::string::npos);
}

TEST(PairwiseMask, BadParticipantListsAreRefused) {
  Federation f = makeFederation(3);
  auto expectError = [&](std::span<const PublicKey> keys, std::string_view round,
                         const std::string& fragment) {
    auto r = PairwiseMasker::create(f.sites[1], keys, roundId(round));
    ASSERT_FALSE(r.isOk()) << fragment;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find(fragment), std::string::npos) << r.status().message();
  };
  std::vector<PublicKey> reversed(f.keys.rbegin(), f.keys.rend());
  expectError(reversed, "r", "not in strictly ascending key order at position 1");
  std::vector<PublicKey> dup = {f.keys[0], f.keys[1], f.keys[1], f.keys[2]};
  expectError(dup, "r", "appears twice");
  std::vector<PublicKey> withoutSelf = {f.keys[0], f.keys[2]};
  expectError(withoutSelf, "r", "is not in the round's participant list");
  std::vector<PublicKey> alone = {f.keys[1]};
  expectError(alone, "r", "at least 2 participants");
  expectError(f.keys, "", "round id has 0 bytes");
  expectError(f.keys, std::string(kMaxRoundIdBytes + 1, 'x'), "round id has 257 bytes");
  // The Ed25519 identity point (y = 1) is of small order; no shared key may come from it.
  std::array<uint8_t, kPublicKeyBytes> identityPoint{};
  identityPoint[0] = 1;
  std::vector<PublicKey> weak = f.keys;
  weak.push_back(PublicKey(identityPoint));
  std::sort(weak.begin(), weak.end());
  expectError(weak, "r", "participant key " + PublicKey(identityPoint).toText());
}

TEST(PairwiseMask, WireFormRoundTripsThroughASealedBox) {
  Federation f = makeFederation(3);
  X25519KeyPair coordinator = generateX25519KeyPair();
  const size_t length = 100;
  std::vector<MaskWord> received(length, 0);
  for (size_t i = 0; i < 3; ++i) {
    std::vector<MaskWord> v(length);
    for (size_t w = 0; w < length; ++w) v[w] = (MaskWord{i + 1} << 100) | w;
    auto masker = PairwiseMasker::create(f.sites[i], f.keys, roundId("seal"));
    ASSERT_TRUE(masker.isOk());
    ASSERT_TRUE(masker->addMask(v).isOk());
    std::vector<uint8_t> box = sealTo(coordinator.pub, maskWordsToBytes(v));
    EXPECT_EQ(box.size(), length * kMaskWordBytes + kSealOverheadBytes);
    auto opened = openSealed(coordinator, box);
    ASSERT_TRUE(opened.isOk());
    auto words = maskWordsFromBytes(*opened);
    ASSERT_TRUE(words.isOk());
    EXPECT_EQ(*words, v);
    for (size_t w = 0; w < length; ++w) received[w] += (*words)[w];
  }
  for (size_t w = 0; w < length; ++w)
    ASSERT_TRUE(received[w] == ((MaskWord{6} << 100) + 3 * w)) << "word " << w;

  // Little-endian: word 1 at byte 0, 2^120 at byte 15.
  std::vector<MaskWord> probe = {1, MaskWord{1} << 120};
  std::vector<uint8_t> b = maskWordsToBytes(probe);
  EXPECT_EQ(b[0], 1);
  EXPECT_EQ(b[31], 1);
  std::vector<uint8_t> odd(17, 0);
  auto bad = maskWordsFromBytes(odd);
  ASSERT_FALSE(bad.isOk());
  EXPECT_NE(bad.status().message().find("17 bytes"), std::string::npos);
}

TEST(PairwiseMask, ParticipantListHashDependsOnEveryKeyAndOrder) {
  Federation f = makeFederation(3);
  std::vector<PublicKey> swapped = {f.keys[1], f.keys[0], f.keys[2]};
  EXPECT_NE(participantListHash(f.keys), participantListHash(swapped));
  std::vector<PublicKey> shorter = {f.keys[0], f.keys[1]};
  EXPECT_NE(participantListHash(f.keys), participantListHash(shorter));
  std::vector<uint8_t> concat;
  for (const auto& k : f.keys) concat.insert(concat.end(), k.bytes().begin(), k.bytes().end());
  EXPECT_EQ(participantListHash(f.keys), sha256(concat));
}

}  // namespace
}  // namespace trialmesh::crypto
