// SecureStream: the secure channel of crypto/channel.h as a kj::AsyncIoStream, so Cap'n Proto
// RPC (capnp::TwoPartyVatNetwork) runs over it unchanged.
//
//   secureConnect / secureAccept run the three-message handshake over any transport stream
//   (TCP in the node, a pipe in tests) and yield the encrypted stream and the authenticated
//   peer key. A peer whose key is not in `acceptedPeers` is refused by the handshake itself,
//   before any RPC byte is read.
//   Writes are cut into frames of at most crypto::kMaxFramePlaintextBytes; reads return
//   decrypted frame contents. shutdownWrite()/end() send the authenticated close frame, so the
//   peer can tell a clean end from a truncation.
//   Any failure (a modified, replayed, reordered or truncated frame, or a failed handshake) is
//   final: it is reported once to `onFailure` (for the log), and every later read fails with a
//   DISCONNECTED kj::Exception carrying the reason, which ends the RPC connection.
//
// Thread-safety: a SecureStream belongs to the KJ event loop thread that created it.
// Ownership: the stream owns its transport. `self` passed to the handshake functions must
// outlive the returned promise.
#pragma once

#include <kj/async-io.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <vector>

#include "common/status.h"
#include "crypto/channel.h"
#include "crypto/identity.h"

namespace trialmesh::protocol {

using ChannelFailureHandler = std::function<void(const Status&)>;

class SecureStream final : public kj::AsyncIoStream {
 public:
  SecureStream(kj::Own<kj::AsyncIoStream> transport, crypto::Session session,
               ChannelFailureHandler onFailure);
  ~SecureStream() noexcept(false);

  const crypto::PublicKey& peer() const { return session_.peer; }
  // Sends the close frame, then shuts the transport's write side. Call at most once, after the
  // last write completed (shutdownWrite() does the same without a promise).
  kj::Promise<void> end();

  // kj::AsyncIoStream
  kj::Promise<size_t> tryRead(void* buffer, size_t minBytes, size_t maxBytes) override;
  kj::Promise<void> write(const void* buffer, size_t size) override;
  kj::Promise<void> write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) override;
  kj::Promise<void> whenWriteDisconnected() override;
  void shutdownWrite() override;
  void abortRead() override;

 private:
  kj::Promise<size_t> readLoop(kj::byte* buffer, size_t minBytes, size_t maxBytes, size_t done);
  [[noreturn]] void fail(const Status& status);

  kj::Own<kj::AsyncIoStream> transport_;
  crypto::Session session_;
  ChannelFailureHandler onFailure_;
  std::deque<std::vector<uint8_t>> plaintext_;  // decrypted frames not yet returned
  size_t frontOffset_ = 0;                      // bytes of plaintext_.front() already returned
  bool endOfStream_ = false;                    // the peer's close frame arrived, then EOF
  bool ended_ = false;                          // we sent our close frame
  Status failure_;
  std::vector<uint8_t> readBuffer_;
  kj::Maybe<kj::Promise<void>> pendingEnd_;
};

struct SecureConnection {
  kj::Own<SecureStream> stream;
  crypto::PublicKey peer;
};

// Client side: runs the handshake over `transport`. Rejects (DISCONNECTED, description
// "<StatusCode>: <reason>") if the peer is not in `acceptedPeers`, closes the connection
// during the handshake (e.g. because it does not know our key), or sends bad messages.
kj::Promise<SecureConnection> secureConnect(kj::Own<kj::AsyncIoStream> transport,
                                            const crypto::Identity& self,
                                            std::vector<crypto::PublicKey> acceptedPeers,
                                            ChannelFailureHandler onFailure = {});
// Server side. An initiator whose key is not in `acceptedPeers` is refused after its first
// message, before we send anything; `onFailure` hears every handshake failure.
kj::Promise<SecureConnection> secureAccept(kj::Own<kj::AsyncIoStream> transport,
                                           const crypto::Identity& self,
                                           std::vector<crypto::PublicKey> acceptedPeers,
                                           ChannelFailureHandler onFailure = {});

}  // namespace trialmesh::protocol
