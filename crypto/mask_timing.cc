// Not a test: a timing driver for pairwise masks (crypto/mask.h). Prints
//   1. raw ChaCha20-IETF key stream speed (libsodium alone; the ceiling for mask generation),
//   2. mask generation speed: bytes of mask words added per second, per pair stream,
//   3. per-site cost for 3, 10 and 30 participants and vectors of 1, 100 and 10,000 words:
//      PairwiseMasker::create (the X25519 agreements and key derivation) and addMask.
// Every figure is the median of `runs` repetitions of this thread's CPU time, so numbers stay
// meaningful on a busy machine. Usage: tm_mask_timing [runs] [MiB per speed run]
#include <time.h>

#include <sodium.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "crypto/identity.h"
#include "crypto/mask.h"

using namespace trialmesh::crypto;

namespace {

double cpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

double medianSeconds(int runs, const std::function<void()>& body) {
  std::vector<double> t;
  for (int r = 0; r < runs; ++r) {
    const double t0 = cpuSeconds();
    body();
    t.push_back(cpuSeconds() - t0);
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

void check(const trialmesh::Status& s) {
  if (!s.isOk()) {
    std::fprintf(stderr, "%s\n", s.toString().c_str());
    std::exit(1);
  }
}

std::vector<PublicKey> sortedKeys(const std::vector<Identity>& ids) {
  std::vector<PublicKey> keys;
  for (const auto& id : ids) keys.push_back(id.pub);
  std::sort(keys.begin(), keys.end());
  return keys;
}

}  // namespace

int main(int argc, char** argv) {
  const int runs = argc > 1 ? std::atoi(argv[1]) : 9;
  const size_t mib = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 256;
  if (sodium_init() < 0) return 1;
  const size_t bytes = mib << 20;

  // 1. Raw key stream, in the 8 KiB steps the masker uses.
  {
    std::vector<uint8_t> buf(8192);
    std::vector<uint8_t> key(crypto_stream_chacha20_ietf_KEYBYTES, 7);
    std::vector<uint8_t> nonce(crypto_stream_chacha20_ietf_NONCEBYTES, 0);
    const double s = medianSeconds(runs, [&] {
      for (size_t done = 0; done < bytes; done += buf.size())
        crypto_stream_chacha20_ietf(buf.data(), buf.size(), nonce.data(), key.data());
    });
    std::printf("chacha20-ietf key stream (libsodium):      %7.2f GB/s\n", bytes / s / 1e9);
  }

  // 2. Mask generation: two participants, so one pair stream; a 1 MiB vector masked repeatedly.
  {
    std::vector<Identity> ids;
    ids.push_back(generateIdentity());
    ids.push_back(generateIdentity());
    std::vector<PublicKey> keys = sortedKeys(ids);
    const uint8_t round[16] = {1};
    auto masker = PairwiseMasker::create(ids[0], keys, round);
    check(masker.status());
    std::vector<MaskWord> v(size_t{1} << 16, 0);  // 1 MiB of words
    const size_t reps = bytes / (v.size() * kMaskWordBytes);
    const double s = medianSeconds(runs, [&] {
      for (size_t r = 0; r < reps; ++r) check(masker->addMask(v, r * v.size()));
    });
    std::printf("mask generation (addMask, per pair stream): %7.2f GB/s  (%zu MiB per run)\n",
                reps * v.size() * kMaskWordBytes / s / 1e9, mib);
  }

  // 3. Per-site cost of a round.
  std::printf("\nper-site cost, median CPU time (create = key agreement with every peer)\n");
  std::printf("%6s %8s %12s %12s %12s\n", "sites", "words", "create us", "addMask us", "mask GB/s");
  for (size_t n : {3u, 10u, 30u}) {
    std::vector<Identity> ids;
    for (size_t i = 0; i < n; ++i) ids.push_back(generateIdentity());
    std::vector<PublicKey> keys = sortedKeys(ids);
    const uint8_t round[16] = {2};
    for (size_t length : {1u, 100u, 10000u}) {
      std::vector<MaskWord> v(length, 0);
      const int inner = length < 1000 ? 20 : 2;
      const double create =
          medianSeconds(runs,
                        [&] {
                          for (int k = 0; k < inner; ++k)
                            check(PairwiseMasker::create(ids[0], keys, round).status());
                        }) /
          inner;
      auto masker = PairwiseMasker::create(ids[0], keys, round);
      check(masker.status());
      const int maskInner = length < 1000 ? 2000 : 20;
      const double add = medianSeconds(runs,
                                       [&] {
                                         for (int k = 0; k < maskInner; ++k)
                                           check(masker->addMask(v));
                                       }) /
                         maskInner;
      std::printf("%6zu %8zu %12.1f %12.2f %12.2f\n", n, length, create * 1e6, add * 1e6,
                  static_cast<double>(length * kMaskWordBytes * (n - 1)) / add / 1e9);
    }
  }
  return 0;
}
