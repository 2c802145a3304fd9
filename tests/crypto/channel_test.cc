#include "crypto/channel.h"

#include <gtest/gtest.h>

#include <random>
#include <string>

namespace trialmesh::crypto {
namespace {

std::vector<uint8_t> bytes(std::string_view s) { return {s.begin(), s.end()}; }

void expectError(const Status& s, StatusCode code, const std::string& fragment) {
  EXPECT_EQ(s.code(), code) << s.toString();
  EXPECT_NE(s.message().find(fragment), std::string::npos)
      << "message: " << s.message() << "\nexpected fragment: " << fragment;
}

struct Pair {
  Session initiator;
  Session responder;
};

Pair connect(const Identity& a, const Identity& b) {
  HandshakeInitiator hi(a, {b.pub});
  HandshakeResponder hr(b, {a.pub});
  auto m1 = hi.start();
  EXPECT_TRUE(m1.isOk());
  auto m2 = hr.onMessage1(*m1);
  EXPECT_TRUE(m2.isOk()) << m2.status().toString();
  auto m3 = hi.onMessage2(*m2);
  EXPECT_TRUE(m3.isOk()) << m3.status().toString();
  auto si = hi.finish();
  EXPECT_TRUE(si.isOk());
  auto sr = hr.onMessage3(*m3);
  EXPECT_TRUE(sr.isOk()) << sr.status().toString();
  return Pair{std::move(si).value(), std::move(sr).value()};
}

class ChannelTest : public ::testing::Test {
 protected:
  Identity a_ = generateIdentity();
  Identity b_ = generateIdentity();
  Identity c_ = generateIdentity();  // a third member
  Identity stranger_ = generateIdentity();
};

// ---------------------------------------------------------------- handshake

TEST_F(ChannelTest, HappyPathBothSidesAgree) {
  HandshakeInitiator hi(a_, {b_.pub, c_.pub});
  HandshakeResponder hr(b_, {c_.pub, a_.pub});
  auto m1 = hi.start();
  ASSERT_TRUE(m1.isOk());
  EXPECT_EQ(m1->size(), kHandshakeMessage1Bytes);
  auto m2 = hr.onMessage1(*m1);
  ASSERT_TRUE(m2.isOk()) << m2.status().toString();
  EXPECT_EQ(m2->size(), kHandshakeMessage2Bytes);
  auto m3 = hi.onMessage2(*m2);
  ASSERT_TRUE(m3.isOk()) << m3.status().toString();
  EXPECT_EQ(m3->size(), kHandshakeMessage3Bytes);
  auto si = hi.finish();
  auto sr = hr.onMessage3(*m3);
  ASSERT_TRUE(si.isOk());
  ASSERT_TRUE(sr.isOk()) << sr.status().toString();
  EXPECT_EQ(si->peer, b_.pub);
  EXPECT_EQ(sr->peer, a_.pub);
  EXPECT_EQ(si->handshakeHash, sr->handshakeHash);

  // Matching keys: each direction opens what the other side sealed.
  auto f1 = si->sealer.seal(bytes("hello b"));
  ASSERT_TRUE(f1.isOk());
  ASSERT_TRUE(sr->opener.feed(*f1).isOk());
  EXPECT_EQ(sr->opener.nextFrame(), bytes("hello b"));
  auto f2 = sr->sealer.seal(bytes("hello a"));
  ASSERT_TRUE(f2.isOk());
  ASSERT_TRUE(si->opener.feed(*f2).isOk());
  EXPECT_EQ(si->opener.nextFrame(), bytes("hello a"));
  EXPECT_EQ(si->opener.nextFrame(), std::nullopt);
}

TEST_F(ChannelTest, DirectionsAndSessionsUseDistinctKeys) {
  Pair p = connect(a_, b_);
  Pair q = connect(a_, b_);
  EXPECT_NE(p.initiator.handshakeHash, q.initiator.handshakeHash);
  auto f = p.initiator.sealer.seal(bytes("x"));
  ASSERT_TRUE(f.isOk());
  // Reflected back to the sender, or fed to another session: fails.
  expectError(p.initiator.opener.feed(*f), StatusCode::kCorruption, "failed authentication");
  expectError(q.responder.opener.feed(*f), StatusCode::kCorruption, "failed authentication");
  EXPECT_TRUE(p.responder.opener.feed(*f).isOk());
}

TEST_F(ChannelTest, UnknownInitiatorRefusedBeforeAnyReply) {
  HandshakeInitiator hi(stranger_, {b_.pub});
  HandshakeResponder hr(b_, {a_.pub, c_.pub});
  auto m1 = hi.start();
  ASSERT_TRUE(m1.isOk());
  auto m2 = hr.onMessage1(*m1);
  ASSERT_FALSE(m2.isOk());
  expectError(
      m2.status(), StatusCode::kPermissionDenied,
      "peer key " + stranger_.pub.toText() + " (initiator) is not a member of this federation");
  // The failure is final.
  expectError(hr.onMessage3(std::vector<uint8_t>(kHandshakeMessage3Bytes)).status(),
              StatusCode::kPermissionDenied, "is not a member");
}

TEST_F(ChannelTest, UnknownResponderRefused) {
  HandshakeInitiator hi(a_, {b_.pub});
  HandshakeResponder hr(stranger_, {a_.pub});
  auto m1 = hi.start();
  auto m2 = hr.onMessage1(*m1);
  ASSERT_TRUE(m2.isOk());
  auto m3 = hi.onMessage2(*m2);
  ASSERT_FALSE(m3.isOk());
  expectError(m3.status(), StatusCode::kPermissionDenied,
              "peer key " + stranger_.pub.toText() + " (responder) is not a member");
  EXPECT_FALSE(hi.finish().isOk());
}

TEST_F(ChannelTest, TamperedMessage2SignatureRefused) {
  for (size_t i = 67; i < kHandshakeMessage2Bytes; i += 7) {
    HandshakeInitiator hi(a_, {b_.pub});
    HandshakeResponder hr(b_, {a_.pub});
    auto m1 = hi.start();
    auto m2 = hr.onMessage1(*m1);
    ASSERT_TRUE(m2.isOk());
    (*m2)[i] ^= 0x04;
    auto m3 = hi.onMessage2(*m2);
    ASSERT_FALSE(m3.isOk()) << "byte " << i;
    expectError(m3.status(), StatusCode::kPermissionDenied, "responder signature by");
  }
}

TEST_F(ChannelTest, TamperedMessage3SignatureRefused) {
  for (size_t i = 3; i < kHandshakeMessage3Bytes; i += 5) {
    HandshakeInitiator hi(a_, {b_.pub});
    HandshakeResponder hr(b_, {a_.pub});
    auto m2 = hr.onMessage1(*hi.start());
    auto m3 = hi.onMessage2(*m2);
    ASSERT_TRUE(m3.isOk());
    (*m3)[i] ^= 0x80;
    auto s = hr.onMessage3(*m3);
    ASSERT_FALSE(s.isOk()) << "byte " << i;
    expectError(s.status(), StatusCode::kPermissionDenied, "initiator signature by");
  }
}

// An on-path attacker replaces the initiator's ephemeral key with its own (to learn the
// session keys): the responder signs the substituted transcript, which the initiator rejects.
TEST_F(ChannelTest, MitmReplacingInitiatorEphemeralRefused) {
  HandshakeInitiator hi(a_, {b_.pub});
  HandshakeResponder hr(b_, {a_.pub});
  HandshakeInitiator mallory(c_, {b_.pub});  // supplies a genuine-looking ephemeral key
  auto m1 = hi.start();
  auto mm = mallory.start();
  std::vector<uint8_t> forged = *m1;
  std::copy(mm->begin() + 3, mm->begin() + 35, forged.begin() + 3);
  auto m2 = hr.onMessage1(forged);
  ASSERT_TRUE(m2.isOk());
  auto m3 = hi.onMessage2(*m2);
  ASSERT_FALSE(m3.isOk());
  expectError(m3.status(), StatusCode::kPermissionDenied, "does not verify");
}

TEST_F(ChannelTest, MitmReplacingResponderEphemeralRefused) {
  HandshakeInitiator hi(a_, {b_.pub});
  HandshakeResponder hr(b_, {a_.pub});
  HandshakeResponder mallory(c_, {a_.pub});
  auto m1 = hi.start();
  auto m2 = hr.onMessage1(*m1);
  auto mm2 = mallory.onMessage1(*m1);
  ASSERT_TRUE(mm2.isOk());
  std::vector<uint8_t> forged = *m2;
  std::copy(mm2->begin() + 3, mm2->begin() + 35, forged.begin() + 3);
  expectError(hi.onMessage2(forged).status(), StatusCode::kPermissionDenied, "does not verify");
}

// A member (c) cannot claim to be another member (a) by swapping identities in message 1:
// it cannot produce a's signature over the transcript.
TEST_F(ChannelTest, IdentitySubstitutionRefused) {
  HandshakeInitiator hc(c_, {b_.pub});
  HandshakeResponder hr(b_, {a_.pub, c_.pub});
  auto m1 = hc.start();
  std::vector<uint8_t> forged = *m1;
  std::copy(a_.pub.bytes().begin(), a_.pub.bytes().end(), forged.begin() + 35);
  auto m2 = hr.onMessage1(forged);
  ASSERT_TRUE(m2.isOk());
  // c's honest message 3 is signed by c over a transcript naming c: rejected as a's.
  auto m3 = hc.onMessage2(*m2);
  ASSERT_FALSE(m3.isOk());  // c sees b signed a transcript naming a, not c
  std::vector<uint8_t> fake3 = {3, 0, 1};
  fake3.resize(kHandshakeMessage3Bytes);
  expectError(hr.onMessage3(fake3).status(), StatusCode::kPermissionDenied,
              "initiator signature by " + a_.pub.toText());
}

// The responder's signature cannot be reflected as the initiator's (distinct role labels),
// even by a node whose identity is the same on both ends.
TEST_F(ChannelTest, SignatureReflectionRefused) {
  HandshakeInitiator hi(a_, {a_.pub});
  HandshakeResponder hr(a_, {a_.pub});
  auto m2 = hr.onMessage1(*hi.start());
  ASSERT_TRUE(m2.isOk());
  std::vector<uint8_t> reflected = {3, 0, 1};
  reflected.insert(reflected.end(), m2->begin() + 67, m2->end());
  expectError(hr.onMessage3(reflected).status(), StatusCode::kPermissionDenied,
              "initiator signature");
}

TEST_F(ChannelTest, MalformedHandshakeMessagesRefused) {
  {
    HandshakeResponder hr(b_, {a_.pub});
    expectError(hr.onMessage1(std::vector<uint8_t>(66)).status(), StatusCode::kCorruption,
                "handshake message 1 has 66 bytes, expected 67");
  }
  {
    HandshakeInitiator hi(a_, {b_.pub});
    HandshakeResponder hr(b_, {a_.pub});
    auto m1 = hi.start();
    (*m1)[2] = 2;  // version 2
    expectError(hr.onMessage1(*m1).status(), StatusCode::kFailedPrecondition,
                "peer speaks channel protocol version 2, this node speaks 1");
  }
  {
    HandshakeInitiator hi(a_, {b_.pub});
    HandshakeResponder hr(b_, {a_.pub});
    auto m1 = hi.start();
    (*m1)[0] = 3;
    expectError(hr.onMessage1(*m1).status(), StatusCode::kCorruption,
                "expected handshake message 1, got message type 3");
  }
  {
    HandshakeInitiator hi(a_, {b_.pub});
    HandshakeResponder hr(b_, {a_.pub});
    auto m2 = hr.onMessage1(*hi.start());
    m2->push_back(0);
    expectError(hi.onMessage2(*m2).status(), StatusCode::kCorruption,
                "handshake message 2 has 132 bytes, expected 131");
  }
}

TEST_F(ChannelTest, CallsOutOfOrderRefused) {
  HandshakeInitiator hi(a_, {b_.pub});
  expectError(hi.finish().status(), StatusCode::kFailedPrecondition,
              "finish() called out of order");
  HandshakeInitiator hi2(a_, {b_.pub});
  ASSERT_TRUE(hi2.start().isOk());
  expectError(hi2.start().status(), StatusCode::kFailedPrecondition, "start() called out of order");
  HandshakeResponder hr(b_, {a_.pub});
  expectError(hr.onMessage3(std::vector<uint8_t>(67)).status(), StatusCode::kFailedPrecondition,
              "onMessage3() called out of order");
}

// ---------------------------------------------------------------- framing

TEST_F(ChannelTest, FrameLayoutLengthAndCounter) {
  Pair p = connect(a_, b_);
  for (uint64_t i = 0; i < 3; ++i) {
    auto f = p.initiator.sealer.seal(std::vector<uint8_t>(100 + i));
    ASSERT_TRUE(f.isOk());
    ASSERT_EQ(f->size(), 100 + i + kFrameOverheadBytes);
    const uint32_t len = (uint32_t{(*f)[0]} << 24) | ((*f)[1] << 16) | ((*f)[2] << 8) | (*f)[3];
    EXPECT_EQ(len, 100 + i + 17);
    for (int k = 4; k < 11; ++k) EXPECT_EQ((*f)[k], 0);
    EXPECT_EQ((*f)[11], i);
    // The payload is not sent in clear (it is all zeros).
    EXPECT_NE(std::vector<uint8_t>(f->begin() + 12, f->begin() + 112),
              std::vector<uint8_t>(100, 0));
  }
  EXPECT_EQ(p.initiator.sealer.framesSealed(), 3u);
}

TEST_F(ChannelTest, RoundTripWithArbitrarySplits) {
  Pair p = connect(a_, b_);
  std::mt19937 rng(12345);
  std::vector<std::vector<uint8_t>> sent;
  std::vector<uint8_t> stream;
  const size_t sizes[] = {0, 1, 15, 16, 17, 1000, 65536, 3, kMaxFramePlaintextBytes, 7};
  for (size_t n : sizes) {
    std::vector<uint8_t> msg(n);
    for (auto& b : msg) b = static_cast<uint8_t>(rng());
    auto f = p.initiator.sealer.seal(msg);
    ASSERT_TRUE(f.isOk()) << f.status().toString();
    stream.insert(stream.end(), f->begin(), f->end());
    sent.push_back(std::move(msg));
  }
  auto close = p.initiator.sealer.sealClose();
  ASSERT_TRUE(close.isOk());
  stream.insert(stream.end(), close->begin(), close->end());

  for (int mode = 0; mode < 4; ++mode) {
    Pair q = connect(a_, b_);
    // Re-seal the same messages under q's keys.
    std::vector<uint8_t> s2;
    for (const auto& m : sent) {
      auto f = q.initiator.sealer.seal(m);
      s2.insert(s2.end(), f->begin(), f->end());
    }
    auto c2 = q.initiator.sealer.sealClose();
    s2.insert(s2.end(), c2->begin(), c2->end());
    std::vector<std::vector<uint8_t>> got;
    size_t pos = 0;
    while (pos < s2.size()) {
      size_t chunk;
      switch (mode) {
        case 0:
          chunk = 1;
          break;  // byte by byte
        case 1:
          chunk = 1 + rng() % 29;
          break;  // around header sizes
        case 2:
          chunk = 1 + rng() % 200000;
          break;  // large, random
        default:
          chunk = s2.size();
          break;  // everything at once
      }
      if (mode == 0 && s2.size() - pos > 5000 && pos > 100) chunk = 1 + rng() % 7;
      chunk = std::min(chunk, s2.size() - pos);
      ASSERT_TRUE(q.responder.opener.feed(std::span(s2).subspan(pos, chunk)).isOk());
      pos += chunk;
      while (auto fr = q.responder.opener.nextFrame()) got.push_back(std::move(*fr));
    }
    EXPECT_EQ(got, sent) << "mode " << mode;
    EXPECT_TRUE(q.responder.opener.closeReceived());
    EXPECT_TRUE(q.responder.opener.onEndOfStream().isOk());
  }
  ASSERT_TRUE(p.responder.opener.feed(stream).isOk());
  size_t count = 0;
  while (p.responder.opener.nextFrame()) ++count;
  EXPECT_EQ(count, sent.size());
  EXPECT_TRUE(p.responder.opener.onEndOfStream().isOk());
}

// Flipping any single bit of a frame (header, ciphertext or tag) never yields data and
// always ends in failure, at the latest at end of stream.
TEST_F(ChannelTest, BitFlipAnywhereFails) {
  const std::vector<uint8_t> msg = bytes("patient count 17");
  const size_t frameSize = msg.size() + kFrameOverheadBytes;
  for (size_t bit = 0; bit < frameSize * 8; ++bit) {
    Pair p = connect(a_, b_);
    auto f = p.initiator.sealer.seal(msg);
    auto close = p.initiator.sealer.sealClose();
    (*f)[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
    Status s1 = p.responder.opener.feed(*f);
    Status s2 = p.responder.opener.feed(*close);
    Status s3 = p.responder.opener.onEndOfStream();
    EXPECT_FALSE(s1.isOk() && s2.isOk() && s3.isOk()) << "bit " << bit;
    EXPECT_EQ(p.responder.opener.nextFrame(), std::nullopt) << "bit " << bit;
    if (bit >= 12 * 8) {
      expectError(s1, StatusCode::kCorruption, "frame 0 failed authentication");
    }
  }
}

TEST_F(ChannelTest, ReplayedFrameRefused) {
  Pair p = connect(a_, b_);
  auto f0 = p.initiator.sealer.seal(bytes("one"));
  auto f1 = p.initiator.sealer.seal(bytes("two"));
  ASSERT_TRUE(p.responder.opener.feed(*f0).isOk());
  ASSERT_TRUE(p.responder.opener.feed(*f1).isOk());
  expectError(p.responder.opener.feed(*f0), StatusCode::kCorruption,
              "frame counter 0 was already received (expected 2): replayed frame");
}

TEST_F(ChannelTest, ReorderedFramesRefused) {
  Pair p = connect(a_, b_);
  auto f0 = p.initiator.sealer.seal(bytes("one"));
  auto f1 = p.initiator.sealer.seal(bytes("two"));
  expectError(p.responder.opener.feed(*f1), StatusCode::kCorruption,
              "frame counter 1 skips ahead of expected 0: a frame was dropped or reordered");
  // Permanently failed: even the right frame is now refused.
  expectError(p.responder.opener.feed(*f0), StatusCode::kCorruption, "skips ahead");
  EXPECT_EQ(p.responder.opener.nextFrame(), std::nullopt);
}

// An attacker who rewrites the counter field to hide a dropped frame breaks authentication.
TEST_F(ChannelTest, RewrittenCounterFailsAuthentication) {
  Pair p = connect(a_, b_);
  (void)p.initiator.sealer.seal(bytes("dropped"));
  auto f1 = p.initiator.sealer.seal(bytes("two"));
  (*f1)[11] = 0;
  expectError(p.responder.opener.feed(*f1), StatusCode::kCorruption,
              "frame 0 failed authentication");
}

TEST_F(ChannelTest, TruncatedStreamDetected) {
  {
    Pair p = connect(a_, b_);
    auto f = p.initiator.sealer.seal(bytes("data"));
    ASSERT_TRUE(p.responder.opener.feed(*f).isOk());
    expectError(p.responder.opener.onEndOfStream(), StatusCode::kCorruption,
                "stream ended without a close frame");
  }
  {
    Pair p = connect(a_, b_);
    auto f = p.initiator.sealer.seal(bytes("data"));
    ASSERT_TRUE(p.responder.opener.feed(std::span(*f).first(f->size() - 1)).isOk());
    expectError(p.responder.opener.onEndOfStream(), StatusCode::kCorruption,
                "stream ended in the middle of a frame (32 of 33 bytes)");
  }
  {
    Pair p = connect(a_, b_);
    auto f = p.initiator.sealer.seal(bytes("data"));
    auto c = p.initiator.sealer.sealClose();
    ASSERT_TRUE(p.responder.opener.feed(*f).isOk());
    ASSERT_TRUE(p.responder.opener.feed(std::span(*c).first(20)).isOk());
    EXPECT_FALSE(p.responder.opener.closeReceived());
    expectError(p.responder.opener.onEndOfStream(), StatusCode::kCorruption, "middle of a frame");
  }
}

TEST_F(ChannelTest, CleanCloseAndNothingAfterIt) {
  Pair p = connect(a_, b_);
  auto c = p.initiator.sealer.sealClose();
  ASSERT_TRUE(c.isOk());
  EXPECT_EQ(c->size(), kFrameOverheadBytes);
  expectError(p.initiator.sealer.seal(bytes("late")).status(), StatusCode::kFailedPrecondition,
              "cannot send after the close frame");
  ASSERT_TRUE(p.responder.opener.feed(*c).isOk());
  EXPECT_TRUE(p.responder.opener.closeReceived());
  EXPECT_TRUE(p.responder.opener.onEndOfStream().isOk());
  expectError(p.responder.opener.feed(bytes("xyz")), StatusCode::kCorruption,
              "3 bytes received after the close frame");
}

TEST_F(ChannelTest, OversizeLengthRefusedFromHeaderAlone) {
  for (uint32_t len : {0xffffffffu, uint32_t{kMaxFramePlaintextBytes + 18}}) {
    Pair p = connect(a_, b_);
    std::vector<uint8_t> header = {static_cast<uint8_t>(len >> 24),
                                   static_cast<uint8_t>(len >> 16),
                                   static_cast<uint8_t>(len >> 8),
                                   static_cast<uint8_t>(len),
                                   0,
                                   0,
                                   0,
                                   0,
                                   0,
                                   0,
                                   0,
                                   0};
    // Only the 12 header bytes are fed: the refusal needs no body.
    expectError(p.responder.opener.feed(header), StatusCode::kResourceExhausted,
                "frame header announces " + std::to_string(len) + " bytes, above the limit of " +
                    std::to_string(kMaxFramePlaintextBytes + 17));
  }
  Pair p = connect(a_, b_);
  expectError(p.responder.opener.feed(std::vector<uint8_t>{0, 0, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0}),
              StatusCode::kCorruption, "frame length 16 is below the minimum of 17");
}

TEST_F(ChannelTest, OversizePlaintextRefusedBySealer) {
  Pair p = connect(a_, b_);
  expectError(p.initiator.sealer.seal(std::vector<uint8_t>(kMaxFramePlaintextBytes + 1)).status(),
              StatusCode::kInvalidArgument, "exceeds the limit of 1048576");
  // The sealer is still usable and its counter did not advance.
  auto f = p.initiator.sealer.seal(bytes("ok"));
  ASSERT_TRUE(p.responder.opener.feed(*f).isOk());
  EXPECT_EQ(p.responder.opener.nextFrame(), bytes("ok"));
}

}  // namespace
}  // namespace trialmesh::crypto
