// Cryptographically secure random bytes (libsodium's randombytes_buf: getrandom(2) on Linux).
// Use it for nonces, salts and anything a peer must not predict; std::random_device gives no
// such guarantee on every platform and standard library.
// Thread-safe. Never fails: libsodium aborts the process if the system generator is
// unavailable, since no crypto may run without it.
#pragma once

#include <cstdint>
#include <span>

namespace trialmesh::crypto {

// Fills `out` with random bytes.
void randomBytes(std::span<uint8_t> out);

}  // namespace trialmesh::crypto
