#include "crypto/random.h"

#include <sodium.h>

#include "crypto/key_access.h"

namespace trialmesh::crypto {

void randomBytes(std::span<uint8_t> out) {
  detail::ensureSodium();
  if (!out.empty()) randombytes_buf(out.data(), out.size());
}

}  // namespace trialmesh::crypto
