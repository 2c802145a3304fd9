// Internal to tm_crypto: the static X25519 agreement of two member identities (both
// Ed25519 identity keys converted to X25519), cached per (self, peer) pair in guarded sodium
// memory for the life of the process. It never changes, and deriving it costs a scalar
// multiplication and a point decompression, so the per-round keys of secure aggregation (pair
// masks, crypto/mask.h, and round sealing, crypto/seal.h) are derived from it with a cheap
// keyed hash that binds the round. Not a public interface.
#pragma once

#include <cstdint>

#include "common/status.h"
#include "crypto/identity.h"

namespace trialmesh::crypto::detail {

inline constexpr size_t kStaticSecretBytes = 32;

// Writes the shared secret of (self, peer) to `out` (kStaticSecretBytes). Errors
// (InvalidArgument): `peer` is not a valid Ed25519 point, or is of low order (names the key).
Status staticSharedSecret(const Identity& self, const PublicKey& peer, uint8_t* out);

}  // namespace trialmesh::crypto::detail
