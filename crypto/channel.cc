#include "crypto/channel.h"

#include <sodium.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <string>
#include <string_view>
#include <utility>

#include "crypto/key_access.h"

namespace trialmesh::crypto {

namespace detail {
struct ChannelAccess {
  static FrameSealer sealer(SecretBytes key) { return FrameSealer(std::move(key)); }
  static FrameOpener opener(SecretBytes key) { return FrameOpener(std::move(key)); }
};
}  // namespace detail

using detail::KeyAccess;
using detail::SecretBytes;

namespace {

static_assert(crypto_kx_PUBLICKEYBYTES == 32 && crypto_kx_SECRETKEYBYTES == 32);
static_assert(crypto_kx_SESSIONKEYBYTES == 32);
static_assert(crypto_aead_xchacha20poly1305_ietf_KEYBYTES == 32);
static_assert(crypto_aead_xchacha20poly1305_ietf_NPUBBYTES == 24);
static_assert(crypto_aead_xchacha20poly1305_ietf_ABYTES == 16);

constexpr std::string_view kDomain = "trialmesh-channel-v1";
// Same length on purpose; distinct so a signature made as one role is useless as the other.
constexpr std::string_view kResponderSigLabel = "trialmesh-channel-v1 responder";
constexpr std::string_view kInitiatorSigLabel = "trialmesh-channel-v1 initiator";
constexpr std::string_view kKeyLabelI2R = "trialmesh-channel-v1 key i2r";
constexpr std::string_view kKeyLabelR2I = "trialmesh-channel-v1 key r2i";

constexpr uint8_t kMsg1Type = 1;
constexpr uint8_t kMsg2Type = 2;
constexpr uint8_t kMsg3Type = 3;
constexpr size_t kMsgHeaderBytes = 3;  // type, version (u16 BE)
static_assert(kHandshakeMessage1Bytes == kMsgHeaderBytes + 32 + 32);
static_assert(kHandshakeMessage2Bytes == kMsgHeaderBytes + 32 + 32 + kSignatureBytes);
static_assert(kHandshakeMessage3Bytes == kMsgHeaderBytes + kSignatureBytes);

constexpr size_t kFrameHeaderBytes = 12;  // length u32 BE, counter u64 BE
constexpr size_t kTagBytes = crypto_aead_xchacha20poly1305_ietf_ABYTES;
constexpr size_t kMinFrameBody = 1 + kTagBytes;
constexpr size_t kMaxFrameBody = kMaxFramePlaintextBytes + 1 + kTagBytes;
static_assert(kFrameOverheadBytes == kFrameHeaderBytes + 1 + kTagBytes);
constexpr uint8_t kFrameData = 0;
constexpr uint8_t kFrameClose = 1;

using Bytes32 = std::array<uint8_t, 32>;

void append(std::vector<uint8_t>& out, std::string_view s) {
  out.insert(out.end(), s.begin(), s.end());
}
void append(std::vector<uint8_t>& out, std::span<const uint8_t> s) {
  out.insert(out.end(), s.begin(), s.end());
}

std::vector<uint8_t> messageHeader(uint8_t type) {
  return {type, static_cast<uint8_t>(kChannelProtocolVersion >> 8),
          static_cast<uint8_t>(kChannelProtocolVersion & 0xff)};
}

// Checks length, type and version of a received handshake message.
Status checkMessage(std::span<const uint8_t> msg, uint8_t type, size_t size) {
  const std::string name = "handshake message " + std::to_string(type);
  if (msg.size() != size) {
    return Status::corruption(name + " has " + std::to_string(msg.size()) + " bytes, expected " +
                              std::to_string(size) +
                              " (not a trialmesh peer, or a damaged stream)");
  }
  if (msg[0] != type) {
    return Status::corruption("expected " + name + ", got message type " + std::to_string(msg[0]));
  }
  const unsigned version = (unsigned{msg[1]} << 8) | msg[2];
  if (version != kChannelProtocolVersion) {
    return Status::failedPrecondition(
        "peer speaks channel protocol version " + std::to_string(version) + ", this node speaks " +
        std::to_string(kChannelProtocolVersion) + "; run the same trialmesh release on both sites");
  }
  return Status::ok();
}

Bytes32 transcriptHash(const Bytes32& ephI, const Bytes32& ephR, const PublicKey& idI,
                       const PublicKey& idR) {
  std::vector<uint8_t> t;
  append(t, kDomain);
  t.push_back(static_cast<uint8_t>(kChannelProtocolVersion >> 8));
  t.push_back(static_cast<uint8_t>(kChannelProtocolVersion & 0xff));
  append(t, ephI);
  append(t, ephR);
  append(t, idI.bytes());
  append(t, idR.bytes());
  Bytes32 h;
  crypto_hash_sha256(h.data(), t.data(), t.size());
  return h;
}

std::vector<uint8_t> signedMessage(std::string_view label, const Bytes32& hash) {
  std::vector<uint8_t> m;
  append(m, label);
  append(m, hash);
  return m;
}

// Session key for one direction: BLAKE2b-256 keyed with crypto_kx's key for that direction,
// over a direction label and the transcript hash, so the key belongs to this handshake only.
SecretBytes deriveKey(const SecretBytes& kxKey, std::string_view label, const Bytes32& hash) {
  std::vector<uint8_t> m;
  append(m, label);
  append(m, hash);
  SecretBytes out(crypto_aead_xchacha20poly1305_ietf_KEYBYTES);
  crypto_generichash(out.data(), out.size(), m.data(), m.size(), kxKey.data(), kxKey.size());
  return out;
}

bool isMember(const std::vector<PublicKey>& accepted, const PublicKey& key) {
  return std::find(accepted.begin(), accepted.end(), key) != accepted.end();
}

Status notMember(const PublicKey& key, std::string_view role) {
  return Status::permissionDenied("peer key " + key.toText() + " (" + std::string(role) +
                                  ") is not a member of this federation; if it should be, add "
                                  "it to the member list on this node");
}

Signature readSignature(const uint8_t* p) {
  Signature s;
  std::memcpy(s.data(), p, s.size());
  return s;
}

Bytes32 read32(const uint8_t* p) {
  Bytes32 b;
  std::memcpy(b.data(), p, b.size());
  return b;
}

void putU32(uint8_t* p, uint32_t v) {
  for (int i = 3; i >= 0; --i, v >>= 8) {
    p[i] = static_cast<uint8_t>(v);
  }
}
void putU64(uint8_t* p, uint64_t v) {
  for (int i = 7; i >= 0; --i, v >>= 8) {
    p[i] = static_cast<uint8_t>(v);
  }
}
uint32_t getU32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}
uint64_t getU64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) {
    v = (v << 8) | p[i];
  }
  return v;
}

// Nonce = 64-bit frame counter (big-endian) followed by zeros. Each direction has its own
// key, so (key, nonce) pairs never repeat as long as the counter never wraps.
std::array<uint8_t, 24> frameNonce(uint64_t counter) {
  std::array<uint8_t, 24> n{};
  putU64(n.data(), counter);
  return n;
}

enum class Phase {
  kInitial,
  kAwaitingMessage2,
  kAwaitingFinish,
  kAwaitingMessage3,
  kDone,
  kFailed
};

}  // namespace

// ---------------------------------------------------------------- framing

Result<std::vector<uint8_t>> FrameSealer::seal(std::span<const uint8_t> plaintext) {
  return sealFrame(kFrameData, plaintext);
}

Result<std::vector<uint8_t>> FrameSealer::sealClose() { return sealFrame(kFrameClose, {}); }

Result<std::vector<uint8_t>> FrameSealer::sealFrame(uint8_t type,
                                                    std::span<const uint8_t> plaintext) {
  if (closed_) {
    return Status::failedPrecondition("channel: cannot send after the close frame");
  }
  if (plaintext.size() > kMaxFramePlaintextBytes) {
    return Status::invalidArgument("channel: frame of " + std::to_string(plaintext.size()) +
                                   " bytes exceeds the limit of " +
                                   std::to_string(kMaxFramePlaintextBytes) + "; split it");
  }
  if (counter_ == std::numeric_limits<uint64_t>::max()) {
    return Status::resourceExhausted("channel: frame counter exhausted; reconnect");
  }
  const size_t n = plaintext.size();
  const size_t body = n + 1 + kTagBytes;
  std::vector<uint8_t> out(kFrameHeaderBytes + body);
  putU32(out.data(), static_cast<uint32_t>(body));
  putU64(out.data() + 4, counter_);
  if (n > 0) {
    std::memcpy(out.data() + kFrameHeaderBytes, plaintext.data(), n);
  }
  out[kFrameHeaderBytes + n] = type;
  const auto nonce = frameNonce(counter_);
  unsigned long long clen = 0;
  // In place: libsodium allows the ciphertext to overwrite the message.
  crypto_aead_xchacha20poly1305_ietf_encrypt(out.data() + kFrameHeaderBytes, &clen,
                                             out.data() + kFrameHeaderBytes, n + 1, out.data(),
                                             kFrameHeaderBytes, nullptr, nonce.data(), key_.data());
  ++counter_;
  if (type == kFrameClose) {
    closed_ = true;
  }
  return out;
}

Status FrameOpener::fail(Status s) {
  failure_ = s;
  pending_.clear();
  pending_.shrink_to_fit();
  frames_.clear();
  return s;
}

Status FrameOpener::openFrame(const uint8_t* header, std::span<const uint8_t> body) {
  const uint64_t counter = getU64(header + 4);
  if (counter != expected_) {
    if (counter < expected_) {
      return fail(Status::corruption("channel: frame counter " + std::to_string(counter) +
                                     " was already received (expected " +
                                     std::to_string(expected_) + "): replayed frame"));
    }
    return fail(Status::corruption("channel: frame counter " + std::to_string(counter) +
                                   " skips ahead of expected " + std::to_string(expected_) +
                                   ": a frame was dropped or reordered"));
  }
  if (expected_ == std::numeric_limits<uint64_t>::max()) {
    return fail(Status::resourceExhausted("channel: frame counter exhausted; reconnect"));
  }
  std::vector<uint8_t> plain(body.size() - kTagBytes);
  const auto nonce = frameNonce(counter);
  unsigned long long mlen = 0;
  if (crypto_aead_xchacha20poly1305_ietf_decrypt(plain.data(), &mlen, nullptr, body.data(),
                                                 body.size(), header, kFrameHeaderBytes,
                                                 nonce.data(), key_.data()) != 0) {
    return fail(Status::corruption("channel: frame " + std::to_string(counter) +
                                   " failed authentication: it was modified in transit"));
  }
  const uint8_t type = plain.back();
  plain.pop_back();
  ++expected_;
  if (type == kFrameData) {
    frames_.push_back(std::move(plain));
  } else if (type == kFrameClose) {
    if (!plain.empty()) {
      return fail(Status::corruption("channel: close frame carries data"));
    }
    closed_ = true;
  } else {
    return fail(Status::corruption("channel: unknown frame type " + std::to_string(type)));
  }
  return Status::ok();
}

Status FrameOpener::feed(std::span<const uint8_t> bytes) {
  if (!failure_.isOk()) {
    return failure_;
  }
  size_t pos = 0;
  while (pos < bytes.size()) {
    if (closed_) {
      return fail(Status::corruption("channel: " + std::to_string(bytes.size() - pos) +
                                     " bytes received after the close frame"));
    }
    if (pending_.size() < kFrameHeaderBytes) {
      const size_t take = std::min(kFrameHeaderBytes - pending_.size(), bytes.size() - pos);
      pending_.insert(pending_.end(), bytes.begin() + pos, bytes.begin() + pos + take);
      pos += take;
      if (pending_.size() < kFrameHeaderBytes) {
        break;
      }
      const uint32_t len = getU32(pending_.data());
      if (len > kMaxFrameBody) {
        return fail(Status::resourceExhausted("channel: frame header announces " +
                                              std::to_string(len) + " bytes, above the limit of " +
                                              std::to_string(kMaxFrameBody)));
      }
      if (len < kMinFrameBody) {
        return fail(Status::corruption("channel: frame length " + std::to_string(len) +
                                       " is below the minimum of " +
                                       std::to_string(kMinFrameBody)));
      }
      bodyBytes_ = len;
    }
    const size_t have = pending_.size() - kFrameHeaderBytes;
    const size_t remaining = bytes.size() - pos;
    if (have == 0 && remaining >= bodyBytes_) {
      // The whole body is in this read: open it without copying it first.
      TM_RETURN_IF_ERROR(openFrame(pending_.data(), bytes.subspan(pos, bodyBytes_)));
      pos += bodyBytes_;
      pending_.clear();
      continue;
    }
    const size_t take = std::min(bodyBytes_ - have, remaining);
    pending_.insert(pending_.end(), bytes.begin() + pos, bytes.begin() + pos + take);
    pos += take;
    if (pending_.size() == kFrameHeaderBytes + bodyBytes_) {
      TM_RETURN_IF_ERROR(openFrame(pending_.data(),
                                   std::span<const uint8_t>(pending_).subspan(kFrameHeaderBytes)));
      pending_.clear();
    }
  }
  return Status::ok();
}

std::optional<std::vector<uint8_t>> FrameOpener::nextFrame() {
  if (frames_.empty()) {
    return std::nullopt;
  }
  std::vector<uint8_t> f = std::move(frames_.front());
  frames_.pop_front();
  return f;
}

Status FrameOpener::onEndOfStream() {
  if (!failure_.isOk()) {
    return failure_;
  }
  if (!pending_.empty()) {
    const size_t want =
        pending_.size() < kFrameHeaderBytes ? kFrameHeaderBytes : kFrameHeaderBytes + bodyBytes_;
    return fail(Status::corruption("channel: stream ended in the middle of a frame (" +
                                   std::to_string(pending_.size()) + " of " + std::to_string(want) +
                                   " bytes): the stream was truncated"));
  }
  if (!closed_) {
    return fail(Status::corruption(
        "channel: stream ended without a close frame: it was truncated (or the peer crashed)"));
  }
  return Status::ok();
}

// ---------------------------------------------------------------- handshake

namespace {

// State shared by both roles.
struct HandshakeCore {
  HandshakeCore(const Identity& s, std::vector<PublicKey> a)
      : self(&s),
        accepted(std::move(a)),
        ephSecret(crypto_kx_SECRETKEYBYTES),
        kxRx(crypto_kx_SESSIONKEYBYTES),
        kxTx(crypto_kx_SESSIONKEYBYTES) {
    detail::ensureSodium();
  }

  // Generated only when needed, so a refused stranger costs no key generation.
  void makeEphemeral() { crypto_kx_keypair(ephPub.data(), ephSecret.data()); }

  Status fail(Status s) {
    phase = Phase::kFailed;
    failure = s;
    return s;
  }
  Status wrongOrder(const char* call) {
    if (phase == Phase::kFailed) {
      return failure;
    }
    return fail(
        Status::failedPrecondition(std::string("handshake: ") + call + " called out of order"));
  }

  Session makeSession(bool initiator) {
    // crypto_kx: the client's tx equals the server's rx, so i2r comes from the initiator's tx
    // and the responder's rx; deriving both from labels keeps the directions apart.
    SecretBytes i2r = deriveKey(initiator ? kxTx : kxRx, kKeyLabelI2R, hash);
    SecretBytes r2i = deriveKey(initiator ? kxRx : kxTx, kKeyLabelR2I, hash);
    phase = Phase::kDone;
    // Forward secrecy: nothing that could recompute the session keys outlives this call.
    sodium_memzero(ephSecret.data(), ephSecret.size());
    sodium_memzero(kxRx.data(), kxRx.size());
    sodium_memzero(kxTx.data(), kxTx.size());
    if (initiator) {
      return Session{*peer, detail::ChannelAccess::sealer(std::move(i2r)),
                     detail::ChannelAccess::opener(std::move(r2i)), hash};
    }
    return Session{*peer, detail::ChannelAccess::sealer(std::move(r2i)),
                   detail::ChannelAccess::opener(std::move(i2r)), hash};
  }

  const Identity* self;
  std::vector<PublicKey> accepted;
  Phase phase = Phase::kInitial;
  Status failure;
  SecretBytes ephSecret;
  Bytes32 ephPub{};
  Bytes32 peerEph{};
  std::optional<PublicKey> peer;
  Bytes32 hash{};
  SecretBytes kxRx;
  SecretBytes kxTx;
};

}  // namespace

struct HandshakeInitiator::State : HandshakeCore {
  using HandshakeCore::HandshakeCore;
};
struct HandshakeResponder::State : HandshakeCore {
  using HandshakeCore::HandshakeCore;
};

HandshakeInitiator::HandshakeInitiator(const Identity& self, std::vector<PublicKey> acceptedPeers)
    : state_(std::make_unique<State>(self, std::move(acceptedPeers))) {}
HandshakeInitiator::~HandshakeInitiator() = default;
HandshakeInitiator::HandshakeInitiator(HandshakeInitiator&&) noexcept = default;
HandshakeInitiator& HandshakeInitiator::operator=(HandshakeInitiator&&) noexcept = default;

Result<std::vector<uint8_t>> HandshakeInitiator::start() {
  State& s = *state_;
  if (s.phase != Phase::kInitial) {
    return s.wrongOrder("start()");
  }
  s.makeEphemeral();
  std::vector<uint8_t> m = messageHeader(kMsg1Type);
  append(m, s.ephPub);
  append(m, s.self->pub.bytes());
  s.phase = Phase::kAwaitingMessage2;
  return m;
}

Result<std::vector<uint8_t>> HandshakeInitiator::onMessage2(std::span<const uint8_t> msg) {
  State& s = *state_;
  if (s.phase != Phase::kAwaitingMessage2) {
    return s.wrongOrder("onMessage2()");
  }
  if (Status st = checkMessage(msg, kMsg2Type, kHandshakeMessage2Bytes); !st.isOk()) {
    return s.fail(st);
  }
  const uint8_t* p = msg.data() + kMsgHeaderBytes;
  s.peerEph = read32(p);
  PublicKey responder(read32(p + 32));
  const Signature sig = readSignature(p + 64);
  if (!isMember(s.accepted, responder)) {
    return s.fail(notMember(responder, "responder"));
  }
  if (sodium_memcmp(s.peerEph.data(), s.ephPub.data(), 32) == 0) {
    return s.fail(Status::corruption("handshake: responder echoed our ephemeral key (reflection)"));
  }
  s.hash = transcriptHash(s.ephPub, s.peerEph, s.self->pub, responder);
  if (!verify(responder, signedMessage(kResponderSigLabel, s.hash), sig)) {
    return s.fail(Status::permissionDenied(
        "handshake: responder signature by " + responder.toText() +
        " does not verify: the handshake was tampered with or the peer does not hold that key"));
  }
  if (crypto_kx_client_session_keys(s.kxRx.data(), s.kxTx.data(), s.ephPub.data(),
                                    s.ephSecret.data(), s.peerEph.data()) != 0) {
    return s.fail(Status::corruption("handshake: responder's ephemeral key is invalid"));
  }
  s.peer = responder;
  std::vector<uint8_t> m = messageHeader(kMsg3Type);
  append(m, sign(s.self->secret, signedMessage(kInitiatorSigLabel, s.hash)));
  s.phase = Phase::kAwaitingFinish;
  return m;
}

Result<Session> HandshakeInitiator::finish() {
  State& s = *state_;
  if (s.phase != Phase::kAwaitingFinish) {
    return s.wrongOrder("finish()");
  }
  return s.makeSession(/*initiator=*/true);
}

HandshakeResponder::HandshakeResponder(const Identity& self, std::vector<PublicKey> acceptedPeers)
    : state_(std::make_unique<State>(self, std::move(acceptedPeers))) {}
HandshakeResponder::~HandshakeResponder() = default;
HandshakeResponder::HandshakeResponder(HandshakeResponder&&) noexcept = default;
HandshakeResponder& HandshakeResponder::operator=(HandshakeResponder&&) noexcept = default;

Result<std::vector<uint8_t>> HandshakeResponder::onMessage1(std::span<const uint8_t> msg) {
  State& s = *state_;
  if (s.phase != Phase::kInitial) {
    return s.wrongOrder("onMessage1()");
  }
  if (Status st = checkMessage(msg, kMsg1Type, kHandshakeMessage1Bytes); !st.isOk()) {
    return s.fail(st);
  }
  const uint8_t* p = msg.data() + kMsgHeaderBytes;
  s.peerEph = read32(p);
  PublicKey initiator(read32(p + 32));
  // Membership first: a stranger gets no signature and costs us no key agreement.
  if (!isMember(s.accepted, initiator)) {
    return s.fail(notMember(initiator, "initiator"));
  }
  s.makeEphemeral();
  if (sodium_memcmp(s.peerEph.data(), s.ephPub.data(), 32) == 0) {
    return s.fail(Status::corruption("handshake: initiator sent our ephemeral key (reflection)"));
  }
  if (crypto_kx_server_session_keys(s.kxRx.data(), s.kxTx.data(), s.ephPub.data(),
                                    s.ephSecret.data(), s.peerEph.data()) != 0) {
    return s.fail(Status::corruption("handshake: initiator's ephemeral key is invalid"));
  }
  s.peer = initiator;
  s.hash = transcriptHash(s.peerEph, s.ephPub, initiator, s.self->pub);
  std::vector<uint8_t> m = messageHeader(kMsg2Type);
  append(m, s.ephPub);
  append(m, s.self->pub.bytes());
  append(m, sign(s.self->secret, signedMessage(kResponderSigLabel, s.hash)));
  s.phase = Phase::kAwaitingMessage3;
  return m;
}

Result<Session> HandshakeResponder::onMessage3(std::span<const uint8_t> msg) {
  State& s = *state_;
  if (s.phase != Phase::kAwaitingMessage3) {
    return s.wrongOrder("onMessage3()");
  }
  if (Status st = checkMessage(msg, kMsg3Type, kHandshakeMessage3Bytes); !st.isOk()) {
    return s.fail(st);
  }
  const Signature sig = readSignature(msg.data() + kMsgHeaderBytes);
  if (!verify(*s.peer, signedMessage(kInitiatorSigLabel, s.hash), sig)) {
    return s.fail(Status::permissionDenied(
        "handshake: initiator signature by " + s.peer->toText() +
        " does not verify: the handshake was tampered with or the peer does not hold that key"));
  }
  return s.makeSession(/*initiator=*/false);
}

}  // namespace trialmesh::crypto
