// SHA-256 digests (libsodium's crypto_hash_sha256). Used for canonical content hashes
// (data dictionaries, queries) and, in ethics/, for RFC 6962 Merkle hashing.
// Thread-safe: pure functions.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace trialmesh::crypto {

using Sha256Digest = std::array<uint8_t, 32>;

Sha256Digest sha256(std::span<const uint8_t> data);
Sha256Digest sha256(std::string_view data);
// Lower-case hexadecimal, two characters per byte.
std::string toHex(std::span<const uint8_t> bytes);
// The bytes of hexadecimal text (either case, no separators). InvalidArgument for an odd length
// or a character that is not a hex digit, with its position.
Result<std::vector<uint8_t>> fromHex(std::string_view text);

}  // namespace trialmesh::crypto
