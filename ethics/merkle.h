// RFC 6962 / RFC 9162 Merkle hash trees for the audit log: hashing, roots, inclusion and
// consistency proofs, and their verification.
//
// Hashing (the whole of it is in leafHash/nodeHash, as in transparency-dev/merkle's
// rfc6962.go): leaf = SHA-256(0x00 || entry), node = SHA-256(0x01 || left || right), and the
// root of the empty tree is SHA-256(""). The domain-separation prefixes keep a leaf from ever
// being passed off as an inner node.
//
// Verification functions are pure: they take sizes, hashes and a proof and return a Status.
// Every failure is kCorruption (a proof or root from a peer does not check out) or
// kInvalidArgument (impossible sizes/indices), and the message names what mismatched, e.g.
// "inclusion proof for leaf 5 in tree of 8: computed root 1a2b… does not match expected root
// 5dc9…".
//
// Thread-safety: free functions are thread-safe. MerkleTree is a plain value: const methods
// may run concurrently; append() needs exclusive access.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "common/status.h"
#include "crypto/hash.h"

namespace trialmesh::ethics {

using Hash = crypto::Sha256Digest;

// SHA-256(0x00 || entry).
Hash leafHash(std::span<const uint8_t> entry);
// SHA-256(0x01 || left || right).
Hash nodeHash(const Hash& left, const Hash& right);
// SHA-256 of the empty string: the root of a tree with no leaves.
Hash emptyRoot();

// Where the RFC algorithms below get tree hashes from: node(k, j) = MTH of leaves
// [j*2^k, (j+1)*2^k), the hash of a complete, aligned subtree. MerkleTree keeps these in
// memory; AuditLog reads them from its RocksDB store, so it never needs the whole tree in RAM.
// Errors from node() (e.g. IOError from storage) are passed through unchanged.
class NodeSource {
 public:
  virtual ~NodeSource() = default;
  virtual Result<Hash> node(unsigned level, uint64_t index) const = 0;
};

// RFC 6962 algorithms over any NodeSource that holds every complete subtree of the first
// `treeSize` leaves. The caller checks sizes (these only REQUIRE index < treeSize, size1 <=
// size2). rootOf(src, 0) is emptyRoot().
Result<Hash> rootOf(const NodeSource& source, uint64_t treeSize);
Result<std::vector<Hash>> inclusionProofOf(const NodeSource& source, uint64_t index,
                                           uint64_t treeSize);
Result<std::vector<Hash>> consistencyProofOf(const NodeSource& source, uint64_t size1,
                                             uint64_t size2);

// The compact range [0, size) of a growing tree (its "frontier"): the roots of the maximal
// complete subtrees covering it, one per set bit of size, largest first. Enough to compute the
// root (popcount(size) - 1 hashes) and to append, without keeping any other hash. A plain
// value; not thread-safe.
class CompactRange {
 public:
  CompactRange() = default;
  // REQUIRES: hashes.size() == popcount(size), largest subtree first.
  CompactRange(uint64_t size, std::vector<Hash> hashes) : size_(size), hashes_(std::move(hashes)) {}

  // Appends a leaf. For every complete subtree the leaf finishes (the leaf itself included),
  // calls onNode(level, index, hash), so a caller can store the nodes proofs need.
  template <typename OnNode>
  void append(const Hash& leaf, OnNode&& onNode) {
    Hash cur = leaf;
    uint64_t index = size_;
    unsigned level = 0;
    onNode(level, index, cur);
    while ((index & 1) != 0) {
      cur = nodeHash(hashes_.back(), cur);
      hashes_.pop_back();
      index >>= 1;
      ++level;
      onNode(level, index, cur);
    }
    hashes_.push_back(cur);
    ++size_;
  }
  void append(const Hash& leaf) {
    append(leaf, [](unsigned, uint64_t, const Hash&) {});
  }
  uint64_t size() const { return size_; }
  const std::vector<Hash>& hashes() const { return hashes_; }
  Hash root() const;

 private:
  uint64_t size_ = 0;
  std::vector<Hash> hashes_;
};

// An append-only Merkle tree held in memory as leaf hashes plus, for each level k, the hashes
// of every complete, aligned subtree of 2^k leaves (about 2 hashes per leaf in total: 64 MiB
// at 1M leaves). Any MTH(D[a:b]) the RFC algorithms ask for is then at most O(log n) cached
// subtrees combined, so roots and proofs cost O(log^2 n) hashes at worst and appends are
// amortised O(1).
class MerkleTree final : public NodeSource {
 public:
  MerkleTree() = default;

  // Appends one leaf by its leaf hash (leafHash(entry)).
  void append(const Hash& leafHash);
  uint64_t size() const { return levels_.empty() ? 0 : levels_[0].size(); }
  // REQUIRES: index < size().
  const Hash& leafHashAt(uint64_t index) const { return levels_[0][index]; }

  // Undoes the last append (AuditLog uses it to roll back when a durable write fails).
  // REQUIRES: size() > 0.
  void popBack();

  // The root of the current tree (emptyRoot() when empty).
  Hash root() const;
  // The root of the first `treeSize` leaves. InvalidArgument if treeSize > size().
  Result<Hash> rootAt(uint64_t treeSize) const;
  // The audit path PATH(index, D[0:treeSize]) of RFC 6962 §2.1.1, leaf to root.
  // InvalidArgument unless index < treeSize <= size().
  Result<std::vector<Hash>> inclusionProof(uint64_t index, uint64_t treeSize) const;
  // PROOF(size1, D[0:size2]) of RFC 6962 §2.1.2. Empty when size1 == 0 or size1 == size2.
  // InvalidArgument unless size1 <= size2 <= size().
  Result<std::vector<Hash>> consistencyProof(uint64_t size1, uint64_t size2) const;

  // NodeSource: REQUIRES the subtree to be complete within size().
  Result<Hash> node(unsigned level, uint64_t index) const override { return levels_[level][index]; }

 private:
  // levels_[k][j] = MTH of leaves [j*2^k, (j+1)*2^k). levels_[0] holds the leaf hashes.
  std::vector<std::vector<Hash>> levels_;
};

// Recomputes the root from a leaf hash and its audit path (RFC 9162 §2.1.3.2).
// InvalidArgument if index >= treeSize; Corruption if the proof has the wrong length.
Result<Hash> rootFromInclusionProof(uint64_t index, uint64_t treeSize, const Hash& leafHash,
                                    std::span<const Hash> proof);
// OK only if `proof` shows that `leafHash` is leaf `index` of the tree of `treeSize` leaves
// whose root is `root`.
[[nodiscard]] Status verifyInclusion(uint64_t index, uint64_t treeSize, const Hash& leafHash,
                                     std::span<const Hash> proof, const Hash& root);
// OK only if `proof` shows that the tree (size1, root1) is a prefix of (size2, root2)
// (RFC 9162 §2.1.4.2). size1 == 0 needs an empty proof; size1 == size2 needs an empty proof
// and equal roots.
[[nodiscard]] Status verifyConsistency(uint64_t size1, uint64_t size2, const Hash& root1,
                                       const Hash& root2, std::span<const Hash> proof);

// Lower-case hex of a hash; shortHex gives the first 8 characters and "…" for messages.
std::string hashHex(const Hash& hash);
std::string shortHex(const Hash& hash);

}  // namespace trialmesh::ethics
