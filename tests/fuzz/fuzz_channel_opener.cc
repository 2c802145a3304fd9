// Secure-channel frame opener (crypto/channel.cc FrameOpener). Two paths must agree: one
// stream fed whole and an identically built stream (another session, same plaintexts, same
// modified byte) fed in pieces split where the input says give the same frames and the same
// verdict. The streams are real sealed frames of the input with one byte changed where the
// input says (or none), so authentication and decryption are reached, not only the header
// checks; an unmodified stream must open to exactly what was sealed, then report its close.
#include <algorithm>
#include <utility>

#include "crypto/channel.h"
#include "crypto/identity.h"
#include "fuzz_check.h"

namespace {

using namespace trialmesh;

struct Opened {
  std::vector<std::vector<uint8_t>> frames;
  StatusCode code = StatusCode::kOk;
  bool closed = false;
};

// Seals `chunks` and a close frame with a fresh session pair, changes the byte at `flip % size`
// by `delta` (delta 0: unchanged) and opens the stream `step` bytes at a time.
Opened sealAndOpen(const std::vector<std::vector<uint8_t>>& chunks, size_t flip, uint8_t delta,
                   size_t step) {
  static const crypto::Identity x = crypto::generateIdentity();
  static const crypto::Identity y = crypto::generateIdentity();
  crypto::HandshakeInitiator hi(x, {y.pub});
  crypto::HandshakeResponder hr(y, {x.pub});
  auto m1 = hi.start();
  auto m2 = hr.onMessage1(*m1);
  auto m3 = hi.onMessage2(*m2);
  auto receiver = hr.onMessage3(*m3);
  auto sender = hi.finish();
  FUZZ_CHECK(sender.isOk() && receiver.isOk(), "handshake");
  std::vector<uint8_t> stream;
  for (const auto& chunk : chunks) {
    auto frame = sender->sealer.seal(chunk);
    FUZZ_CHECK(frame.isOk(), "seal");
    stream.insert(stream.end(), frame->begin(), frame->end());
  }
  auto close = sender->sealer.sealClose();
  FUZZ_CHECK(close.isOk(), "sealClose");
  stream.insert(stream.end(), close->begin(), close->end());
  stream[flip % stream.size()] ^= delta;

  Opened out;
  Status s;
  for (size_t off = 0; off < stream.size() && s.isOk(); off += step)
    s = receiver->opener.feed(
        std::span<const uint8_t>(stream).subspan(off, std::min(step, stream.size() - off)));
  if (s.isOk()) s = receiver->opener.onEndOfStream();
  out.code = s.code();
  out.closed = receiver->opener.closeReceived();
  while (auto f = receiver->opener.nextFrame()) out.frames.push_back(std::move(*f));
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 4 || size > 4096) return 0;
  const size_t step = 1 + data[0] % 37;
  const size_t flip = data[1] | (size_t(data[2]) << 8);
  const uint8_t delta = data[3] % 4 == 0 ? 0 : data[3];  // a quarter of the runs: unmodified
  std::vector<std::vector<uint8_t>> chunks;
  for (size_t off = 4; off < size; off += 1 + data[off] % 97) {
    size_t end = std::min(size, off + 1 + data[off] % 97);
    chunks.emplace_back(data + off, data + end);
  }
  Opened whole = sealAndOpen(chunks, flip, delta, size_t(1) << 20);
  Opened pieces = sealAndOpen(chunks, flip, delta, step);
  FUZZ_CHECK(whole.code == pieces.code, "same verdict whole and in pieces");
  FUZZ_CHECK(whole.frames == pieces.frames, "same frames whole and in pieces");
  FUZZ_CHECK(whole.closed == pieces.closed, "same close whole and in pieces");
  if (delta == 0) {
    FUZZ_CHECK(whole.code == StatusCode::kOk && whole.closed, "an unmodified stream opens");
    FUZZ_CHECK(whole.frames == chunks, "an unmodified stream opens to what was sealed");
  } else {
    FUZZ_CHECK(whole.code != StatusCode::kOk, "a modified stream is refused");
    FUZZ_CHECK(whole.frames.size() <= chunks.size(), "no extra frames");
    for (size_t i = 0; i < whole.frames.size(); ++i)
      FUZZ_CHECK(whole.frames[i] == chunks[i], "frames before the change are intact");
  }
  return 0;
}
