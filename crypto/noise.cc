#include "crypto/noise.h"

#include <sodium.h>

#include <cmath>
#include <limits>
#include <string>

#include "crypto/key_access.h"

namespace trialmesh::crypto {

uint64_t RandomSource::nextU64() {
  std::array<uint8_t, 8> b{};
  fill(b);
  uint64_t v = 0;
  for (uint8_t x : b) v = (v << 8) | x;
  return v;
}

double RandomSource::nextOpenUnit() {
  // (k + 0.5) / 2^53 for a uniform 53-bit k: the midpoints of 2^53 equal slices of (0, 1).
  const uint64_t k = nextU64() >> 11;
  return (static_cast<double>(k) + 0.5) * 0x1.0p-53;
}

void SystemRandomSource::fill(std::span<uint8_t> out) {
  detail::ensureSodium();
  if (!out.empty()) randombytes_buf(out.data(), out.size());
}

DeterministicRandomSourceForTesting::DeterministicRandomSourceForTesting(uint64_t seed) {
  detail::ensureSodium();
  for (int i = 0; i < 8; ++i) seed_[static_cast<size_t>(i)] = static_cast<uint8_t>(seed >> (8 * i));
}

void DeterministicRandomSourceForTesting::refill() {
  // randombytes_buf_deterministic always starts the same stream for a seed, so each block gets
  // its own seed derived from (seed, block number).
  std::array<uint8_t, randombytes_SEEDBYTES> blockSeed{};
  std::array<uint8_t, 8> index{};
  for (int i = 0; i < 8; ++i)
    index[static_cast<size_t>(i)] = static_cast<uint8_t>(block_ >> (8 * i));
  crypto_generichash(blockSeed.data(), blockSeed.size(), index.data(), index.size(), seed_.data(),
                     seed_.size());
  randombytes_buf_deterministic(buffer_.data(), buffer_.size(), blockSeed.data());
  ++block_;
  used_ = 0;
}

void DeterministicRandomSourceForTesting::fill(std::span<uint8_t> out) {
  size_t done = 0;
  while (done < out.size()) {
    if (used_ == buffer_.size()) refill();
    const size_t n = std::min(out.size() - done, buffer_.size() - used_);
    std::copy_n(buffer_.begin() + static_cast<ptrdiff_t>(used_), n,
                out.begin() + static_cast<ptrdiff_t>(done));
    used_ += n;
    done += n;
  }
}

namespace {

// The distribution parameters shared by every draw of one call.
struct Params {
  double p = 0;             // e^(−1/t)
  double logOneMinusP = 0;  // ln(1 − p) < 0, computed without cancellation
  double poissonMean = 0;   // −ln(1 − p) / n: mean number of logarithmic terms per NB draw
};

Params paramsFor(double scale, uint32_t participants) {
  Params q;
  q.p = std::exp(-1.0 / scale);
  // 1 − p = −expm1(−1/t) is accurate for every t; log1p(−p) would lose digits as p → 1.
  q.logOneMinusP = std::log(-std::expm1(-1.0 / scale));
  q.poissonMean = -q.logOneMinusP / static_cast<double>(participants);
  return q;
}

// Poisson(mean) by inversion (sequential search), for mean <= 34. If rounding keeps the
// cumulative sum below u (u within ~1e-15 of 1), the draw is repeated rather than truncated.
uint64_t poisson(double mean, RandomSource& random) {
  for (;;) {
    const double u = random.nextOpenUnit();
    double pk = std::exp(-mean);
    double cdf = pk;
    uint64_t k = 0;
    while (u > cdf && k < 1000) {
      ++k;
      pk *= mean / static_cast<double>(k);
      cdf += pk;
    }
    if (u <= cdf) return k;
  }
}

// Logarithmic(p): P(L = k) = −p^k / (k ln(1 − p)), k >= 1. Kemp's LK algorithm (Devroye 1986,
// X.5): given q = 1 − (1 − p)^U, L is geometric on {1, 2, ...} with P(L > k) = q^k, so
// L = floor(1 + ln V / ln q); L = 1 exactly when V > q, and q <= p always, so V >= p needs no U.
double logarithmic(const Params& q, RandomSource& random) {
  const double v = random.nextOpenUnit();
  if (v >= q.p) return 1.0;
  const double ru = q.logOneMinusP * random.nextOpenUnit();  // ln((1 − p)^U) < 0
  const double oneMinusQ = std::exp(ru);                     // (1 − p)^U
  const double qq = -std::expm1(ru);                         // q = 1 − (1 − p)^U
  if (v > qq) return 1.0;
  if (v > qq * qq) return 2.0;
  // ln q without cancellation: log1p when q is near 1, log(−expm1) otherwise.
  const double logQ = oneMinusQ < 0.5 ? std::log1p(-oneMinusQ) : std::log(qq);
  return std::floor(1.0 + std::log(v) / logQ);
}

// NB(1/n, p) as a compound Poisson sum of logarithmic terms. Returns false on int64 overflow,
// which the scale bound makes unreachable (each term is below 1.1e16, so more than 800 terms
// of a Poisson with mean <= 34 would be needed).
bool negativeBinomial(const Params& q, RandomSource& random, int64_t& out) {
  const uint64_t terms = poisson(q.poissonMean, random);
  int64_t sum = 0;
  for (uint64_t i = 0; i < terms; ++i) {
    const double l = logarithmic(q, random);
    if (!(l < 0x1.0p62)) return false;
    if (__builtin_add_overflow(sum, static_cast<int64_t>(l), &sum)) return false;
  }
  out = sum;
  return true;
}

Status checkScale(double scale) {
  if (!std::isfinite(scale) || !(scale > 0) || scale > kMaxDiscreteLaplaceScale) {
    return Status::invalidArgument(
        "discrete Laplace scale must be a finite number in (0, 2^48], got " +
        std::to_string(scale) +
        " (scale = sensitivity / epsilon in the integer units of the released value)");
  }
  return Status::ok();
}

}  // namespace

Result<double> discreteLaplaceScale(double sensitivity, double epsilon) {
  if (!std::isfinite(sensitivity) || !(sensitivity > 0)) {
    return Status::invalidArgument(
        "differential privacy: sensitivity must be a finite number > 0, "
        "got " +
        std::to_string(sensitivity));
  }
  if (!std::isfinite(epsilon) || !(epsilon > 0)) {
    return Status::invalidArgument(
        "differential privacy: epsilon must be a finite number > 0, got " +
        std::to_string(epsilon));
  }
  const double scale = sensitivity / epsilon;
  TM_RETURN_IF_ERROR(checkScale(scale).withContext("differential privacy: sensitivity " +
                                                   std::to_string(sensitivity) + " / epsilon " +
                                                   std::to_string(epsilon)));
  return scale;
}

double discreteLaplaceVariance(double scale) {
  const double p = std::exp(-1.0 / scale);
  const double oneMinusP = -std::expm1(-1.0 / scale);
  return 2.0 * p / (oneMinusP * oneMinusP);
}

Result<std::vector<int64_t>> discreteLaplaceShares(double scale, uint32_t participants,
                                                   size_t count, RandomSource& random) {
  TM_RETURN_IF_ERROR(checkScale(scale));
  if (participants == 0) {
    return Status::invalidArgument("discrete Laplace shares need at least one participant");
  }
  const Params q = paramsFor(scale, participants);
  std::vector<int64_t> out(count);
  for (size_t i = 0; i < count; ++i) {
    int64_t a = 0, b = 0;
    if (!negativeBinomial(q, random, a) || !negativeBinomial(q, random, b)) {
      return Status::internal("discrete Laplace share overflowed int64 at scale " +
                              std::to_string(scale) + " (cannot happen within the scale bound)");
    }
    out[i] = a - b;
  }
  return out;
}

}  // namespace trialmesh::crypto
