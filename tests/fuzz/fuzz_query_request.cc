// Signed-query request decoder (protocol/messages.cc decodeQueryRequest): an accepted request
// re-encodes to exactly its bytes (one request, one encoding), and verifySignedQuery with a
// zero signature agrees that it is well-formed and refuses it as unsigned.
#include "fuzz_check.h"
#include "protocol/messages.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace trialmesh;
  std::span<const uint8_t> bytes(data, size);
  auto f = protocol::decodeQueryRequest(bytes);
  protocol::SignedQueryBytes signedQuery{std::vector<uint8_t>(data, data + size),
                                         std::vector<uint8_t>(crypto::kSignatureBytes, 0)};
  auto verified = protocol::verifySignedQuery(signedQuery);
  if (!f.isOk()) {
    FUZZ_CHECK(f.status().code() == StatusCode::kInvalidArgument, "errors are InvalidArgument");
    FUZZ_CHECK(verified.status().code() == f.status().code() &&
                   verified.status().message() == f.status().message(),
               "verify refuses as decode does");
    return 0;
  }
  FUZZ_CHECK(protocol::encodeQueryRequest(*f) == signedQuery.request, "re-encodes to its bytes");
  FUZZ_CHECK(verified.status().code() == StatusCode::kPermissionDenied,
             "a zero signature never verifies");
  return 0;
}
