// MessageSizeGuard: sees every Cap'n Proto message a peer sends before the RPC system reads it,
// so an oversized one is reported (logged, counted, audited by the caller) rather than only
// closing the connection (issue #12 item 6).
//
// Cap'n Proto's stream framing starts each message with a segment table (u32 LE segment count
// minus one, then one u32 LE size in words per segment, padded to a whole word). The guard
// follows that framing over the bytes it passes through. A table announcing more words than
// peerReaderOptions(maxMessageBytes) lets the reader traverse (Cap'n Proto's own "Message is
// too large" check, same bound), or 512 segments or more ("too many segments"), is reported
// to `onOversized` once, and the read fails with a DISCONNECTED exception naming the size and
// the setting, which ends the RPC connection exactly as the reader's own check would have.
// Nothing of the message body is buffered or copied: bodies are only counted.
//
// Thread-safety: belongs to the KJ event loop thread of the stream it wraps. The wrapped stream
// must outlive the guard.
#pragma once

#include <kj/async-io.h>

#include <cstdint>
#include <functional>
#include <vector>

namespace trialmesh::protocol {

class MessageSizeGuard final : public kj::AsyncIoStream {
 public:
  // announcedBytes: the size the segment table announces (words * 8); limitBytes: the largest
  // the reader accepts. For too many segments, announcedBytes is 0.
  using OversizedHandler =
      std::function<void(uint64_t announcedBytes, uint64_t limitBytes, uint64_t segments)>;
  MessageSizeGuard(kj::AsyncIoStream& inner, uint64_t maxMessageBytes,
                   OversizedHandler onOversized);

  kj::Promise<size_t> tryRead(void* buffer, size_t minBytes, size_t maxBytes) override;
  kj::Promise<void> write(const void* buffer, size_t size) override {
    return inner_.write(buffer, size);
  }
  kj::Promise<void> write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) override {
    return inner_.write(pieces);
  }
  kj::Promise<void> whenWriteDisconnected() override { return inner_.whenWriteDisconnected(); }
  void shutdownWrite() override { inner_.shutdownWrite(); }
  void abortRead() override { inner_.abortRead(); }

  // Largest message (bytes) that passes: what peerReaderOptions(maxMessageBytes) traverses.
  uint64_t limitBytes() const { return limitWords_ * 8; }

 private:
  // Follows the framing over `n` bytes; throws once a segment table is oversized.
  void observe(const kj::byte* p, size_t n);
  [[noreturn]] void refuse(uint64_t announcedBytes, uint64_t segments);

  kj::AsyncIoStream& inner_;
  uint64_t limitWords_;
  OversizedHandler onOversized_;
  std::vector<kj::byte> header_;  // the current segment table, as it arrives
  uint64_t headerBytes_ = 0;      // its full size once the segment count is known
  uint64_t bodyLeft_ = 0;         // bytes of the current message body still to pass
  kj::Maybe<kj::Exception> failed_;
};

}  // namespace trialmesh::protocol
