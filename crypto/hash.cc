#include "crypto/hash.h"

#include <sodium.h>

namespace trialmesh::crypto {

Sha256Digest sha256(std::span<const uint8_t> data) {
  Sha256Digest out;
  crypto_hash_sha256(out.data(), data.data(), data.size());
  return out;
}

Sha256Digest sha256(std::string_view data) {
  return sha256(
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(data.data()), data.size()));
}

std::string toHex(std::span<const uint8_t> bytes) {
  std::string out(bytes.size() * 2 + 1, '\0');
  sodium_bin2hex(out.data(), out.size(), bytes.data(), bytes.size());
  out.resize(bytes.size() * 2);
  return out;
}

}  // namespace trialmesh::crypto
