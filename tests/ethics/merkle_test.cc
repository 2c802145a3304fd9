// RFC 6962 Merkle tree: published known-answer vectors, and randomized comparison with a naive
// recursive implementation of the RFC's definitions written here.
#include "ethics/merkle.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

namespace trialmesh::ethics {
namespace {

std::vector<uint8_t> fromHex(std::string_view hex) {
  std::vector<uint8_t> out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<uint8_t>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
  }
  return out;
}
Hash h(std::string_view hex) {
  auto v = fromHex(hex);
  Hash out{};
  std::copy(v.begin(), v.end(), out.begin());
  return out;
}

// Known-answer vectors from transparency-dev/merkle, proof/verify_test.go (the same data as
// google/certificate-transparency's merkle_tree_test): leaf inputs, roots of the trees of the
// first 1..8 leaves, and inclusion/consistency proofs. Leaf numbers there are 1-based.
const std::vector<std::string> kLeaves = {"",
                                          "00",
                                          "10",
                                          "2021",
                                          "3031",
                                          "40414243",
                                          "5051525354555657",
                                          "606162636465666768696a6b6c6d6e6f"};
const std::vector<std::string> kRoots = {
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"};

struct InclusionVector {
  uint64_t leaf;  // 1-based, as in the source
  uint64_t size;
  std::vector<std::string> proof;
};
const std::vector<InclusionVector> kInclusion = {
    {1, 1, {}},
    {1,
     8,
     {"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
      "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
      "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"}},
    {6,
     8,
     {"bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
      "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
      "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"}},
    {3, 3, {"fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"}},
    {2,
     5,
     {"6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
      "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
      "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"}},
};

struct ConsistencyVector {
  uint64_t size1;
  uint64_t size2;
  std::vector<std::string> proof;
};
const std::vector<ConsistencyVector> kConsistency = {
    {1, 1, {}},
    {1,
     8,
     {"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
      "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
      "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"}},
    {6,
     8,
     {"0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
      "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
      "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"}},
    {2,
     5,
     {"5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
      "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"}},
    {6,
     7,
     {"0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
      "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
      "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"}},
};

std::vector<Hash> hashes(const std::vector<std::string>& hex) {
  std::vector<Hash> out;
  for (const auto& x : hex) out.push_back(h(x));
  return out;
}

MerkleTree vectorTree() {
  MerkleTree t;
  for (const auto& leaf : kLeaves) t.append(leafHash(fromHex(leaf)));
  return t;
}

// ---- Naive RFC 6962 definitions, straight from the text ----
uint64_t naiveSplit(uint64_t n) {
  uint64_t k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}
Hash naiveMth(const std::vector<Hash>& leaves, uint64_t b, uint64_t e) {
  if (e == b) return emptyRoot();
  if (e - b == 1) return leaves[b];
  const uint64_t k = naiveSplit(e - b);
  return nodeHash(naiveMth(leaves, b, b + k), naiveMth(leaves, b + k, e));
}
std::vector<Hash> naivePath(uint64_t m, const std::vector<Hash>& leaves, uint64_t b, uint64_t e) {
  if (e - b <= 1) return {};
  const uint64_t k = naiveSplit(e - b);
  std::vector<Hash> p;
  if (m < k) {
    p = naivePath(m, leaves, b, b + k);
    p.push_back(naiveMth(leaves, b + k, e));
  } else {
    p = naivePath(m - k, leaves, b + k, e);
    p.push_back(naiveMth(leaves, b, b + k));
  }
  return p;
}
std::vector<Hash> naiveSubproof(uint64_t m, const std::vector<Hash>& leaves, uint64_t b, uint64_t e,
                                bool complete) {
  const uint64_t n = e - b;
  if (m == n) {
    if (complete) return {};
    return {naiveMth(leaves, b, e)};
  }
  const uint64_t k = naiveSplit(n);
  std::vector<Hash> p;
  if (m <= k) {
    p = naiveSubproof(m, leaves, b, b + k, complete);
    p.push_back(naiveMth(leaves, b + k, e));
  } else {
    p = naiveSubproof(m - k, leaves, b + k, e, false);
    p.push_back(naiveMth(leaves, b, b + k));
  }
  return p;
}

TEST(MerkleTest, EmptyTreeRootIsSha256OfNothing) {
  EXPECT_EQ(hashHex(emptyRoot()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(MerkleTree().root(), emptyRoot());
}

TEST(MerkleTest, KnownAnswerRootsForSizes1To8) {
  MerkleTree t;
  for (size_t i = 0; i < kLeaves.size(); ++i) {
    t.append(leafHash(fromHex(kLeaves[i])));
    EXPECT_EQ(hashHex(t.root()), kRoots[i]) << "size " << i + 1;
  }
  for (size_t i = 0; i < kLeaves.size(); ++i) {
    EXPECT_EQ(hashHex(t.rootAt(i + 1).value()), kRoots[i]) << "rootAt " << i + 1;
  }
}

TEST(MerkleTest, KnownAnswerInclusionProofs) {
  const MerkleTree t = vectorTree();
  for (const auto& v : kInclusion) {
    SCOPED_TRACE("leaf " + std::to_string(v.leaf) + " size " + std::to_string(v.size));
    const auto want = hashes(v.proof);
    auto got = t.inclusionProof(v.leaf - 1, v.size);
    ASSERT_TRUE(got.isOk()) << got.status().toString();
    EXPECT_EQ(*got, want);
    const Hash leaf = leafHash(fromHex(kLeaves[v.leaf - 1]));
    EXPECT_TRUE(verifyInclusion(v.leaf - 1, v.size, leaf, want, h(kRoots[v.size - 1])).isOk());
  }
}

TEST(MerkleTest, KnownAnswerConsistencyProofs) {
  const MerkleTree t = vectorTree();
  for (const auto& v : kConsistency) {
    SCOPED_TRACE(std::to_string(v.size1) + " -> " + std::to_string(v.size2));
    const auto want = hashes(v.proof);
    auto got = t.consistencyProof(v.size1, v.size2);
    ASSERT_TRUE(got.isOk());
    EXPECT_EQ(*got, want);
    EXPECT_TRUE(
        verifyConsistency(v.size1, v.size2, h(kRoots[v.size1 - 1]), h(kRoots[v.size2 - 1]), want)
            .isOk());
  }
}

TEST(MerkleTest, CorruptedInclusionProofsAreRefusedWithTheMismatchNamed) {
  const MerkleTree t = vectorTree();
  const auto& v = kInclusion[2];  // leaf 6 of 8
  const auto proof = hashes(v.proof);
  const Hash leaf = leafHash(fromHex(kLeaves[5]));
  const Hash root = h(kRoots[7]);
  // Wrong index, size, leaf, root; truncated, extended, bit-flipped proofs.
  EXPECT_FALSE(verifyInclusion(4, 8, leaf, proof, root).isOk());
  EXPECT_FALSE(verifyInclusion(6, 8, leaf, proof, root).isOk());
  EXPECT_FALSE(verifyInclusion(5, 16, leaf, proof, root).isOk());
  EXPECT_FALSE(verifyInclusion(5, 4, leaf, proof, root).isOk());
  EXPECT_FALSE(verifyInclusion(5, 8, leafHash(fromHex("00")), proof, root).isOk());
  Status s = verifyInclusion(5, 8, leaf, proof, emptyRoot());
  EXPECT_EQ(s.code(), StatusCode::kCorruption);
  EXPECT_NE(s.message().find("does not match expected root"), std::string::npos) << s.message();
  auto shorter = proof;
  shorter.pop_back();
  s = verifyInclusion(5, 8, leaf, shorter, root);
  EXPECT_NE(s.message().find("has 2 hashes; it must have 3"), std::string::npos) << s.message();
  auto longer = proof;
  longer.push_back(root);
  EXPECT_FALSE(verifyInclusion(5, 8, leaf, longer, root).isOk());
  for (size_t i = 0; i < proof.size(); ++i) {
    auto bad = proof;
    bad[i][0] ^= 8;
    EXPECT_FALSE(verifyInclusion(5, 8, leaf, bad, root).isOk()) << "flipped proof[" << i << "]";
  }
  EXPECT_EQ(verifyInclusion(8, 8, leaf, proof, root).code(), StatusCode::kInvalidArgument);
}

TEST(MerkleTest, CorruptedConsistencyProofsAreRefused) {
  const auto& v = kConsistency[2];  // 6 -> 8
  const auto proof = hashes(v.proof);
  const Hash r1 = h(kRoots[5]), r2 = h(kRoots[7]);
  ASSERT_TRUE(verifyConsistency(6, 8, r1, r2, proof).isOk());
  EXPECT_FALSE(verifyConsistency(5, 8, r1, r2, proof).isOk());
  EXPECT_FALSE(verifyConsistency(7, 8, r1, r2, proof).isOk());
  EXPECT_FALSE(verifyConsistency(6, 16, r1, r2, proof).isOk());
  EXPECT_FALSE(verifyConsistency(6, 8, r2, r1, proof).isOk());
  EXPECT_FALSE(verifyConsistency(6, 8, r1, r2, {}).isOk());
  Status s = verifyConsistency(6, 8, emptyRoot(), r2, proof);
  EXPECT_NE(s.message().find("first root"), std::string::npos) << s.message();
  s = verifyConsistency(6, 8, r1, emptyRoot(), proof);
  EXPECT_NE(s.message().find("second root"), std::string::npos) << s.message();
  for (size_t i = 0; i < proof.size(); ++i) {
    auto bad = proof;
    bad[i][0] ^= 16;
    EXPECT_FALSE(verifyConsistency(6, 8, r1, r2, bad).isOk()) << "flipped proof[" << i << "]";
  }
  auto trailing = proof;
  trailing.push_back(r1);
  EXPECT_FALSE(verifyConsistency(6, 8, r1, r2, trailing).isOk());
  // Edge sizes.
  EXPECT_TRUE(verifyConsistency(0, 8, emptyRoot(), r2, {}).isOk());
  EXPECT_TRUE(verifyConsistency(8, 8, r2, r2, {}).isOk());
  EXPECT_FALSE(verifyConsistency(8, 8, r1, r2, {}).isOk());
  EXPECT_EQ(verifyConsistency(8, 6, r2, r1, {}).code(), StatusCode::kInvalidArgument);
}

TEST(MerkleTest, RandomTreesMatchNaiveDefinitions) {
  std::mt19937_64 rng(20260501);
  std::vector<Hash> leaves;
  MerkleTree t;
  for (uint64_t n = 1; n <= 300; ++n) {
    Hash leaf{};
    for (auto& b : leaf) b = static_cast<uint8_t>(rng());
    leaves.push_back(leaf);
    t.append(leaf);
    ASSERT_EQ(t.root(), naiveMth(leaves, 0, n)) << "n=" << n;
    for (int probe = 0; probe < 4; ++probe) {
      const uint64_t m = rng() % n;
      const uint64_t size = m + 1 + rng() % (n - m);
      auto p = t.inclusionProof(m, size);
      ASSERT_TRUE(p.isOk());
      ASSERT_EQ(*p, naivePath(m, leaves, 0, size)) << m << "/" << size;
      ASSERT_TRUE(verifyInclusion(m, size, leaves[m], *p, naiveMth(leaves, 0, size)).isOk());
      const uint64_t s1 = rng() % (n + 1);
      auto c = t.consistencyProof(s1, n);
      ASSERT_TRUE(c.isOk());
      const auto want =
          (s1 == 0 || s1 == n) ? std::vector<Hash>{} : naiveSubproof(s1, leaves, 0, n, true);
      ASSERT_EQ(*c, want) << s1 << "->" << n;
      ASSERT_TRUE(
          verifyConsistency(s1, n, naiveMth(leaves, 0, s1), naiveMth(leaves, 0, n), *c).isOk())
          << s1 << "->" << n;
      if (!c->empty()) {
        auto bad = *c;
        bad[rng() % bad.size()][rng() % 32] ^= 1;
        ASSERT_FALSE(
            verifyConsistency(s1, n, naiveMth(leaves, 0, s1), naiveMth(leaves, 0, n), bad).isOk());
      }
    }
  }
}

TEST(MerkleTest, PopBackRestoresThePreviousTree) {
  MerkleTree t = vectorTree();
  for (int n = 8; n > 0; --n) {
    EXPECT_EQ(hashHex(t.root()), kRoots[static_cast<size_t>(n - 1)]);
    t.popBack();
  }
  EXPECT_EQ(t.size(), 0u);
  t.append(leafHash(fromHex(kLeaves[0])));
  EXPECT_EQ(hashHex(t.root()), kRoots[0]);
}

TEST(MerkleTest, OutOfRangeRequestsAreInvalidArgument) {
  const MerkleTree t = vectorTree();
  EXPECT_EQ(t.inclusionProof(8, 8).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(t.inclusionProof(0, 9).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(t.consistencyProof(5, 4).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(t.rootAt(9).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace trialmesh::ethics
