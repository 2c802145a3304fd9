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

Result<std::vector<uint8_t>> fromHex(std::string_view text) {
  if (text.size() % 2 != 0) {
    return Status::invalidArgument("hex text of odd length " + std::to_string(text.size()));
  }
  std::vector<uint8_t> out(text.size() / 2);
  size_t written = 0;
  const char* end = nullptr;
  if (sodium_hex2bin(out.data(), out.size(), text.data(), text.size(), nullptr, &written, &end) !=
          0 ||
      written != out.size()) {
    const size_t at = end != nullptr ? static_cast<size_t>(end - text.data()) : written * 2;
    return Status::invalidArgument("not a hex digit at position " + std::to_string(at + 1) +
                                   " of the hex text");
  }
  return out;
}

}  // namespace trialmesh::crypto
