// Internal to crypto/: access to secret key bytes and one-time libsodium initialisation.
// Not part of tm_crypto's public face; other modules must not include it.
#pragma once

#include <cstdint>

#include "crypto/identity.h"

namespace trialmesh::crypto::detail {

// Calls sodium_init() exactly once (thread-safe function-local static); aborts if libsodium
// cannot initialise, since no crypto may run then. Every public entry point calls it.
void ensureSodium();

struct KeyAccess {
  static const uint8_t* bytes(const SecretKey& key) { return key.bytes_.data(); }
  static uint8_t* bytes(SecretKey& key) { return key.bytes_.data(); }
  static const uint8_t* bytes(const X25519SecretKey& key) { return key.bytes_.data(); }
  static uint8_t* bytes(X25519SecretKey& key) { return key.bytes_.data(); }
  static SecretKey newSecretKey() { return SecretKey(); }
  static X25519SecretKey newX25519SecretKey() { return X25519SecretKey(); }
};

}  // namespace trialmesh::crypto::detail
