#include "crypto/seal.h"

#include <sodium.h>

#include <string>

#include "crypto/key_access.h"

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

}  // namespace trialmesh::crypto
