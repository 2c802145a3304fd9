#include "protocol/secure_stream.h"

#include <algorithm>
#include <cstring>
#include <span>
#include <utility>

#include "protocol/messages.h"

namespace trialmesh::protocol {
namespace {

constexpr size_t kReadChunkBytes = 64 * 1024;

kj::Exception channelException(const Status& status) {
  return kj::Exception(kj::Exception::Type::DISCONNECTED, __FILE__, __LINE__,
                       kj::str(status.toString().c_str()));
}

// Reads exactly `size` bytes of a handshake message; EOF before that is a refusal by the peer.
kj::Promise<std::vector<uint8_t>> readExactly(kj::AsyncIoStream& stream, size_t size,
                                              const char* what) {
  auto buffer = kj::heap<std::vector<uint8_t>>(size);
  auto* raw = buffer.get();
  return stream.tryRead(raw->data(), size, size)
      .then([raw, size, what](size_t n) -> std::vector<uint8_t> {
        if (n < size) {
          throw channelException(Status::unavailable(
              std::string("channel: the peer closed the connection during the handshake "
                          "(before ") +
              what + "); it may not list our public key in its members file"));
        }
        return std::move(*raw);
      })
      .attach(kj::mv(buffer));
}

kj::Promise<void> writeBytes(kj::AsyncIoStream& stream, std::vector<uint8_t> bytes) {
  auto owned = kj::heap<std::vector<uint8_t>>(std::move(bytes));
  auto promise = stream.write(owned->data(), owned->size());
  return promise.attach(kj::mv(owned));
}

// Handshake failures reject the promise (the caller logs them); onFailure is for failures of
// an established channel.
template <typename T>
T unwrapOrThrow(Result<T> r) {
  if (!r.isOk()) throw channelException(r.status().withContext("channel handshake"));
  return std::move(r).value();
}

struct InitiatorState {
  kj::Own<kj::AsyncIoStream> transport;
  crypto::HandshakeInitiator handshake;
  ChannelFailureHandler onFailure;
};

struct ResponderState {
  kj::Own<kj::AsyncIoStream> transport;
  crypto::HandshakeResponder handshake;
  ChannelFailureHandler onFailure;
};

}  // namespace

SecureStream::SecureStream(kj::Own<kj::AsyncIoStream> transport, crypto::Session session,
                           ChannelFailureHandler onFailure)
    : transport_(kj::mv(transport)),
      session_(std::move(session)),
      onFailure_(std::move(onFailure)),
      readBuffer_(kReadChunkBytes) {}

SecureStream::~SecureStream() noexcept(false) {}

void SecureStream::fail(const Status& status) {
  if (failure_.isOk()) {
    failure_ = status;
    if (onFailure_) onFailure_(status);
  }
  throw channelException(failure_);
}

kj::Promise<size_t> SecureStream::tryRead(void* buffer, size_t minBytes, size_t maxBytes) {
  return readLoop(static_cast<kj::byte*>(buffer), minBytes, maxBytes, 0);
}

kj::Promise<size_t> SecureStream::readLoop(kj::byte* buffer, size_t minBytes, size_t maxBytes,
                                           size_t done) {
  while (done < maxBytes && !plaintext_.empty()) {
    std::vector<uint8_t>& front = plaintext_.front();
    const size_t n = std::min(maxBytes - done, front.size() - frontOffset_);
    std::memcpy(buffer + done, front.data() + frontOffset_, n);
    done += n;
    frontOffset_ += n;
    if (frontOffset_ == front.size()) {
      plaintext_.pop_front();
      frontOffset_ = 0;
    }
  }
  if (done >= minBytes || endOfStream_) return done;
  if (!failure_.isOk()) throw channelException(failure_);
  return transport_->tryRead(readBuffer_.data(), 1, readBuffer_.size())
      .then([this, buffer, minBytes, maxBytes, done](size_t n) -> kj::Promise<size_t> {
        if (!failure_.isOk()) throw channelException(failure_);
        if (n == 0) {
          Status s = session_.opener.onEndOfStream();
          if (!s.isOk()) fail(s);
          endOfStream_ = true;
        } else {
          Status s = session_.opener.feed(std::span<const uint8_t>(readBuffer_.data(), n));
          if (!s.isOk()) fail(s);
          while (auto frame = session_.opener.nextFrame()) {
            if (!frame->empty()) plaintext_.push_back(std::move(*frame));
          }
        }
        return readLoop(buffer, minBytes, maxBytes, done);
      });
}

kj::Promise<void> SecureStream::write(const void* buffer, size_t size) {
  kj::ArrayPtr<const kj::byte> piece(static_cast<const kj::byte*>(buffer), size);
  return write(kj::arrayPtr(&piece, 1));
}

kj::Promise<void> SecureStream::write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) {
  if (ended_) {
    return kj::Promise<void>(channelException(
        Status::failedPrecondition("channel: write after the close frame was sent")));
  }
  size_t total = 0;
  for (auto& p : pieces) total += p.size();
  const size_t frames =
      (total + crypto::kMaxFramePlaintextBytes - 1) / crypto::kMaxFramePlaintextBytes;
  auto out = kj::heap<std::vector<uint8_t>>();
  out->reserve(total + frames * crypto::kFrameOverheadBytes);
  // Gather the pieces into frame-sized plaintexts; most capnp messages are a single frame.
  std::vector<uint8_t> chunk;
  chunk.reserve(std::min(total, crypto::kMaxFramePlaintextBytes));
  auto flush = [&]() {
    auto sealed = session_.sealer.seal(chunk);
    if (!sealed.isOk()) fail(sealed.status());
    out->insert(out->end(), sealed->begin(), sealed->end());
    chunk.clear();
  };
  for (auto& p : pieces) {
    const kj::byte* data = p.begin();
    size_t left = p.size();
    while (left > 0) {
      const size_t n = std::min(left, crypto::kMaxFramePlaintextBytes - chunk.size());
      chunk.insert(chunk.end(), data, data + n);
      data += n;
      left -= n;
      if (chunk.size() == crypto::kMaxFramePlaintextBytes) flush();
    }
  }
  if (!chunk.empty()) flush();
  if (out->empty()) return kj::READY_NOW;
  auto promise = transport_->write(out->data(), out->size());
  return promise.attach(kj::mv(out));
}

kj::Promise<void> SecureStream::whenWriteDisconnected() {
  return transport_->whenWriteDisconnected();
}

kj::Promise<void> SecureStream::end() {
  if (ended_) return kj::READY_NOW;
  ended_ = true;
  auto frame = session_.sealer.sealClose();
  if (!frame.isOk()) return kj::Promise<void>(channelException(frame.status()));
  return writeBytes(*transport_, std::move(frame).value()).then([this]() {
    transport_->shutdownWrite();
  });
}

void SecureStream::shutdownWrite() {
  if (ended_) return;
  // The close frame's write starts now (a socket write is attempted immediately); the promise
  // lives as long as the stream.
  pendingEnd_ = end().eagerlyEvaluate([](kj::Exception&&) {});
}

void SecureStream::abortRead() { transport_->abortRead(); }

kj::Promise<SecureConnection> secureConnect(kj::Own<kj::AsyncIoStream> transport,
                                            const crypto::Identity& self,
                                            std::vector<crypto::PublicKey> acceptedPeers,
                                            ChannelFailureHandler onFailure) {
  auto state = kj::heap<InitiatorState>(
      InitiatorState{kj::mv(transport), crypto::HandshakeInitiator(self, std::move(acceptedPeers)),
                     std::move(onFailure)});
  auto* s = state.get();
  return kj::evalNow([s]() {
           auto m1 = unwrapOrThrow(s->handshake.start());
           return writeBytes(*s->transport, std::move(m1));
         })
      .then([s]() {
        return readExactly(*s->transport, crypto::kHandshakeMessage2Bytes, "handshake message 2");
      })
      .then([s](std::vector<uint8_t> m2) {
        auto m3 = unwrapOrThrow(s->handshake.onMessage2(m2));
        return writeBytes(*s->transport, std::move(m3));
      })
      .then([s]() {
        crypto::Session session = unwrapOrThrow(s->handshake.finish());
        crypto::PublicKey peer = session.peer;
        auto stream =
            kj::heap<SecureStream>(kj::mv(s->transport), std::move(session), s->onFailure);
        return SecureConnection{kj::mv(stream), peer};
      })
      .attach(kj::mv(state));
}

kj::Promise<SecureConnection> secureAccept(kj::Own<kj::AsyncIoStream> transport,
                                           const crypto::Identity& self,
                                           std::vector<crypto::PublicKey> acceptedPeers,
                                           ChannelFailureHandler onFailure) {
  auto state = kj::heap<ResponderState>(
      ResponderState{kj::mv(transport), crypto::HandshakeResponder(self, std::move(acceptedPeers)),
                     std::move(onFailure)});
  auto* s = state.get();
  return readExactly(*s->transport, crypto::kHandshakeMessage1Bytes, "handshake message 1")
      .then([s](std::vector<uint8_t> m1) {
        auto m2 = unwrapOrThrow(s->handshake.onMessage1(m1));
        return writeBytes(*s->transport, std::move(m2));
      })
      .then([s]() {
        return readExactly(*s->transport, crypto::kHandshakeMessage3Bytes, "handshake message 3");
      })
      .then([s](std::vector<uint8_t> m3) {
        crypto::Session session = unwrapOrThrow(s->handshake.onMessage3(m3));
        crypto::PublicKey peer = session.peer;
        auto stream =
            kj::heap<SecureStream>(kj::mv(s->transport), std::move(session), s->onFailure);
        return SecureConnection{kj::mv(stream), peer};
      })
      .attach(kj::mv(state));
}

}  // namespace trialmesh::protocol
