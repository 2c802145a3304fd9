#include "protocol/message_size_guard.h"

#include <capnp/message.h>

#include <algorithm>
#include <string>

#include "protocol/messages.h"

namespace trialmesh::protocol {
namespace {

// Cap'n Proto 0.9's AsyncMessageReader refuses a table of 512 segments or more.
constexpr uint64_t kMaxSegments = 511;

uint32_t le32(const kj::byte* p) {
  return static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 |
         static_cast<uint32_t>(p[2]) << 16 | static_cast<uint32_t>(p[3]) << 24;
}

}  // namespace

MessageSizeGuard::MessageSizeGuard(kj::AsyncIoStream& inner, uint64_t maxMessageBytes,
                                   OversizedHandler onOversized)
    : inner_(inner),
      limitWords_(peerReaderOptions(maxMessageBytes).traversalLimitInWords),
      onOversized_(std::move(onOversized)) {}

kj::Promise<size_t> MessageSizeGuard::tryRead(void* buffer, size_t minBytes, size_t maxBytes) {
  KJ_IF_MAYBE (e, failed_) {
    return kj::cp(*e);
  }
  return inner_.tryRead(buffer, minBytes, maxBytes).then([this, buffer](size_t n) {
    observe(static_cast<const kj::byte*>(buffer), n);
    return n;
  });
}

void MessageSizeGuard::observe(const kj::byte* p, size_t n) {
  size_t i = 0;
  while (i < n) {
    if (bodyLeft_ > 0) {
      const size_t take = static_cast<size_t>(std::min<uint64_t>(bodyLeft_, n - i));
      bodyLeft_ -= take;
      i += take;
      continue;
    }
    header_.push_back(p[i++]);
    if (header_.size() == 4) {
      const uint64_t segments = uint64_t{le32(header_.data())} + 1;
      if (segments > kMaxSegments) refuse(0, segments);
      headerBytes_ = (4 + 4 * segments + 7) & ~uint64_t{7};
    }
    if (header_.size() >= 8 && header_.size() == headerBytes_) {
      const uint64_t segments = uint64_t{le32(header_.data())} + 1;
      uint64_t words = 0;
      for (uint64_t s = 0; s < segments; ++s) words += le32(header_.data() + 4 + 4 * s);
      if (words > limitWords_) refuse(words * 8, segments);
      bodyLeft_ = words * 8;
      header_.clear();
      headerBytes_ = 0;
    }
  }
}

void MessageSizeGuard::refuse(uint64_t announcedBytes, uint64_t segments) {
  if (onOversized_) onOversized_(announcedBytes, limitBytes(), segments);
  const std::string why = announcedBytes > 0
                              ? "peer sent a message of " + std::to_string(announcedBytes) +
                                    " bytes, more than the " + std::to_string(limitBytes()) +
                                    " this node reads (limits.max_message_bytes)"
                              : "peer sent a message of " + std::to_string(segments) +
                                    " segments, more than " + std::to_string(kMaxSegments);
  kj::Exception e(kj::Exception::Type::DISCONNECTED, __FILE__, __LINE__,
                  kj::str("ResourceExhausted: ", why.c_str()));
  failed_ = kj::cp(e);
  kj::throwFatalException(kj::mv(e));
}

}  // namespace trialmesh::protocol
