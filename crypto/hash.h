// SHA-256 digests (libsodium's crypto_hash_sha256). Used for canonical content hashes
// (data dictionaries, queries) and, in ethics/, for RFC 6962 Merkle hashing.
// Thread-safe: pure functions.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace trialmesh::crypto {

using Sha256Digest = std::array<uint8_t, 32>;

Sha256Digest sha256(std::span<const uint8_t> data);
Sha256Digest sha256(std::string_view data);
// Lower-case hexadecimal, 64 characters.
std::string toHex(std::span<const uint8_t> bytes);

}  // namespace trialmesh::crypto
