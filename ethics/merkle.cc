#include "ethics/merkle.h"

#include <bit>
#include <string>

#include "crypto/hash.h"

namespace trialmesh::ethics {
namespace {

// The largest power of two strictly smaller than n. REQUIRES: n >= 2.
uint64_t splitPoint(uint64_t n) { return std::bit_floor(n - 1); }

// Number of proof hashes below and above the point where the paths to leaf `index` and to the
// last leaf of a tree of `size` leaves merge (transparency-dev/merkle proof/verify.go).
struct Decomposition {
  uint64_t inner;
  uint64_t border;
};
Decomposition decompose(uint64_t index, uint64_t size) {
  const uint64_t inner = static_cast<uint64_t>(std::bit_width(index ^ (size - 1)));
  const uint64_t border = static_cast<uint64_t>(std::popcount(index >> inner));
  return {inner, border};
}

Hash chainInner(Hash seed, std::span<const Hash> proof, uint64_t index) {
  for (size_t i = 0; i < proof.size(); ++i) {
    seed = ((index >> i) & 1) == 0 ? nodeHash(seed, proof[i]) : nodeHash(proof[i], seed);
  }
  return seed;
}

Hash chainInnerRight(Hash seed, std::span<const Hash> proof, uint64_t index) {
  for (size_t i = 0; i < proof.size(); ++i) {
    if (((index >> i) & 1) == 1) seed = nodeHash(proof[i], seed);
  }
  return seed;
}

Hash chainBorderRight(Hash seed, std::span<const Hash> proof) {
  for (const Hash& h : proof) seed = nodeHash(h, seed);
  return seed;
}

}  // namespace

Hash leafHash(std::span<const uint8_t> entry) {
  std::string buf;
  buf.reserve(entry.size() + 1);
  buf.push_back('\x00');
  buf.append(reinterpret_cast<const char*>(entry.data()), entry.size());
  return crypto::sha256(buf);
}

Hash nodeHash(const Hash& left, const Hash& right) {
  uint8_t buf[1 + 2 * sizeof(Hash)];
  buf[0] = 0x01;
  std::copy(left.begin(), left.end(), buf + 1);
  std::copy(right.begin(), right.end(), buf + 1 + left.size());
  return crypto::sha256(std::span<const uint8_t>(buf, sizeof buf));
}

Hash emptyRoot() { return crypto::sha256(std::string_view()); }

std::string hashHex(const Hash& hash) { return crypto::toHex(hash); }
std::string shortHex(const Hash& hash) { return hashHex(hash).substr(0, 8) + "…"; }

void MerkleTree::append(const Hash& leaf) {
  if (levels_.empty()) levels_.emplace_back();
  levels_[0].push_back(leaf);
  // Every time a level gets an even count, its last two hashes complete a subtree one level up.
  for (size_t k = 0; levels_[k].size() % 2 == 0; ++k) {
    const auto& level = levels_[k];
    Hash parent = nodeHash(level[level.size() - 2], level[level.size() - 1]);
    if (levels_.size() == k + 1) levels_.emplace_back();
    levels_[k + 1].push_back(parent);
  }
}

void MerkleTree::popBack() {
  levels_[0].pop_back();
  for (size_t k = 0; k + 1 < levels_.size(); ++k) {
    while (levels_[k + 1].size() > levels_[k].size() / 2) levels_[k + 1].pop_back();
  }
}

namespace {

// MTH(D[begin:end]) from the complete subtrees a NodeSource holds. REQUIRES: begin < end.
Result<Hash> subtreeHash(const NodeSource& src, uint64_t begin, uint64_t end) {
  const uint64_t n = end - begin;
  if (std::has_single_bit(n) && begin % n == 0) {
    const int k = std::countr_zero(n);
    return src.node(static_cast<unsigned>(k), begin >> k);
  }
  const uint64_t k = splitPoint(n);
  TM_ASSIGN_OR_RETURN(Hash left, subtreeHash(src, begin, begin + k));
  TM_ASSIGN_OR_RETURN(Hash right, subtreeHash(src, begin + k, end));
  return nodeHash(left, right);
}

}  // namespace

Result<Hash> rootOf(const NodeSource& src, uint64_t treeSize) {
  return treeSize == 0 ? emptyRoot() : subtreeHash(src, 0, treeSize);
}

Result<std::vector<Hash>> inclusionProofOf(const NodeSource& src, uint64_t index,
                                           uint64_t treeSize) {
  // Iterative form of PATH(m, D[n]): descend towards the leaf, then reverse so the proof runs
  // leaf to root.
  std::vector<Hash> rev;
  uint64_t begin = 0;
  uint64_t end = treeSize;
  while (end - begin > 1) {
    const uint64_t k = splitPoint(end - begin);
    if (index < begin + k) {
      TM_ASSIGN_OR_RETURN(Hash h, subtreeHash(src, begin + k, end));
      rev.push_back(h);
      end = begin + k;
    } else {
      TM_ASSIGN_OR_RETURN(Hash h, subtreeHash(src, begin, begin + k));
      rev.push_back(h);
      begin += k;
    }
  }
  return std::vector<Hash>(rev.rbegin(), rev.rend());
}

Result<std::vector<Hash>> consistencyProofOf(const NodeSource& src, uint64_t size1,
                                             uint64_t size2) {
  if (size1 == 0 || size1 == size2) return std::vector<Hash>{};
  // SUBPROOF(m, D[begin:end], b) of RFC 6962 §2.1.2, collected root-side last.
  std::vector<Hash> rev;
  uint64_t m = size1;
  uint64_t begin = 0;
  uint64_t end = size2;
  bool complete = true;
  while (true) {
    const uint64_t n = end - begin;
    if (m == n) {
      if (!complete) {
        TM_ASSIGN_OR_RETURN(Hash h, subtreeHash(src, begin, end));
        rev.push_back(h);
      }
      break;
    }
    const uint64_t k = splitPoint(n);
    if (m <= k) {
      TM_ASSIGN_OR_RETURN(Hash h, subtreeHash(src, begin + k, end));
      rev.push_back(h);
      end = begin + k;
    } else {
      TM_ASSIGN_OR_RETURN(Hash h, subtreeHash(src, begin, begin + k));
      rev.push_back(h);
      m -= k;
      begin += k;
      complete = false;
    }
  }
  return std::vector<Hash>(rev.rbegin(), rev.rend());
}

Hash CompactRange::root() const {
  if (hashes_.empty()) return emptyRoot();
  Hash h = hashes_.back();
  for (size_t i = hashes_.size() - 1; i-- > 0;) h = nodeHash(hashes_[i], h);
  return h;
}

Hash MerkleTree::root() const { return rootOf(*this, size()).value(); }

Result<Hash> MerkleTree::rootAt(uint64_t treeSize) const {
  if (treeSize > size()) {
    return Status::invalidArgument("tree size " + std::to_string(treeSize) +
                                   " is beyond the log's " + std::to_string(size()) + " entries");
  }
  return rootOf(*this, treeSize);
}

Result<std::vector<Hash>> MerkleTree::inclusionProof(uint64_t index, uint64_t treeSize) const {
  if (treeSize > size() || index >= treeSize) {
    return Status::invalidArgument("no inclusion proof for entry " + std::to_string(index) +
                                   " at tree size " + std::to_string(treeSize) + ": the log has " +
                                   std::to_string(size()) +
                                   " entries and the entry must be below the tree size");
  }
  return inclusionProofOf(*this, index, treeSize);
}

Result<std::vector<Hash>> MerkleTree::consistencyProof(uint64_t size1, uint64_t size2) const {
  if (size1 > size2 || size2 > size()) {
    return Status::invalidArgument("no consistency proof from size " + std::to_string(size1) +
                                   " to size " + std::to_string(size2) + ": the log has " +
                                   std::to_string(size()) +
                                   " entries and the first size must not exceed the second");
  }
  return consistencyProofOf(*this, size1, size2);
}

Result<Hash> rootFromInclusionProof(uint64_t index, uint64_t treeSize, const Hash& leaf,
                                    std::span<const Hash> proof) {
  if (index >= treeSize) {
    return Status::invalidArgument("inclusion proof for leaf " + std::to_string(index) +
                                   " in a tree of " + std::to_string(treeSize) +
                                   ": the leaf index must be below the tree size");
  }
  const auto [inner, border] = decompose(index, treeSize);
  if (proof.size() != inner + border) {
    return Status::corruption("inclusion proof for leaf " + std::to_string(index) +
                              " in a tree of " + std::to_string(treeSize) + " has " +
                              std::to_string(proof.size()) + " hashes; it must have " +
                              std::to_string(inner + border));
  }
  Hash h = chainInner(leaf, proof.first(inner), index);
  return chainBorderRight(h, proof.subspan(inner));
}

Status verifyInclusion(uint64_t index, uint64_t treeSize, const Hash& leaf,
                       std::span<const Hash> proof, const Hash& root) {
  TM_ASSIGN_OR_RETURN(Hash computed, rootFromInclusionProof(index, treeSize, leaf, proof));
  if (computed != root) {
    return Status::corruption("inclusion proof for leaf " + std::to_string(index) +
                              " in a tree of " + std::to_string(treeSize) + ": computed root " +
                              hashHex(computed) + " does not match expected root " + hashHex(root));
  }
  return Status::ok();
}

Status verifyConsistency(uint64_t size1, uint64_t size2, const Hash& root1, const Hash& root2,
                         std::span<const Hash> proof) {
  const std::string what =
      "consistency proof from size " + std::to_string(size1) + " to " + std::to_string(size2);
  if (size2 < size1) {
    return Status::invalidArgument(what + ": the second tree is smaller than the first");
  }
  if (size1 == size2) {
    if (!proof.empty()) {
      return Status::corruption(what + ": equal sizes need an empty proof, got " +
                                std::to_string(proof.size()) + " hashes");
    }
    if (root1 != root2) {
      return Status::corruption(what + ": same size but roots differ (" + hashHex(root1) + " vs " +
                                hashHex(root2) + ")");
    }
    return Status::ok();
  }
  if (size1 == 0) {
    if (!proof.empty()) {
      return Status::corruption(what + ": an empty first tree needs an empty proof, got " +
                                std::to_string(proof.size()) + " hashes");
    }
    return Status::ok();
  }
  if (proof.empty()) return Status::corruption(what + ": the proof is empty");

  auto [inner, border] = decompose(size1 - 1, size2);
  const int shift = std::countr_zero(size1);
  inner -= static_cast<uint64_t>(shift);
  // When size1 is a power of two, its root is itself a node of the larger tree and the proof
  // omits it; otherwise the proof starts with the hash of the subtree that ends at size1.
  Hash seed = root1;
  size_t start = 0;
  if (size1 != (uint64_t{1} << shift)) {
    seed = proof[0];
    start = 1;
  }
  if (proof.size() != start + inner + border) {
    return Status::corruption(what + " has " + std::to_string(proof.size()) +
                              " hashes; it must have " + std::to_string(start + inner + border));
  }
  std::span<const Hash> rest = proof.subspan(start);
  const uint64_t mask = (size1 - 1) >> shift;

  Hash h1 = chainInnerRight(seed, rest.first(inner), mask);
  h1 = chainBorderRight(h1, rest.subspan(inner));
  if (h1 != root1) {
    return Status::corruption(what + ": computed first root " + hashHex(h1) +
                              " does not match expected first root " + hashHex(root1));
  }
  Hash h2 = chainInner(seed, rest.first(inner), mask);
  h2 = chainBorderRight(h2, rest.subspan(inner));
  if (h2 != root2) {
    return Status::corruption(what + ": computed second root " + hashHex(h2) +
                              " does not match expected second root " + hashHex(root2));
  }
  return Status::ok();
}

}  // namespace trialmesh::ethics
