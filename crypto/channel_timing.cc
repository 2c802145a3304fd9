// Not a test: a tiny timing driver for the secure channel. Prints handshake time and
// single-core throughput of sealing + opening 64 KiB frames (next to raw libsodium AEAD speed
// as a baseline for a loaded machine), and the time to unlock a passphrase-protected key file
// with the default Argon2id cost. All times are CPU time of
// the one thread. Usage: tm_crypto_timing [MiB]
#include <sodium.h>
#include <stdlib.h>
#include <unistd.h>

#include <time.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "crypto/channel.h"
#include "crypto/identity.h"

using namespace trialmesh::crypto;
// This thread's CPU time rather than wall time, so numbers stay meaningful on a busy machine.
struct Clock {
  using duration = std::chrono::nanoseconds;
  using rep = duration::rep;
  using period = duration::period;
  using time_point = std::chrono::time_point<Clock>;
  static constexpr bool is_steady = true;
  static time_point now() {
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return time_point(duration(ts.tv_sec * 1000000000LL + ts.tv_nsec));
  }
};

static void check(const trialmesh::Status& s) {
  if (!s.isOk()) {
    std::fprintf(stderr, "%s\n", s.toString().c_str());
    std::exit(1);
  }
}

int main(int argc, char** argv) {
  const size_t totalMiB = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 1024;
  Identity a = generateIdentity();
  Identity b = generateIdentity();

  const int kHandshakes = 2000;
  std::optional<Session> sa, sb;
  auto t0 = Clock::now();
  for (int i = 0; i < kHandshakes; ++i) {
    HandshakeInitiator hi(a, {b.pub});
    HandshakeResponder hr(b, {a.pub});
    auto m1 = hi.start();
    check(m1.status());
    auto m2 = hr.onMessage1(*m1);
    check(m2.status());
    auto m3 = hi.onMessage2(*m2);
    check(m3.status());
    auto s1 = hi.finish();
    check(s1.status());
    auto s2 = hr.onMessage3(*m3);
    check(s2.status());
    sa.emplace(std::move(s1).value());
    sb.emplace(std::move(s2).value());
  }
  double hsUs = std::chrono::duration<double, std::micro>(Clock::now() - t0).count() / kHandshakes;
  std::printf("handshake (both sides, one thread): %.1f us\n", hsUs);

  std::vector<uint8_t> payload(size_t{64} * 1024, 0x5a);
  const size_t frames = totalMiB * 16;
  size_t opened = 0;
  t0 = Clock::now();
  for (size_t i = 0; i < frames; ++i) {
    auto f = sa->sealer.seal(payload);
    check(f.status());
    check(sb->opener.feed(*f));
    while (auto p = sb->opener.nextFrame()) {
      opened += p->size();
    }
  }
  double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  std::printf("seal+open 64 KiB frames: %zu MiB in %.3f s = %.0f MB/s (%.0f MiB/s)\n", opened >> 20,
              secs, opened / secs / 1e6, opened / secs / 1048576.0);

  t0 = Clock::now();
  for (size_t i = 0; i < frames; ++i) {
    auto f = sa->sealer.seal(payload);
    check(f.status());
  }
  secs = std::chrono::duration<double>(Clock::now() - t0).count();
  std::printf("seal only: %.0f MB/s\n", frames * 65536.0 / secs / 1e6);

  std::vector<uint8_t> buf(65536 + 16), key(32), nonce(24);
  unsigned long long clen = 0;
  t0 = Clock::now();
  for (size_t i = 0; i < frames; ++i) {
    crypto_aead_xchacha20poly1305_ietf_encrypt(buf.data(), &clen, buf.data(), 65536, nullptr, 0,
                                               nullptr, nonce.data(), key.data());
  }
  secs = std::chrono::duration<double>(Clock::now() - t0).count();
  std::printf("baseline, raw XChaCha20-Poly1305 encrypt in place: %.0f MB/s\n",
              frames * 65536.0 / secs / 1e6);

  char dir[] = "/tmp/tm_timing_XXXXXX";
  if (mkdtemp(dir) == nullptr) {
    return 1;
  }
  const std::string path = std::string(dir) + "/node.key";
  t0 = Clock::now();
  check(saveIdentity(path, a, "timing passphrase"));
  double saveS = std::chrono::duration<double>(Clock::now() - t0).count();
  t0 = Clock::now();
  auto loaded =
      loadIdentity(path, [] { return trialmesh::Result<std::string>("timing passphrase"); });
  check(loaded.status());
  double loadS = std::chrono::duration<double>(Clock::now() - t0).count();
  std::printf("key file with default Argon2id (ops 3, 256 MiB): save %.2f s, load %.2f s\n", saveS,
              loadS);
  unlink(path.c_str());
  unlink((path + ".pub").c_str());
  rmdir(dir);
  return 0;
}
