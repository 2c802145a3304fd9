// Sealing data so that only one recipient can read it.
//
// sealTo / openSealed: anonymous sealed boxes (libsodium crypto_box_seal: X25519 +
// XSalsa20-Poly1305 with a fresh ephemeral key per message) to a recipient's X25519 key (see
// toX25519 in crypto/identity.h). The sender is not authenticated: sign the plaintext (or send
// it over a channel) when that matters.
//
// sealForRound / openForRound: between two member identities, bound to one round id (a
// secure-aggregation query's nonce). The key is BLAKE2b keyed with the pair's static X25519
// agreement (cached per pair, crypto/static_secret.h) over "trialmesh/round-seal/v1", the
// round id, the sender's and the recipient's keys; the box is XChaCha20-Poly1305 with a random
// nonce. Only the two members can open it, it authenticates the sender, it opens only for the
// same round id and direction, and it costs no scalar multiplication once the pair is cached
// (a sealed box costs two per message). Used for masked vectors (docs/privacy.md).
//
// Thread-safety: thread-safe functions. Errors come back as Status/Result.
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

// Bytes sealForRound adds to its plaintext (nonce + tag).
inline constexpr size_t kRoundSealOverheadBytes = 40;

// Encrypts `plaintext` from `sender` to `recipient` for round `roundId` (1 to 256 bytes).
// Errors (InvalidArgument): `recipient` is not a valid Ed25519 key or is of low order; the
// round id is empty or too long.
Result<std::vector<uint8_t>> sealForRound(const Identity& sender, const PublicKey& recipient,
                                          std::span<const uint8_t> roundId,
                                          std::span<const uint8_t> plaintext);

// Opens what `sender` sealed to `recipient` for `roundId`. Corruption when the box was
// modified, sealed by someone else, to someone else, for another round, or is shorter than
// kRoundSealOverheadBytes; InvalidArgument as sealForRound.
Result<std::vector<uint8_t>> openForRound(const Identity& recipient, const PublicKey& sender,
                                          std::span<const uint8_t> roundId,
                                          std::span<const uint8_t> ciphertext);

}  // namespace trialmesh::crypto
