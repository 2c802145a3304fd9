// Partial-aggregate decoder (protocol/messages.cc partialFromWire) on a Cap'n Proto message
// read with the peer reader limits: never a crash; an accepted partial written back with
// partialToWire and read again is the same partial.
#include <capnp/message.h>
#include <capnp/serialize.h>

#include <cstring>

#include "fuzz_check.h"
#include "protocol/messages.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace trialmesh;
  if (size < sizeof(capnp::word) || size % sizeof(capnp::word) != 0) return 0;
  kj::Array<capnp::word> words = kj::heapArray<capnp::word>(size / sizeof(capnp::word));
  std::memcpy(words.begin(), data, size);
  Result<query::PartialResult> first = Status::internal("unset");
  try {
    capnp::FlatArrayMessageReader reader(words.asPtr(), protocol::peerReaderOptions(1 << 20));
    first = protocol::partialFromWire(reader.getRoot<protocol::wire::PartialResult>());
  } catch (const kj::Exception&) {
    return 0;  // a malformed frame: the RPC layer refuses it before our decoder runs
  }
  if (!first.isOk()) {
    FUZZ_CHECK(first.status().code() == StatusCode::kInvalidArgument ||
                   first.status().code() == StatusCode::kCorruption,
               "errors are InvalidArgument or Corruption");
    return 0;
  }
  capnp::MallocMessageBuilder builder;
  protocol::partialToWire(*first, builder.initRoot<protocol::wire::PartialResult>());
  auto again =
      protocol::partialFromWire(builder.getRoot<protocol::wire::PartialResult>().asReader());
  FUZZ_CHECK(again.isOk(), "a re-encoded partial decodes");
  FUZZ_CHECK(*again == *first, "partial round-trips through the wire form");
  return 0;
}
