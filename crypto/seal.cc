#include "crypto/seal.h"

#include <sodium.h>

#include <string>

#include "crypto/key_access.h"
#include "crypto/mask.h"  // kMaxRoundIdBytes: one limit for every use of a round id
#include "crypto/static_secret.h"

namespace trialmesh::crypto {

static_assert(crypto_box_SEALBYTES == kSealOverheadBytes);
static_assert(crypto_box_PUBLICKEYBYTES == 32 && crypto_box_SECRETKEYBYTES == 32);

std::vector<uint8_t> sealTo(const X25519PublicKey& recipient, std::span<const uint8_t> plaintext) {
  detail::ensureSodium();
  std::vector<uint8_t> out(plaintext.size() + kSealOverheadBytes);
  crypto_box_seal(out.data(), plaintext.data(), plaintext.size(), recipient.bytes.data());
  return out;
}

Result<std::vector<uint8_t>> openSealed(const X25519KeyPair& recipient,
                                        std::span<const uint8_t> ciphertext) {
  detail::ensureSodium();
  if (ciphertext.size() < kSealOverheadBytes) {
    return Status::corruption("sealed box of " + std::to_string(ciphertext.size()) +
                              " bytes is shorter than the " + std::to_string(kSealOverheadBytes) +
                              "-byte minimum");
  }
  std::vector<uint8_t> out(ciphertext.size() - kSealOverheadBytes);
  if (crypto_box_seal_open(out.data(), ciphertext.data(), ciphertext.size(),
                           recipient.pub.bytes.data(),
                           detail::KeyAccess::bytes(recipient.secret)) != 0) {
    return Status::corruption(
        "sealed box does not open: it was modified or sealed to a different key");
  }
  return out;
}

namespace {

constexpr char kRoundSealContext[] = "trialmesh/round-seal/v1";
static_assert(crypto_aead_xchacha20poly1305_ietf_NPUBBYTES +
                  crypto_aead_xchacha20poly1305_ietf_ABYTES ==
              kRoundSealOverheadBytes);
static_assert(crypto_aead_xchacha20poly1305_ietf_KEYBYTES == crypto_generichash_BYTES);

// The key of the direction sender -> recipient for one round; `self` is whichever of the two
// holds its secret here.
Status roundKey(const Identity& self, const PublicKey& peer, const PublicKey& sender,
                const PublicKey& recipient, std::span<const uint8_t> roundId, uint8_t* key) {
  if (roundId.empty() || roundId.size() > kMaxRoundIdBytes) {
    return Status::invalidArgument("round id has " + std::to_string(roundId.size()) +
                                   " bytes; it must have 1 to " + std::to_string(kMaxRoundIdBytes));
  }
  uint8_t shared[detail::kStaticSecretBytes];
  TM_RETURN_IF_ERROR(detail::staticSharedSecret(self, peer, shared));
  crypto_generichash_state state;
  crypto_generichash_init(&state, shared, sizeof shared, crypto_generichash_BYTES);
  sodium_memzero(shared, sizeof shared);
  crypto_generichash_update(&state, reinterpret_cast<const uint8_t*>(kRoundSealContext),
                            sizeof kRoundSealContext - 1);
  const uint8_t idLen = static_cast<uint8_t>(roundId.size() - 1);  // 1..256 -> 0..255
  crypto_generichash_update(&state, &idLen, 1);
  crypto_generichash_update(&state, roundId.data(), roundId.size());
  crypto_generichash_update(&state, sender.bytes().data(), kPublicKeyBytes);
  crypto_generichash_update(&state, recipient.bytes().data(), kPublicKeyBytes);
  crypto_generichash_final(&state, key, crypto_generichash_BYTES);
  sodium_memzero(&state, sizeof state);
  return Status::ok();
}

}  // namespace

Result<std::vector<uint8_t>> sealForRound(const Identity& sender, const PublicKey& recipient,
                                          std::span<const uint8_t> roundId,
                                          std::span<const uint8_t> plaintext) {
  detail::ensureSodium();
  uint8_t key[crypto_aead_xchacha20poly1305_ietf_KEYBYTES];
  TM_RETURN_IF_ERROR(roundKey(sender, recipient, sender.pub, recipient, roundId, key));
  std::vector<uint8_t> out(plaintext.size() + kRoundSealOverheadBytes);
  uint8_t* nonce = out.data();
  randombytes_buf(nonce, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
  unsigned long long written = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt(
      out.data() + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES, &written, plaintext.data(),
      plaintext.size(), nullptr, 0, nullptr, nonce, key);
  sodium_memzero(key, sizeof key);
  return out;
}

Result<std::vector<uint8_t>> openForRound(const Identity& recipient, const PublicKey& sender,
                                          std::span<const uint8_t> roundId,
                                          std::span<const uint8_t> ciphertext) {
  detail::ensureSodium();
  if (ciphertext.size() < kRoundSealOverheadBytes) {
    return Status::corruption("sealed vector of " + std::to_string(ciphertext.size()) +
                              " bytes is shorter than the " +
                              std::to_string(kRoundSealOverheadBytes) + "-byte minimum");
  }
  uint8_t key[crypto_aead_xchacha20poly1305_ietf_KEYBYTES];
  TM_RETURN_IF_ERROR(roundKey(recipient, sender, sender, recipient.pub, roundId, key));
  std::vector<uint8_t> out(ciphertext.size() - kRoundSealOverheadBytes);
  unsigned long long read = 0;
  const int rc = crypto_aead_xchacha20poly1305_ietf_decrypt(
      out.data(), &read, nullptr, ciphertext.data() + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES,
      ciphertext.size() - crypto_aead_xchacha20poly1305_ietf_NPUBBYTES, nullptr, 0,
      ciphertext.data(), key);
  sodium_memzero(key, sizeof key);
  if (rc != 0) {
    return Status::corruption(
        "sealed vector does not open: it was modified, or sealed by another member, to another "
        "member or for another round");
  }
  return out;
}

}  // namespace trialmesh::crypto
