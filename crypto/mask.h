// Pairwise masks for secure aggregation (issue #5; design and threat model in docs/privacy.md).
//
// Every participant of a round adds a mask to its vector of 128-bit words; the masks of all
// participants sum to zero modulo 2^128, so the coordinator learns only the sum of the plain
// vectors. Participant i's mask is  Σ_{j>i} PRG(k_ij) − Σ_{j<i} PRG(k_ij), where k_ij is derived
// from the X25519 agreement of the two identity keys, the round id (the query's nonce) and the
// hash of the round's participant list, and PRG is the ChaCha20 key stream of k_ij.
//
//   TM_ASSIGN_OR_RETURN(PairwiseMasker m,
//                       PairwiseMasker::create(identity, signedList.keys, nonce));
//   TM_RETURN_IF_ERROR(m.addMask(words));
//   auto box = sealForRound(self, coordinatorKey, roundId, maskWordsToBytes(words));
//
// Callers must use a round id only once per participant list (a replayed round id reuses the
// masks, so the difference of two vectors would reveal the difference of the plain ones) and
// must enforce the approval's minimum number of participants; this module needs at least two.
//
// Errors come back as Status/Result. Thread-safety: a const PairwiseMasker may be used from
// several threads at once (addMask only reads it). It owns its pair keys in sodium_malloc
// memory, wiped on destruction; it is move-only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#include "common/status.h"
#include "crypto/hash.h"
#include "crypto/identity.h"

namespace trialmesh::crypto {

// One element of a masked vector; arithmetic is modulo 2^128 (unsigned wrap-around).
using MaskWord = unsigned __int128;
inline constexpr size_t kMaskWordBytes = 16;
// A ChaCha20-IETF stream has 2^32 blocks of 64 bytes: 2^34 words per vector.
inline constexpr uint64_t kMaxMaskWords = uint64_t{1} << 34;
// Round ids are nonces; 16 to 32 random bytes are typical.
inline constexpr size_t kMaxRoundIdBytes = 256;

// SHA-256 of the concatenated 32-byte Ed25519 keys, in the given order (the canonical order is
// ascending). Binds the derived pair keys to one exact participant list.
Sha256Digest participantListHash(std::span<const PublicKey> participants);

namespace detail {
// Key material that lives for one round: plain heap memory, wiped with sodium_memzero when
// freed. SecretBytes' guarded pages cost an mmap and mprotect calls per allocation, which a
// node would pay on every secure query; the long-lived secrets stay in SecretBytes.
class WipedBytes {
 public:
  explicit WipedBytes(size_t size);
  ~WipedBytes();
  WipedBytes(WipedBytes&& other) noexcept;
  WipedBytes& operator=(WipedBytes&& other) noexcept;
  uint8_t* data() { return p_.get(); }
  const uint8_t* data() const { return p_.get(); }

 private:
  void wipe();
  std::unique_ptr<uint8_t[]> p_;
  size_t size_ = 0;
};
}  // namespace detail

class PairwiseMasker {
 public:
  // Derives the pair keys of `self` with every other participant for one round.
  // `participants` is the round's participant list in strictly ascending byte order and must
  // contain self.pub. Errors (InvalidArgument): fewer than 2 participants; the list not
  // strictly ascending (names the position); self not in the list; an empty round id or one
  // longer than kMaxRoundIdBytes; a participant key that is not a valid Ed25519 point or is of
  // low order (names the key's text form).
  static Result<PairwiseMasker> create(const Identity& self,
                                       std::span<const PublicKey> participants,
                                       std::span<const uint8_t> roundId);

  PairwiseMasker(PairwiseMasker&&) noexcept = default;
  PairwiseMasker& operator=(PairwiseMasker&&) noexcept = default;

  // Position of self in the participant list.
  size_t selfRank() const { return rank_; }
  size_t participantCount() const { return count_; }

  // Adds mask words [firstWord, firstWord + values.size()) to `values` modulo 2^128. A long
  // vector may be masked in pieces: the words do not depend on how it is split.
  // Errors: InvalidArgument when firstWord + values.size() > kMaxMaskWords.
  Status addMask(std::span<MaskWord> values, uint64_t firstWord = 0) const;

 private:
  PairwiseMasker(detail::WipedBytes keys, size_t rank, size_t count)
      : keys_(std::move(keys)), rank_(rank), count_(count) {}
  detail::WipedBytes keys_;  // (count - 1) pair keys of 32 bytes, in participant order
  size_t rank_ = 0;
  size_t count_ = 0;
};

// The mask itself (the words addMask would add to a zero vector). Same errors as create and
// addMask.
Result<std::vector<MaskWord>> pairwiseMask(const Identity& self,
                                           std::span<const PublicKey> participants,
                                           std::span<const uint8_t> roundId, size_t length);

// Wire form of a word vector: 16 bytes per word, little-endian.
std::vector<uint8_t> maskWordsToBytes(std::span<const MaskWord> words);
// Errors: Corruption when the length is not a multiple of kMaskWordBytes.
Result<std::vector<MaskWord>> maskWordsFromBytes(std::span<const uint8_t> bytes);

}  // namespace trialmesh::crypto
