#include "crypto/mask.h"

#include <sodium.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cstring>
#include <string>
#include <utility>

#include "crypto/key_access.h"
#include "crypto/static_secret.h"

namespace trialmesh::crypto {

namespace {

constexpr size_t kKeyBytes = 32;
static_assert(crypto_stream_chacha20_ietf_KEYBYTES == kKeyBytes);
static_assert(crypto_scalarmult_BYTES == kKeyBytes);
static_assert(crypto_generichash_BYTES == kKeyBytes);

// Domain separation: a pair key derived for masks can never equal any other key of trialmesh.
constexpr char kContext[] = "trialmesh/mask/v1";

// Key stream generated per step: small enough to stay in L1 with the vector chunk it is added
// to, large enough that libsodium's per-call cost vanishes.
constexpr size_t kChunkBytes = 8192;
constexpr size_t kChunkWords = kChunkBytes / kMaskWordBytes;
constexpr size_t kBlockBytes = 64;

MaskWord loadLe(const uint8_t* p) {
  if constexpr (std::endian::native == std::endian::little) {
    MaskWord w;
    std::memcpy(&w, p, sizeof w);
    return w;
  } else {
    MaskWord w = 0;
    for (int i = 15; i >= 0; --i) w = (w << 8) | p[i];
    return w;
  }
}

void storeLe(MaskWord w, uint8_t* p) {
  if constexpr (std::endian::native == std::endian::little) {
    std::memcpy(p, &w, sizeof w);
  } else {
    for (int i = 0; i < 16; ++i) p[i] = static_cast<uint8_t>(w >> (8 * i));
  }
}

}  // namespace

namespace detail {

WipedBytes::WipedBytes(size_t size) : p_(new uint8_t[size]()), size_(size) {}

WipedBytes::~WipedBytes() { wipe(); }

WipedBytes::WipedBytes(WipedBytes&& other) noexcept
    : p_(std::move(other.p_)), size_(std::exchange(other.size_, 0)) {}

WipedBytes& WipedBytes::operator=(WipedBytes&& other) noexcept {
  if (this != &other) {
    wipe();
    p_ = std::move(other.p_);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

void WipedBytes::wipe() {
  if (p_) sodium_memzero(p_.get(), size_);
}

}  // namespace detail

Sha256Digest participantListHash(std::span<const PublicKey> participants) {
  std::vector<uint8_t> all;
  all.reserve(participants.size() * kPublicKeyBytes);
  for (const auto& p : participants) all.insert(all.end(), p.bytes().begin(), p.bytes().end());
  return sha256(all);
}

Result<PairwiseMasker> PairwiseMasker::create(const Identity& self,
                                              std::span<const PublicKey> participants,
                                              std::span<const uint8_t> roundId) {
  detail::ensureSodium();
  const size_t n = participants.size();
  if (n < 2) {
    return Status::invalidArgument(
        "secure aggregation needs at least 2 participants; the participant list has " +
        std::to_string(n));
  }
  for (size_t k = 1; k < n; ++k) {
    if (!(participants[k - 1] < participants[k])) {
      return Status::invalidArgument(
          "participant list is not in strictly ascending key order at position " +
          std::to_string(k) + " (" + participants[k].toText() +
          (participants[k - 1] == participants[k] ? " appears twice)" : ")"));
    }
  }
  if (roundId.empty() || roundId.size() > kMaxRoundIdBytes) {
    return Status::invalidArgument("round id has " + std::to_string(roundId.size()) +
                                   " bytes; it must have 1 to " + std::to_string(kMaxRoundIdBytes));
  }
  auto it = std::lower_bound(participants.begin(), participants.end(), self.pub);
  if (it == participants.end() || !(*it == self.pub)) {
    return Status::invalidArgument("this node's key " + self.pub.toText() +
                                   " is not in the round's participant list");
  }
  const size_t rank = static_cast<size_t>(it - participants.begin());

  // Public part of the KDF input; the pair's two keys are filled in per peer.
  const Sha256Digest listHash = participantListHash(participants);
  std::vector<uint8_t> info;
  info.insert(info.end(), kContext, kContext + sizeof kContext - 1);
  const uint32_t idLen = static_cast<uint32_t>(roundId.size());
  for (int b = 0; b < 4; ++b) info.push_back(static_cast<uint8_t>(idLen >> (8 * b)));
  info.insert(info.end(), roundId.begin(), roundId.end());
  const size_t pairOffset = info.size();
  info.resize(pairOffset + 2 * kPublicKeyBytes);
  info.insert(info.end(), listHash.begin(), listHash.end());

  detail::WipedBytes keys((n - 1) * kKeyBytes);
  detail::WipedBytes shared(kKeyBytes);
  size_t slot = 0;
  for (size_t j = 0; j < n; ++j) {
    if (j == rank) continue;
    TM_RETURN_IF_ERROR(detail::staticSharedSecret(self, participants[j], shared.data()));
    const PublicKey& lo = j < rank ? participants[j] : self.pub;
    const PublicKey& hi = j < rank ? self.pub : participants[j];
    std::memcpy(info.data() + pairOffset, lo.bytes().data(), kPublicKeyBytes);
    std::memcpy(info.data() + pairOffset + kPublicKeyBytes, hi.bytes().data(), kPublicKeyBytes);
    crypto_generichash(keys.data() + slot * kKeyBytes, kKeyBytes, info.data(), info.size(),
                       shared.data(), kKeyBytes);
    ++slot;
  }
  return PairwiseMasker(std::move(keys), rank, n);
}

Status PairwiseMasker::addMask(std::span<MaskWord> values, uint64_t firstWord) const {
  if (firstWord > kMaxMaskWords || values.size() > kMaxMaskWords - firstWord) {
    return Status::invalidArgument("cannot mask words " + std::to_string(firstWord) + " to " +
                                   std::to_string(firstWord + values.size()) +
                                   ": a masked vector has at most 2^34 words");
  }
  // Each pair key drives one stream with an all-zero nonce: the key is unique to the round.
  static const std::array<uint8_t, crypto_stream_chacha20_ietf_NONCEBYTES> kNonce{};
  static const std::array<uint8_t, kChunkBytes + kBlockBytes> kZeros{};
  alignas(64) std::array<uint8_t, kChunkBytes + kBlockBytes> stream;

  size_t done = 0;
  while (done < values.size()) {
    const uint64_t byteOffset = (firstWord + done) * kMaskWordBytes;
    const uint64_t block = byteOffset / kBlockBytes;
    const size_t skip = static_cast<size_t>(byteOffset % kBlockBytes);
    const size_t words = std::min(values.size() - done, kChunkWords);
    const size_t bytes =
        (skip + words * kMaskWordBytes + kBlockBytes - 1) / kBlockBytes * kBlockBytes;
    MaskWord* out = values.data() + done;
    size_t slot = 0;
    for (size_t j = 0; j < count_; ++j) {
      if (j == rank_) continue;
      crypto_stream_chacha20_ietf_xor_ic(stream.data(), kZeros.data(), bytes, kNonce.data(),
                                         static_cast<uint32_t>(block),
                                         keys_.data() + slot * kKeyBytes);
      const uint8_t* s = stream.data() + skip;
      if (j > rank_) {
        for (size_t w = 0; w < words; ++w) out[w] += loadLe(s + w * kMaskWordBytes);
      } else {
        for (size_t w = 0; w < words; ++w) out[w] -= loadLe(s + w * kMaskWordBytes);
      }
      ++slot;
    }
    done += words;
  }
  sodium_memzero(stream.data(), stream.size());
  return Status::ok();
}

Result<std::vector<MaskWord>> pairwiseMask(const Identity& self,
                                           std::span<const PublicKey> participants,
                                           std::span<const uint8_t> roundId, size_t length) {
  TM_ASSIGN_OR_RETURN(PairwiseMasker masker, PairwiseMasker::create(self, participants, roundId));
  std::vector<MaskWord> mask(length, 0);
  TM_RETURN_IF_ERROR(masker.addMask(mask));
  return mask;
}

std::vector<uint8_t> maskWordsToBytes(std::span<const MaskWord> words) {
  std::vector<uint8_t> out(words.size() * kMaskWordBytes);
  for (size_t i = 0; i < words.size(); ++i) storeLe(words[i], out.data() + i * kMaskWordBytes);
  return out;
}

Result<std::vector<MaskWord>> maskWordsFromBytes(std::span<const uint8_t> bytes) {
  if (bytes.size() % kMaskWordBytes != 0) {
    return Status::corruption("masked vector of " + std::to_string(bytes.size()) +
                              " bytes is not a whole number of 16-byte words");
  }
  std::vector<MaskWord> out(bytes.size() / kMaskWordBytes);
  for (size_t i = 0; i < out.size(); ++i) out[i] = loadLe(bytes.data() + i * kMaskWordBytes);
  return out;
}

}  // namespace trialmesh::crypto
