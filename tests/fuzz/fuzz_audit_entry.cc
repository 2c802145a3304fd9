// Audit log entry and signed tree head decoders (ethics/audit_log.cc). The first byte chooses
// the decoder. An accepted entry or tree head re-encodes to exactly its bytes (decodeEntry is
// the strict inverse of encodeEntry), and describeEntry works on any accepted entry.
#include "ethics/audit_log.h"
#include "fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace trialmesh;
  if (size == 0) return 0;
  std::span<const uint8_t> bytes(data + 1, size - 1);
  const std::string original(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  if (data[0] & 1) {
    auto sth = ethics::decodeTreeHead(bytes);
    if (!sth.isOk()) return 0;
    FUZZ_CHECK(ethics::encodeTreeHead(*sth) == original, "tree head re-encodes to its bytes");
    (void)ethics::verifyTreeHeadSignature(*sth);
    return 0;
  }
  auto entry = ethics::decodeEntry(bytes);
  if (!entry.isOk()) {
    FUZZ_CHECK(entry.status().code() == StatusCode::kCorruption, "errors are Corruption");
    return 0;
  }
  auto encoded = ethics::encodeEntry(*entry);
  FUZZ_CHECK(encoded.isOk(), "a decoded entry encodes");
  FUZZ_CHECK(*encoded == original, "entry re-encodes to its bytes");
  (void)ethics::describeEntry(*entry);
  return 0;
}
