// Differential-privacy noise generated in shares, so that no single party knows it.
//
// The noise added to a released integer (a count, or a fixed-point sum in the units of the
// additive encoding, query/additive.h) is discrete Laplace with scale t:
//
//   P(X = k) = (1 − p) / (1 + p) · p^|k|,   p = exp(−1/t),   Var X = 2p / (1 − p)².
//
// It is infinitely divisible, exactly: X = G₁ − G₂ with G₁, G₂ independent geometric
// (P(G = k) = (1 − p) p^k, k ≥ 0), and a geometric is the sum of n independent Pólya
// (negative binomial) NB(1/n, p) variables. Each of the n participating sites therefore draws
// its share as NB(1/n, p) − NB(1/n, p) and adds it to its partial before masking; the shares
// sum to exactly one discrete Laplace(t) draw, yet every site knows only its own share and the
// coordinator sees only the noisy sum. A single share is NOT discrete Laplace: it is much more
// concentrated (variance 2p/(n(1 − p)²)), which is why the noise only protects the released
// sum when all n shares are in it (a site that drops out must be re-run with n recomputed).
//
// Scale. For ε-differential privacy of a statistic with sensitivity Δ (in the same integer
// units the share is added to: 1 for a count, Δ_real · 2^32 for a fixed-point real sum),
// t = Δ / ε (discreteLaplaceScale). Scales above kMaxDiscreteLaplaceScale are refused, so every
// share fits in an int64 with a wide margin.
//
// Sampler. NB(r, p) with r = 1/n is drawn as a compound Poisson sum: N ~ Poisson(−r ln(1 − p))
// terms, each logarithmic(p) (P(L = k) = −p^k / (k ln(1 − p)), k ≥ 1; Kemp's LK algorithm).
// This is the same distribution as the Gamma–Poisson mixture, but the Poisson mean stays below
// 34/n for every allowed scale (the Gamma–Poisson route needs Poisson means of the order of t,
// up to 10^14 here, where simple samplers lose accuracy), and it needs only uniforms, exp and
// log. Arithmetic is IEEE double: probabilities are exact to about 1e-15, not bit-exact
// (see docs/privacy.md, "Differential privacy", for what that means for the guarantee).
//
// Randomness comes from a RandomSource: SystemRandomSource (libsodium randombytes_buf, the
// only one a node may use) or DeterministicRandomSourceForTesting (a seeded libsodium stream,
// for reproducible statistical tests only).
//
// Thread-safety: a RandomSource is not synchronised; use one per thread. The functions are
// otherwise pure.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "common/status.h"

namespace trialmesh::crypto {

// A source of uniformly random bytes.
class RandomSource {
 public:
  virtual ~RandomSource() = default;
  virtual void fill(std::span<uint8_t> out) = 0;

  uint64_t nextU64();
  // Uniform on the open interval (0, 1), with 53 random bits; never exactly 0 or 1.
  double nextOpenUnit();
};

// libsodium's randombytes_buf (getrandom(2)). The source every production caller uses.
class SystemRandomSource final : public RandomSource {
 public:
  void fill(std::span<uint8_t> out) override;
};

// A reproducible stream from a 32-byte seed (libsodium randombytes_buf_deterministic over
// successive 4 KiB blocks, block i keyed by BLAKE2b(seed, i)). FOR TESTS ONLY: noise from a
// known seed protects nothing.
class DeterministicRandomSourceForTesting final : public RandomSource {
 public:
  explicit DeterministicRandomSourceForTesting(uint64_t seed);
  void fill(std::span<uint8_t> out) override;

 private:
  void refill();
  std::array<uint8_t, 32> seed_{};
  uint64_t block_ = 0;
  std::array<uint8_t, 4096> buffer_{};
  size_t used_ = 4096;
};

// The largest scale (in integer units) that discreteLaplaceShares accepts: 2^48.
inline constexpr double kMaxDiscreteLaplaceScale = 281474976710656.0;

// t = sensitivity / epsilon. InvalidArgument unless both are finite and > 0 and t is within
// (0, kMaxDiscreteLaplaceScale].
Result<double> discreteLaplaceScale(double sensitivity, double epsilon);

// The variance of discrete Laplace(t) (of the SUM of all shares): 2p / (1 − p)², p = e^(−1/t).
double discreteLaplaceVariance(double scale);

// This site's shares of `count` independent discrete Laplace(scale) noise values, for a round
// with `participants` sites (every participant must use the same scale and count). Each value
// is NB(1/participants, p) − NB(1/participants, p). Errors: InvalidArgument for a scale that is
// not finite or not in (0, kMaxDiscreteLaplaceScale], or participants == 0.
Result<std::vector<int64_t>> discreteLaplaceShares(double scale, uint32_t participants,
                                                   size_t count, RandomSource& random);

}  // namespace trialmesh::crypto
