// Node config and members files (node/config.cc). The first byte chooses the parser. Never a
// crash or an exception; errors start with the file name; parsing is deterministic (the same
// text parses to the same members, keys and listen address twice).
#include "fuzz_check.h"
#include "node/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace trialmesh;
  if (size == 0 || size > 64 * 1024) return 0;
  const std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] & 1) {
    auto m = node::parseMembers(text, "members.toml");
    if (!m.isOk()) {
      FUZZ_CHECK(m.status().message().rfind("members.toml", 0) == 0, "errors name the file");
      return 0;
    }
    auto again = node::parseMembers(text, "members.toml");
    FUZZ_CHECK(again.isOk() && again->federation == m->federation && again->keys() == m->keys(),
               "deterministic");
    for (const auto& member : m->members) {
      FUZZ_CHECK(m->findByName(member.name) != nullptr, "every member is found by name");
      FUZZ_CHECK(m->findByKey(member.publicKey) != nullptr, "every member is found by key");
    }
  } else {
    auto c = node::parseNodeConfig(text, "node.toml", "/nonexistent-fuzz-base");
    if (!c.isOk()) return 0;
    auto again = node::parseNodeConfig(text, "node.toml", "/nonexistent-fuzz-base");
    FUZZ_CHECK(again.isOk(), "deterministic");
  }
  return 0;
}
