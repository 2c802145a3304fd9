// Data dictionary TOML (storage/dictionary.cc): an accepted dictionary written with toToml()
// reads back to an equal dictionary (same TOML, same hash); toToml() is a fixed point.
#include "fuzz_check.h"
#include "storage/dictionary.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace trialmesh;
  if (size > 64 * 1024) return 0;
  auto d = storage::Dictionary::parseToml(fuzz::asText(data, size), "fuzz.toml");
  if (!d.isOk()) return 0;
  const std::string toml = d->toToml();
  auto again = storage::Dictionary::parseToml(toml, "again.toml");
  if (!again.isOk())
    std::fprintf(stderr, "%s\n%s\n", toml.c_str(), again.status().message().c_str());
  FUZZ_CHECK(again.isOk(), "toToml() parses");
  FUZZ_CHECK(again->toToml() == toml, "toToml() is a fixed point");
  FUZZ_CHECK(again->hash() == d->hash(), "same hash after the round trip");
  return 0;
}
