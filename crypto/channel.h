// The secure channel between federation members: a mutually authenticated handshake and
// encrypted, authenticated framing. Transport-agnostic (bytes in, bytes out; no sockets, no
// KJ), so the node can wrap it in a kj::AsyncIoStream under Cap'n Proto RPC.
// Byte layouts, key derivation and the threat model are in docs/channel.md.
//
// Usage (the transport moves the bytes; handshake messages have fixed sizes):
//   initiator                                 responder
//   HandshakeInitiator hi(me, members);       HandshakeResponder hr(me, members);
//   m1 = hi.start()            --m1 (67 B)--> m2 = hr.onMessage1(m1)
//   m3 = hi.onMessage2(m2)    <--m2 (131 B)--
//   s = hi.finish()            --m3 (67 B)--> s = hr.onMessage3(m3)
// Then s.sealer.seal(data) produces frames to send; s.opener.feed(bytes) consumes received
// bytes and s.opener.nextFrame() yields the plaintexts. The initiator may send frames right
// after m3; the responder must process m3 before feeding frames.
//
// Errors come back as Status/Result with distinct messages for logs. Any failure is final:
// a handshake object or FrameOpener that failed keeps returning that failure, and the
// caller must drop the connection.
//
// Thread-safety: none of these objects is thread-safe; give each to one thread (or one KJ
// event loop). Sealer and opener of one Session are independent and may live on different
// threads.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "common/status.h"
#include "crypto/identity.h"

namespace trialmesh::crypto {

inline constexpr uint16_t kChannelProtocolVersion = 1;
// Exact sizes of the three handshake messages; any other length is refused.
inline constexpr size_t kHandshakeMessage1Bytes = 67;
inline constexpr size_t kHandshakeMessage2Bytes = 131;
inline constexpr size_t kHandshakeMessage3Bytes = 67;
// Largest plaintext in one frame. Larger application messages must be split by the caller.
inline constexpr size_t kMaxFramePlaintextBytes = 1u << 20;
// Bytes a frame adds to its plaintext: 4 length + 8 counter + 1 type + 16 tag.
inline constexpr size_t kFrameOverheadBytes = 29;

namespace detail {
struct ChannelAccess;  // builds sealers/openers inside channel.cc
}

// Seals the frames of one direction. Move-only; owns its key (sodium_malloc memory).
class FrameSealer {
 public:
  FrameSealer(FrameSealer&&) noexcept = default;
  FrameSealer& operator=(FrameSealer&&) noexcept = default;

  // One complete frame carrying `plaintext` (may be empty). Errors: InvalidArgument (larger
  // than kMaxFramePlaintextBytes), FailedPrecondition (after sealClose), ResourceExhausted
  // (2^64-1 frames sent; reconnect).
  Result<std::vector<uint8_t>> seal(std::span<const uint8_t> plaintext);
  // The authenticated close frame; send it last, then shut the transport down.
  Result<std::vector<uint8_t>> sealClose();
  uint64_t framesSealed() const { return counter_; }

 private:
  friend struct detail::ChannelAccess;
  explicit FrameSealer(detail::SecretBytes key) : key_(std::move(key)) {}
  Result<std::vector<uint8_t>> sealFrame(uint8_t type, std::span<const uint8_t> plaintext);

  detail::SecretBytes key_;
  uint64_t counter_ = 0;
  bool closed_ = false;
};

// Opens the frames of one direction, incrementally. Move-only.
class FrameOpener {
 public:
  FrameOpener(FrameOpener&&) noexcept = default;
  FrameOpener& operator=(FrameOpener&&) noexcept = default;

  // Consumes bytes received from the transport, split anywhere. Each complete data frame is
  // authenticated, decrypted and queued for nextFrame(). A frame header announcing more than
  // kMaxFramePlaintextBytes is refused as soon as its 12 header bytes arrive, before any
  // buffer is sized for it. Errors (each with its own message; all final):
  //   Corruption: frame failed authentication (modified, or wrong key); frame counter behind
  //     (replayed) or ahead (dropped or reordered); bad length/type; bytes after close.
  //   ResourceExhausted: announced frame too large.
  Status feed(std::span<const uint8_t> bytes);
  // The oldest decrypted frame not yet taken, if any.
  std::optional<std::vector<uint8_t>> nextFrame();
  // Call when the transport reports end of stream. OK only if the peer's close frame was
  // received and no partial frame is pending; otherwise Corruption ("truncated").
  Status onEndOfStream();
  bool closeReceived() const { return closed_; }
  uint64_t framesOpened() const { return expected_; }

 private:
  friend struct detail::ChannelAccess;
  explicit FrameOpener(detail::SecretBytes key) : key_(std::move(key)) {}
  Status fail(Status s);
  Status openFrame(const uint8_t* header, std::span<const uint8_t> body);

  detail::SecretBytes key_;
  uint64_t expected_ = 0;
  bool closed_ = false;
  Status failure_;
  std::vector<uint8_t> pending_;  // bytes of the current incomplete frame (header first)
  size_t bodyBytes_ = 0;          // valid once pending_ holds a full header
  std::deque<std::vector<uint8_t>> frames_;
};

// The result of a completed handshake.
struct Session {
  PublicKey peer;                         // authenticated peer identity (a federation member)
  FrameSealer sealer;                     // our frames to the peer
  FrameOpener opener;                     // the peer's frames to us
  std::array<uint8_t, 32> handshakeHash;  // transcript hash; public, usable as channel binding
};

// Client side of the handshake. Single use; methods must be called in order.
class HandshakeInitiator {
 public:
  // REQUIRES: `self` outlives this object. `acceptedPeers`: identities we will talk to
  // (the federation members, or just the one we dial).
  HandshakeInitiator(const Identity& self, std::vector<PublicKey> acceptedPeers);
  ~HandshakeInitiator();
  HandshakeInitiator(HandshakeInitiator&&) noexcept;
  HandshakeInitiator& operator=(HandshakeInitiator&&) noexcept;

  // Message 1 (kHandshakeMessage1Bytes).
  Result<std::vector<uint8_t>> start();
  // Checks message 2 (length, version, responder membership, responder signature) and
  // returns message 3. Errors: Corruption (malformed), FailedPrecondition (other version),
  // PermissionDenied (not a member / bad signature).
  Result<std::vector<uint8_t>> onMessage2(std::span<const uint8_t> message2);
  // The session, once onMessage2 succeeded. Call once.
  Result<Session> finish();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// Server side of the handshake. Single use; methods must be called in order.
class HandshakeResponder {
 public:
  // REQUIRES: `self` outlives this object.
  HandshakeResponder(const Identity& self, std::vector<PublicKey> acceptedPeers);
  ~HandshakeResponder();
  HandshakeResponder(HandshakeResponder&&) noexcept;
  HandshakeResponder& operator=(HandshakeResponder&&) noexcept;

  // Checks message 1 (length, version, initiator membership, before any work or reply) and
  // returns message 2.
  Result<std::vector<uint8_t>> onMessage1(std::span<const uint8_t> message1);
  // Checks the initiator's signature in message 3 and returns the session.
  Result<Session> onMessage3(std::span<const uint8_t> message3);

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace trialmesh::crypto
