// Approval files and decoders (ethics/approval.cc). The first byte chooses the parser:
//   0: approval TOML: approvalToToml of an accepted approval reads back to the same TOML and the
//      same canonical bytes (approval id);
//   1: signed approval bytes, 2: signed statement bytes: an accepted value re-encodes to
//      exactly its bytes.
#include "ethics/approval.h"
#include "fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace trialmesh;
  if (size == 0 || size > 64 * 1024) return 0;
  std::span<const uint8_t> bytes(data + 1, size - 1);
  const std::string original(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  switch (data[0] % 3) {
    case 0: {
      auto a = ethics::parseApprovalToml(original, "fuzz.toml");
      if (!a.isOk()) return 0;
      const std::string toml = ethics::approvalToToml(*a);
      auto again = ethics::parseApprovalToml(toml, "again.toml");
      if (!again.isOk())
        std::fprintf(stderr, "%s\n%s\n", toml.c_str(), again.status().message().c_str());
      FUZZ_CHECK(again.isOk(), "approvalToToml parses");
      FUZZ_CHECK(ethics::approvalToToml(*again) == toml, "approvalToToml is a fixed point");
      FUZZ_CHECK(ethics::approvalBytes(*again) == ethics::approvalBytes(*a),
                 "same canonical bytes after the round trip");
      return 0;
    }
    case 1: {
      auto sa = ethics::decodeSignedApproval(bytes);
      if (!sa.isOk()) return 0;
      FUZZ_CHECK(ethics::encodeSignedApproval(*sa) == original,
                 "signed approval re-encodes to its bytes");
      return 0;
    }
    default: {
      auto ss = ethics::decodeSignedStatement(bytes);
      if (!ss.isOk()) return 0;
      FUZZ_CHECK(ethics::encodeSignedStatement(*ss) == original,
                 "signed statement re-encodes to its bytes");
      return 0;
    }
  }
}
