// Anonymous sealed boxes (libsodium crypto_box_seal: X25519 + XSalsa20-Poly1305 with a fresh
// ephemeral key per message). For sending a small secret, e.g. a secure-aggregation mask
// seed, to one recipient's X25519 key (see toX25519 in crypto/identity.h). The sender is not
// authenticated: sign the plaintext (or send it over a channel) when that matters.
// Thread-safety: pure functions. Errors come back as Status/Result.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "common/status.h"
#include "crypto/identity.h"

namespace trialmesh::crypto {

// Bytes a sealed box adds to its plaintext (ephemeral public key + tag).
inline constexpr size_t kSealOverheadBytes = 48;

// Encrypts `plaintext` so only the holder of `recipient`'s secret key can read it.
std::vector<uint8_t> sealTo(const X25519PublicKey& recipient, std::span<const uint8_t> plaintext);

// Opens a box made by sealTo for `recipient`. Corruption if it was modified, was made for
// another key, or is shorter than kSealOverheadBytes.
Result<std::vector<uint8_t>> openSealed(const X25519KeyPair& recipient,
                                        std::span<const uint8_t> ciphertext);

}  // namespace trialmesh::crypto
