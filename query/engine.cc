// execute: the local aggregate engine.
//
// Work is done a chunk (storage::kChunkRows rows) at a time so every intermediate stays in
// cache: the filter becomes a byte mask (one per filter node, combined with & and |), the
// group variables become a cell code per row (one byte when the query has fewer than 256
// cells, computed once and shared by every statistic), and each statistic runs a kernel
// templated on the column's physical type, selected by one std::visit per chunk. Loops are
// branch-free so the compiler vectorises them: rows of up to 32 cells are counted by comparing
// 16 codes at once, means and variances of up to 8 cells take one pass that updates every
// cell's shifted sums at each row (SSE2 vectors, masked by the cell comparison); beyond that,
// scattered accumulations use several accumulator copies to avoid store-to-load stalls. Chunks
// are split into contiguous ranges, one per thread, and the per-thread partials merged in
// thread order, so a given thread count always gives bit-identical results.
#include "query/engine.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <limits>
#include <memory>
#include <mutex>
#include <thread>

#include "query/model_kernel.h"
#include "query/plan.h"
#include "query/quantile.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace trialmesh::query {

using storage::ColumnChunk;
using storage::kChunkRows;
using BK = detail::BoundFilter::Kind;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
// Per-cell scatter loops keep 4 accumulator copies while this is small enough to stay cached.
constexpr uint32_t kMaxReplicatedCells = 16384;

template <class F>
decltype(auto) visitValues(const ColumnChunk& c, F&& f) {
  return std::visit([&](const auto& v) -> decltype(auto) { return f(v.data()); }, c.values);
}

template <class F>
void forEachMissing(const ColumnChunk& c, F&& f) {
  for (size_t w = 0; w < c.missing.size(); ++w) {
    uint64_t word = c.missing[w];
    while (word) {
      uint32_t row = static_cast<uint32_t>(w * 64 + std::countr_zero(word));
      if (row < c.rows) f(row);
      word &= word - 1;
    }
  }
}

void clearMissing(uint8_t* m, const ColumnChunk& c) {
  forEachMissing(c, [m](uint32_t row) { m[row] = 0; });
}

typedef uint8_t U8x16 __attribute__((vector_size(16)));

// Number of ones in a 0/1 byte mask: 16 bytes at a time into byte counters, which hold at most
// 255 additions and are folded into the total before they could wrap.
uint64_t sumBytes(const uint8_t* m, uint32_t n) {
  uint64_t s = 0;
  uint32_t i = 0;
  while (i + 16 <= n) {
    const uint32_t blocks = std::min<uint32_t>(255, (n - i) / 16);
    U8x16 acc = {};
    for (uint32_t b = 0; b < blocks; ++b, i += 16) {
      U8x16 v;
      std::memcpy(&v, m + i, sizeof v);
      acc += v;
    }
    for (int b = 0; b < 16; ++b) s += acc[b];
  }
  for (; i < n; ++i) s += m[i];
  return s;
}

// --- filter kernels -------------------------------------------------------------------------

template <class T>
void rangeKernel(const T* x, uint32_t n, int64_t lo, int64_t hi, bool negate, uint8_t* m) {
  constexpr int64_t tmin = static_cast<int64_t>(std::numeric_limits<T>::min());
  constexpr int64_t tmax = static_cast<int64_t>(std::numeric_limits<T>::max());
  if (lo > hi || lo > tmax || hi < tmin) {
    std::fill(m, m + n, static_cast<uint8_t>(negate));
    return;
  }
  const T l = static_cast<T>(std::max(lo, tmin));
  const T h = static_cast<T>(std::min(hi, tmax));
  const uint8_t neg = negate;
  for (uint32_t i = 0; i < n; ++i) m[i] = static_cast<uint8_t>(((x[i] >= l) & (x[i] <= h)) ^ neg);
}

template <class T>
void intSetKernel(const T* x, uint32_t n, const std::vector<int64_t>& set, bool negate,
                  uint8_t* m) {
  std::fill(m, m + n, uint8_t{0});
  for (int64_t v : set) {
    if (v < static_cast<int64_t>(std::numeric_limits<T>::min()) ||
        v > static_cast<int64_t>(std::numeric_limits<T>::max()))
      continue;
    const T t = static_cast<T>(v);
    for (uint32_t i = 0; i < n; ++i) m[i] |= static_cast<uint8_t>(x[i] == t);
  }
  if (negate)
    for (uint32_t i = 0; i < n; ++i) m[i] ^= 1;
}

void realCmpKernel(const double* x, uint32_t n, CompareOp op, double v, uint8_t* m) {
  switch (op) {
    case CompareOp::kEq:
      for (uint32_t i = 0; i < n; ++i) m[i] = x[i] == v;
      break;
    case CompareOp::kNe:
      for (uint32_t i = 0; i < n; ++i) m[i] = x[i] != v;
      break;
    case CompareOp::kLt:
      for (uint32_t i = 0; i < n; ++i) m[i] = x[i] < v;
      break;
    case CompareOp::kLe:
      for (uint32_t i = 0; i < n; ++i) m[i] = x[i] <= v;
      break;
    case CompareOp::kGt:
      for (uint32_t i = 0; i < n; ++i) m[i] = x[i] > v;
      break;
    case CompareOp::kGe:
      for (uint32_t i = 0; i < n; ++i) m[i] = x[i] >= v;
      break;
  }
}

void realSetKernel(const double* x, uint32_t n, const std::vector<double>& set, bool negate,
                   uint8_t* m) {
  std::fill(m, m + n, uint8_t{0});
  for (double v : set)
    for (uint32_t i = 0; i < n; ++i) m[i] |= static_cast<uint8_t>(x[i] == v);
  if (negate)
    for (uint32_t i = 0; i < n; ++i) m[i] ^= 1;
}

// --- aggregation kernels --------------------------------------------------------------------

// out[cell[i]] += mask[i] (or += 1 without a mask). `cell` null means one cell.
template <bool kMasked>
void countCellsImpl(const uint32_t* cell, const uint8_t* m, uint32_t n, uint32_t cells,
                    uint64_t* out, std::vector<uint32_t>& scratch) {
  if (cells <= kMaxReplicatedCells) {
    scratch.assign(4 * size_t{cells}, 0);
    uint32_t* a0 = scratch.data();
    uint32_t* a1 = a0 + cells;
    uint32_t* a2 = a1 + cells;
    uint32_t* a3 = a2 + cells;
    uint32_t i = 0;
    for (; i + 4 <= n; i += 4) {
      a0[cell[i]] += kMasked ? m[i] : 1;
      a1[cell[i + 1]] += kMasked ? m[i + 1] : 1;
      a2[cell[i + 2]] += kMasked ? m[i + 2] : 1;
      a3[cell[i + 3]] += kMasked ? m[i + 3] : 1;
    }
    for (; i < n; ++i) a0[cell[i]] += kMasked ? m[i] : 1;
    for (uint32_t c = 0; c < cells; ++c) out[c] += uint64_t{a0[c]} + a1[c] + a2[c] + a3[c];
  } else {
    for (uint32_t i = 0; i < n; ++i) out[cell[i]] += kMasked ? m[i] : 1;
  }
}

void countCells(const uint32_t* cell, const uint8_t* m, uint32_t n, uint32_t cells, uint64_t* out,
                std::vector<uint32_t>& scratch) {
  if (!cell) {
    out[0] += m ? sumBytes(m, n) : n;
  } else if (m) {
    countCellsImpl<true>(cell, m, n, cells, out, scratch);
  } else {
    countCellsImpl<false>(cell, m, n, cells, out, scratch);
  }
}

// Sum of the selected values as double, with 8 independent accumulators (vectorisable without
// -ffast-math because the association order is fixed by the source).
template <class T, bool kMasked>
double sumSelected(const T* x, const uint8_t* m, uint32_t n, double shift = 0) {
  double a[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  uint32_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) {
      double v = static_cast<double>(x[i + j]) - shift;
      a[j] += kMasked ? (m[i + j] ? v : 0.0) : v;
    }
  }
  for (; i < n; ++i) {
    double v = static_cast<double>(x[i]) - shift;
    a[0] += kMasked ? (m[i] ? v : 0.0) : v;
  }
  return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}

// A value near the data, subtracted before summing so that the mean of data far from zero
// (1e9 + noise) keeps its low digits: the first selected value.
template <class T, bool kMasked>
double firstSelected(const T* x, const uint8_t* m, uint32_t n) {
  if (!kMasked) return n ? static_cast<double>(x[0]) : 0.0;
  for (uint32_t i = 0; i < n; ++i)
    if (m[i]) return static_cast<double>(x[i]);
  return 0.0;
}

template <class T, bool kMasked>
uint64_t intSumSelected(const T* x, const uint8_t* m, uint32_t n) {
  uint64_t s = 0;  // wraps modulo 2^64 by design (see StatPartial::intSum)
  for (uint32_t i = 0; i < n; ++i) {
    uint64_t v = static_cast<uint64_t>(static_cast<int64_t>(x[i]));
    s += kMasked ? (m[i] ? v : 0) : v;
  }
  return s;
}

// Per-cell sums (double) into out[0..cells), 4 replicated accumulators when small.
template <class T, bool kMasked>
void scatterSum(const T* x, const uint8_t* m, const uint32_t* cell, uint32_t n, uint32_t cells,
                double* out, std::vector<double>& scratch, double shift = 0) {
  const bool rep = cells <= kMaxReplicatedCells;
  scratch.assign((rep ? 4 : 1) * size_t{cells}, 0.0);
  double* a = scratch.data();
  uint32_t i = 0;
  if (rep) {
    for (; i + 4 <= n; i += 4) {
      for (uint32_t j = 0; j < 4; ++j) {
        double v = static_cast<double>(x[i + j]) - shift;
        a[j * cells + cell[i + j]] += kMasked ? (m[i + j] ? v : 0.0) : v;
      }
    }
  }
  for (; i < n; ++i) {
    double v = static_cast<double>(x[i]) - shift;
    a[cell[i]] += kMasked ? (m[i] ? v : 0.0) : v;
  }
  for (uint32_t c = 0; c < cells; ++c)
    out[c] = rep ? (a[c] + a[cells + c]) + (a[2 * cells + c] + a[3 * cells + c]) : a[c];
}

template <class T, bool kMasked>
void scatterSquaredDeviations(const T* x, const uint8_t* m, const uint32_t* cell, uint32_t n,
                              uint32_t cells, const double* mean, double* out,
                              std::vector<double>& scratch) {
  const bool rep = cells <= kMaxReplicatedCells;
  scratch.assign((rep ? 4 : 1) * size_t{cells}, 0.0);
  double* a = scratch.data();
  uint32_t i = 0;
  if (rep) {
    for (; i + 4 <= n; i += 4) {
      for (uint32_t j = 0; j < 4; ++j) {
        double d = static_cast<double>(x[i + j]) - mean[cell[i + j]];
        a[j * cells + cell[i + j]] += kMasked ? (m[i + j] ? d * d : 0.0) : d * d;
      }
    }
  }
  for (; i < n; ++i) {
    double d = static_cast<double>(x[i]) - mean[cell[i]];
    a[cell[i]] += kMasked ? (m[i] ? d * d : 0.0) : d * d;
  }
  for (uint32_t c = 0; c < cells; ++c)
    out[c] = rep ? (a[c] + a[cells + c]) + (a[2 * cells + c] + a[3 * cells + c]) : a[c];
}

// Below this many cells, per-cell sums run as one vectorised pass per cell (compare the cell
// index, add) instead of a scatter, which the compiler cannot vectorise.
constexpr uint32_t kPerCellPassLimit = 6;

// Two doubles, as GCC/Clang vector extensions: SSE2 on x86-64 (no -march needed). The
// compilers do not vectorise floating-point reductions by themselves (that would reorder the
// additions); with explicit vectors the order is fixed by the source and still fast.
typedef double V2 __attribute__((vector_size(16)));

template <class T, bool kMasked>
V2 pairOf(const T* x, uint32_t i) {
  return V2{static_cast<double>(x[i]), static_cast<double>(x[i + 1])};
}

inline V2 keepPair(const uint32_t* cell, const uint8_t* m, uint32_t target, uint32_t i,
                   bool masked) {
  const uint32_t k0 = (cell[i] == target) & (masked ? m[i] : 1u);
  const uint32_t k1 = (cell[i + 1] == target) & (masked ? m[i + 1] : 1u);
  return V2{static_cast<double>(k0), static_cast<double>(k1)};
}

inline double horizontal(const V2* a) {
  V2 s = (a[0] + a[1]) + (a[2] + a[3]);
  return s[0] + s[1];
}

template <class T, bool kMasked>
double sumInCell(const T* x, const uint8_t* m, const uint32_t* cell, uint32_t target, uint32_t n,
                 double shift) {
  V2 a[4] = {};
  const V2 sh = {shift, shift};
  uint32_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (uint32_t j = 0; j < 4; ++j) {
      // Multiplying by the 0/1 selection keeps the loop free of branches (values are finite).
      a[j] +=
          (pairOf<T, kMasked>(x, i + 2 * j) - sh) * keepPair(cell, m, target, i + 2 * j, kMasked);
    }
  }
  double rest = 0;
  for (; i < n; ++i) {
    const uint32_t keep = (cell[i] == target) & (kMasked ? m[i] : 1u);
    rest += (static_cast<double>(x[i]) - shift) * static_cast<double>(keep);
  }
  return horizontal(a) + rest;
}

// --- one-pass moments for few cells ---------------------------------------------------------

// Up to this many cells, means and variances take one vectorised pass per chunk that updates
// every cell's sums at each row (branch-free: compare the row's cell code, mask, add); above
// it, two scatter passes (sums, then squared deviations).
constexpr uint32_t kMomentCells = 8;

typedef int64_t I2 __attribute__((vector_size(16)));

// Two cell codes (< 2^31: at most 2^20 cells) as doubles. GCC scalarises the generic vector
// conversion of two int32, so on x86-64 use SSE2's cvtdq2pd directly.
inline V2 codePair(const uint32_t* code) {
#if defined(__SSE2__)
  return reinterpret_cast<V2>(
      _mm_cvtepi32_pd(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(code))));
#else
  typedef int32_t I32x2 __attribute__((vector_size(8)));
  I32x2 ci;
  std::memcpy(&ci, code, sizeof ci);
  return __builtin_convertvector(ci, V2);
#endif
}

// Per cell c in [0, NC): S[c] = sum of (x - K[c]) and Q[c] = sum of (x - K[c])^2 over the rows
// whose code is base + c. Without codes (kCoded false) every row belongs to cell 0. Codes that
// match no cell (e.g. a "not selected" sentinel) contribute nothing. Masking is a bitwise AND,
// so even non-finite values in rows of other cells cannot leak in. kUnroll independent
// accumulators per cell hide the latency of the additions when registers allow.
template <class T, int NC, bool kCoded>
void shiftedSums(const T* x, const uint32_t* code, uint32_t base, uint32_t n, const double* K,
                 double* S, double* Q) {
  constexpr int kUnroll = NC <= 2 ? 2 : 1;
  V2 s[NC][kUnroll] = {}, q[NC][kUnroll] = {};
  V2 k[NC], cc[NC];
  for (int c = 0; c < NC; ++c) {
    k[c] = V2{K[c], K[c]};
    const double cd = static_cast<double>(base + static_cast<uint32_t>(c));
    cc[c] = V2{cd, cd};
  }
  uint32_t i = 0;
  for (; i + 2 * kUnroll <= n; i += 2 * kUnroll) {
    for (int u = 0; u < kUnroll; ++u) {
      const uint32_t r = i + 2 * static_cast<uint32_t>(u);
      V2 xv;
      if constexpr (std::is_same_v<T, double>) {
        std::memcpy(&xv, x + r, sizeof xv);
      } else {
        xv = V2{static_cast<double>(x[r]), static_cast<double>(x[r + 1])};
      }
      if constexpr (kCoded) {
        const V2 cd = codePair(code + r);
        for (int c = 0; c < NC; ++c) {
          const V2 d = reinterpret_cast<V2>(reinterpret_cast<I2>(xv - k[c]) & (cd == cc[c]));
          s[c][u] += d;
          q[c][u] += d * d;
        }
      } else {
        const V2 d = xv - k[0];
        s[0][u] += d;
        q[0][u] += d * d;
      }
    }
  }
  double ts[NC] = {}, tq[NC] = {};
  for (; i < n; ++i) {
    const uint32_t c = kCoded ? code[i] - base : 0;  // wraps for codes below base
    if (c < static_cast<uint32_t>(NC)) {
      const double d = static_cast<double>(x[i]) - K[c];
      ts[c] += d;
      tq[c] += d * d;
    }
  }
  for (int c = 0; c < NC; ++c) {
    V2 sv = s[c][0], qv = q[c][0];
    for (int u = 1; u < kUnroll; ++u) {
      sv += s[c][u];
      qv += q[c][u];
    }
    S[c] = (sv[0] + sv[1]) + ts[c];
    Q[c] = (qv[0] + qv[1]) + tq[c];
  }
}

template <class T, bool kCoded>
void shiftedSumsFor(uint32_t cells, const T* x, const uint32_t* code, uint32_t base, uint32_t n,
                    const double* K, double* S, double* Q) {
  switch (cells) {
    case 1:
      return shiftedSums<T, 1, kCoded>(x, code, base, n, K, S, Q);
    case 2:
      if constexpr (kCoded) return shiftedSums<T, 2, true>(x, code, base, n, K, S, Q);
      break;
    case 3:
      if constexpr (kCoded) return shiftedSums<T, 3, true>(x, code, base, n, K, S, Q);
      break;
    case 4:
      if constexpr (kCoded) return shiftedSums<T, 4, true>(x, code, base, n, K, S, Q);
      break;
    case 5:
      if constexpr (kCoded) return shiftedSums<T, 5, true>(x, code, base, n, K, S, Q);
      break;
    case 6:
      if constexpr (kCoded) return shiftedSums<T, 6, true>(x, code, base, n, K, S, Q);
      break;
    case 7:
      if constexpr (kCoded) return shiftedSums<T, 7, true>(x, code, base, n, K, S, Q);
      break;
    case 8:
      if constexpr (kCoded) return shiftedSums<T, 8, true>(x, code, base, n, K, S, Q);
      break;
    default:
      break;
  }
  std::abort();  // callers pass 1..kMomentCells cells (1 when uncoded)
}

// When the shift K lies this far from a cell's mean, in units of the cell's spread
// (n (mean - K)^2 > kCancellationLimit * M2), the shifted sum of squares has cancelled too many
// digits and M2 is recomputed around the mean with a second pass.
constexpr double kCancellationLimit = 64;

// --- counting by cell code ------------------------------------------------------------------

// Up to this many cells, rows are counted per cell by comparing 16 one-byte codes at a time
// (a few vector instructions per 16 rows and cell) instead of scattering increments.
constexpr uint32_t kCompareCountCells = 32;

// out[base + j] += number of rows (selected by m, when given) with code base + j, j < K.
template <int K, bool kMasked>
void countByCompare(const uint8_t* code, const uint8_t* m, uint32_t n, uint32_t base,
                    uint32_t cells, uint64_t* out) {
  U8x16 want[K];
  for (int j = 0; j < K; ++j) {
    // Slots past the last cell look for 255, which no code of a query this small takes.
    const uint32_t c = base + static_cast<uint32_t>(j);
    const uint8_t w = c < cells ? static_cast<uint8_t>(c) : uint8_t{255};
    want[j] = U8x16{} + w;  // broadcast
  }
  uint64_t total[K] = {};
  uint32_t i = 0;
  while (i + 16 <= n) {
    // Byte counters hold at most 255 increments: fold them into `total` every 255 blocks.
    const uint32_t blocks = std::min<uint32_t>(255, (n - i) / 16);
    U8x16 acc[K] = {};
    for (uint32_t b = 0; b < blocks; ++b, i += 16) {
      U8x16 v;
      std::memcpy(&v, code + i, sizeof v);
      U8x16 sel;
      if constexpr (kMasked) std::memcpy(&sel, m + i, sizeof sel);
      for (int j = 0; j < K; ++j) {
        const U8x16 eq = reinterpret_cast<U8x16>(v == want[j]);  // 0xff where equal
        if constexpr (kMasked) {
          acc[j] += eq & sel;  // sel is 0 or 1
        } else {
          acc[j] -= eq;
        }
      }
    }
    for (int j = 0; j < K; ++j)
      for (int b = 0; b < 16; ++b) total[j] += acc[j][b];
  }
  for (; i < n; ++i) {
    const uint32_t j = code[i] - base;  // wraps for codes below base
    if (j < static_cast<uint32_t>(K) && (!kMasked || m[i])) ++total[j];
  }
  for (int j = 0; j < K && base + static_cast<uint32_t>(j) < cells; ++j) out[base + j] += total[j];
}

// out[code[i]] += m[i] (or 1): one-byte codes of a query with fewer than 256 cells.
void countCodes8(const uint8_t* code, const uint8_t* m, uint32_t n, uint32_t cells, uint64_t* out,
                 std::vector<uint32_t>& scratch) {
  if (cells <= kCompareCountCells) {
    for (uint32_t base = 0; base < cells;) {
      const uint32_t left = cells - base;
      if (left > 4) {
        m ? countByCompare<8, true>(code, m, n, base, cells, out)
          : countByCompare<8, false>(code, m, n, base, cells, out);
        base += 8;
      } else if (left > 2) {
        m ? countByCompare<4, true>(code, m, n, base, cells, out)
          : countByCompare<4, false>(code, m, n, base, cells, out);
        base += 4;
      } else {
        m ? countByCompare<2, true>(code, m, n, base, cells, out)
          : countByCompare<2, false>(code, m, n, base, cells, out);
        base += 2;
      }
    }
    return;
  }
  scratch.assign(4 * size_t{cells}, 0);
  uint32_t* a0 = scratch.data();
  uint32_t* a1 = a0 + cells;
  uint32_t* a2 = a1 + cells;
  uint32_t* a3 = a2 + cells;
  uint32_t i = 0;
  for (; i + 4 <= n; i += 4) {
    a0[code[i]] += m ? m[i] : 1;
    a1[code[i + 1]] += m ? m[i + 1] : 1;
    a2[code[i + 2]] += m ? m[i + 2] : 1;
    a3[code[i + 3]] += m ? m[i + 3] : 1;
  }
  for (; i < n; ++i) a0[code[i]] += m ? m[i] : 1;
  for (uint32_t c = 0; c < cells; ++c) out[c] += uint64_t{a0[c]} + a1[c] + a2[c] + a3[c];
}

// The bin of v: k with breaks[k] <= v < breaks[k+1], or bins (= outside).
uint32_t binOf(double v, const detail::BoundAggregate& a) {
  const auto& b = a.breaks;
  const uint32_t bins = static_cast<uint32_t>(b.size() - 1);
  if (!(v >= b.front() && v < b.back())) return bins;
  if (a.uniform) {
    double est = std::floor((v - a.from) / a.width);
    int64_t k = est < 0 ? 0 : (est >= bins ? bins - 1 : static_cast<int64_t>(est));
    while (k > 0 && v < b[k]) --k;
    while (k + 1 < bins && v >= b[k + 1]) ++k;
    return static_cast<uint32_t>(k);
  }
  return static_cast<uint32_t>(std::upper_bound(b.begin(), b.end(), v) - b.begin() - 1);
}

template <class T>
constexpr bool kLutType = sizeof(T) <= 2 && std::is_integral_v<T>;

// Bin lookup tables for 8- and 16-bit integer columns: exact (built with binOf) and free of
// floating point in the loop.
std::vector<uint32_t> buildBinLut(const detail::BoundAggregate& a, storage::PhysicalType type) {
  auto build = [&](auto tag) {
    using T = decltype(tag);
    std::vector<uint32_t> lut;
    if constexpr (kLutType<T>) {
      constexpr int64_t lo = std::numeric_limits<T>::min();
      constexpr int64_t hi = std::numeric_limits<T>::max();
      lut.resize(static_cast<size_t>(hi - lo + 1));
      for (int64_t v = lo; v <= hi; ++v) lut[static_cast<size_t>(v - lo)] = binOf(double(v), a);
    }
    return lut;
  };
  switch (type) {
    case storage::PhysicalType::kI8:
      return build(int8_t{});
    case storage::PhysicalType::kI16:
      return build(int16_t{});
    case storage::PhysicalType::kU8:
      return build(uint8_t{});
    case storage::PhysicalType::kU16:
      return build(uint16_t{});
    default:
      return {};
  }
}

PartialResult emptyPartial(const detail::Plan& plan) {
  PartialResult p;
  p.shape = PartialShape{plan.dictionaryHash, plan.canonical, plan.cells,
                         static_cast<uint32_t>(plan.aggregates.size())};
  const size_t cells = plan.cells;
  p.cellRows.assign(cells, 0);
  for (const auto& a : plan.aggregates) {
    StatPartial s;
    s.n.assign(cells, 0);
    if (a.hasVar) s.missing.assign(cells, 0);
    switch (a.fn) {
      case AggFn::kCount:
        break;
      case AggFn::kSum:
        s.sum.assign(cells, 0.0);
        if (a.type == storage::VariableType::kInteger) s.intSum.assign(cells, 0);
        break;
      case AggFn::kMean:
      case AggFn::kVar:
      case AggFn::kSd:
        s.mean.assign(cells, 0.0);
        s.m2.assign(cells, 0.0);
        break;
      case AggFn::kMin:
        s.min.assign(cells, kInf);
        break;
      case AggFn::kMax:
        s.max.assign(cells, -kInf);
        break;
      case AggFn::kHist:
        s.bins = static_cast<uint32_t>(a.breaks.size() - 1);
        s.binCounts.assign(cells * (size_t{s.bins} + 1), 0);
        break;
      case AggFn::kKm:
        s.km.assign(cells, {});
        break;
      default:  // models run in model_kernel.cc, never through the Worker's scan
        break;
    }
    p.stats.push_back(std::move(s));
  }
  return p;
}

class Worker {
 public:
  Worker(const detail::Plan& plan, const storage::ColumnSource& source,
         const std::vector<std::vector<uint32_t>>& binLuts)
      : plan_(plan), source_(source), binLuts_(binLuts), result_(emptyPartial(plan)) {
    cols_.resize(plan.dictionary.size());
    kmRaw_.resize(plan.aggregates.size());
    for (size_t i = 0; i < plan.aggregates.size(); ++i)
      if (plan.aggregates[i].fn == AggFn::kKm) kmRaw_[i].resize(plan.cells);
  }

  Status run(uint32_t begin, uint32_t end, const std::atomic<bool>* cancelled) {
    for (uint32_t c = begin; c < end; ++c) {
      if (cancelled != nullptr && cancelled->load(std::memory_order_relaxed)) {
        return scanCancelledStatus();
      }
      TM_RETURN_IF_ERROR(chunk(c));
    }
    finishKm();
    return Status::ok();
  }

  PartialResult& result() { return result_; }

  // The filter's selection of chunk `c` (n rows) into `out`; for the model kernel.
  Status select(uint32_t c, uint32_t n, std::vector<uint8_t>& out) {
    TM_RETURN_IF_ERROR(fetch(c, n));
    out.assign(n, 1);
    if (plan_.hasFilter) {
      uint8_t* m = buffer(0);
      evalFilter(plan_.filter, n, m, 0);
      std::copy(m, m + n, out.begin());
    }
    return Status::ok();
  }

 private:
  uint8_t* buffer(size_t depth) {
    while (masks_.size() <= depth) masks_.emplace_back(kChunkRows);
    return masks_[depth].data();
  }

  Status fetch(uint32_t c, uint32_t rows) {
    for (size_t v : plan_.columns) {
      TM_ASSIGN_OR_RETURN(cols_[v], source_.column(v, c));
      const ColumnChunk& col = *cols_[v];
      const auto& var = plan_.dictionary.variable(v);
      if (col.rows != rows || col.type() != storage::physicalTypeOf(var) ||
          (col.hasMissing() && col.missing.size() < (size_t{rows} + 63) / 64) ||
          std::visit([&](const auto& vec) { return vec.size() < rows; }, col.values)) {
        return Status::corruption(fmt::format(
            "chunk {} of variable {} is malformed ({} rows, physical type {}; expected {} rows, "
            "type {}); the stored dataset needs to be re-imported",
            c, var.name, col.rows, static_cast<int>(col.type()), rows,
            static_cast<int>(storage::physicalTypeOf(var))));
      }
    }
    return Status::ok();
  }

  void evalFilter(const detail::BoundFilter& f, uint32_t n, uint8_t* out, size_t depth) {
    if (f.kind == BK::kAnd || f.kind == BK::kOr) {
      evalFilter(f.children[0], n, out, depth + 1);
      uint8_t* tmp = buffer(depth + 1);
      for (size_t k = 1; k < f.children.size(); ++k) {
        evalFilter(f.children[k], n, tmp, depth + 2);
        if (f.kind == BK::kAnd) {
          for (uint32_t i = 0; i < n; ++i) out[i] &= tmp[i];
        } else {
          for (uint32_t i = 0; i < n; ++i) out[i] |= tmp[i];
        }
      }
      return;
    }
    const ColumnChunk& col = *cols_[f.var];
    switch (f.kind) {
      case BK::kMissing: {
        const uint8_t base = f.negate ? 1 : 0;
        std::fill(out, out + n, base);
        forEachMissing(col, [&](uint32_t row) { out[row] = base ^ 1; });
        return;  // never unknown
      }
      case BK::kIntRange:
        visitValues(col, [&](const auto* x) {
          using T = std::remove_cv_t<std::remove_pointer_t<decltype(x)>>;
          if constexpr (std::is_integral_v<T>) rangeKernel(x, n, f.lo, f.hi, f.negate, out);
        });
        break;
      case BK::kIntSet:
        visitValues(col, [&](const auto* x) {
          using T = std::remove_cv_t<std::remove_pointer_t<decltype(x)>>;
          if constexpr (std::is_integral_v<T>) intSetKernel(x, n, f.ints, f.negate, out);
        });
        break;
      case BK::kRealCmp:
      case BK::kRealSet:
        visitValues(col, [&](const auto* x) {
          using T = std::remove_cv_t<std::remove_pointer_t<decltype(x)>>;
          if constexpr (std::is_same_v<T, double>) {
            if (f.kind == BK::kRealCmp) {
              realCmpKernel(x, n, f.op, f.real, out);
            } else {
              realSetKernel(x, n, f.reals, f.negate, out);
            }
          }
        });
        break;
      default:
        break;
    }
    if (col.hasMissing()) clearMissing(out, col);  // unknown is not true
  }

  // The cell of every row of the chunk: one byte per row when the query has fewer than 256
  // cells (less memory traffic, and counting can compare 16 codes at once), else 32 bits.
  Status groupIndex(uint32_t chunkIndex, uint32_t n) {
    g32Ready_ = false;
    if (plan_.cells < 256) {
      g8_.resize(kChunkRows);
      return buildCodes(g8_.data(), chunkIndex, n);
    }
    g_.resize(kChunkRows);
    g32Ready_ = true;
    return buildCodes(g_.data(), chunkIndex, n);
  }

  template <class C>
  Status buildCodes(C* g, uint32_t chunkIndex, uint32_t n) {
    bool first = true;
    for (const auto& gv : plan_.groups) {
      const ColumnChunk& col = *cols_[gv.var];
      const uint32_t levels = gv.levels;
      const C width = static_cast<C>(gv.width());
      if (gv.integer) {
        // Values of the declared range; a missing slot holds 0, which may lie outside it.
        bool inRange = true;
        visitValues(col, [&](const auto* x) {
          for (uint32_t i = 0; i < n; ++i) {
            C code = static_cast<C>(levels);
            if (!col.isMissing(i)) {
              const int64_t k = static_cast<int64_t>(x[i]) - gv.offset;
              inRange = inRange && k >= 0 && k < static_cast<int64_t>(levels);
              code = static_cast<C>(k);
            } else {
              inRange = inRange && gv.hasNa;
            }
            g[i] = first ? code : static_cast<C>(g[i] * width + code);
          }
        });
        if (!inRange) {
          return Status::corruption(fmt::format(
              "chunk {} of variable {} holds a value outside its declared range or a missing "
              "value the dictionary does not allow; the stored dataset needs to be re-imported",
              chunkIndex, plan_.dictionary.variable(gv.var).name));
        }
        first = false;
        continue;
      }
      bool ok = visitValues(col, [&](const auto* x) {
        using T = std::remove_cv_t<std::remove_pointer_t<decltype(x)>>;
        if constexpr (std::is_integral_v<T>) {
          if (gv.time) {
            // Calendar bins: out-of-range and missing dates are clamped to a valid code; the
            // range filter the binder added keeps them out of every statistic.
            for (uint32_t i = 0; i < n; ++i) {
              const C bin = static_cast<C>(timeBinOf(gv.bins, static_cast<int64_t>(x[i])));
              g[i] = first ? bin : static_cast<C>(g[i] * width + bin);
            }
            return true;
          }
          // Validate first (vectorised min/max), so the code arithmetic below cannot overflow.
          T mx = 0, mn = 0;
          for (uint32_t i = 0; i < n; ++i) mx = x[i] > mx ? x[i] : mx;
          if constexpr (std::is_signed_v<T>) {
            for (uint32_t i = 0; i < n; ++i) mn = x[i] < mn ? x[i] : mn;
          }
          if (mn < 0 || static_cast<uint64_t>(mx) >= levels) return false;
          if (first) {
            for (uint32_t i = 0; i < n; ++i) g[i] = static_cast<C>(x[i]);
          } else {
            for (uint32_t i = 0; i < n; ++i)
              g[i] = static_cast<C>(g[i] * width + static_cast<C>(x[i]));
          }
          if (col.hasMissing()) {
            if (!gv.hasNa) return false;
            forEachMissing(col, [&](uint32_t row) {
              g[row] = static_cast<C>(g[row] - static_cast<C>(x[row]) + levels);
            });
          }
          return true;
        } else {
          return false;
        }
      });
      if (!ok) {
        const auto& var = plan_.dictionary.variable(gv.var);
        return Status::corruption(fmt::format(
            "chunk {} of variable {} holds a level code outside its {} levels or a missing "
            "value the dictionary does not allow; the stored dataset needs to be re-imported",
            chunkIndex, var.name, levels));
      }
      first = false;
    }
    return Status::ok();
  }

  // The chunk's cell codes as 32-bit values (widened from the one-byte codes on first use).
  const uint32_t* cells32(uint32_t n) {
    if (!g32Ready_) {
      g_.resize(kChunkRows);
      for (uint32_t i = 0; i < n; ++i) g_[i] = g8_[i];
      g32Ready_ = true;
    }
    return g_.data();
  }

  uint32_t codeAt(uint32_t row) const { return plan_.cells < 256 ? g8_[row] : g_[row]; }

  // out[cell] += rows selected by m (every row when m is null), per cell of this chunk.
  void countPerCell(const uint8_t* m, uint32_t n, uint64_t* out) {
    if (plan_.groups.empty()) {
      out[0] += m ? sumBytes(m, n) : n;
    } else if (plan_.cells < 256) {
      countCodes8(g8_.data(), m, n, plan_.cells, out, scratch32_);
    } else {
      countCells(g_.data(), m, n, plan_.cells, out, scratch32_);
    }
  }

  Status chunk(uint32_t c) {
    const uint64_t start = uint64_t{c} * kChunkRows;
    const uint32_t n =
        static_cast<uint32_t>(std::min<uint64_t>(kChunkRows, source_.rowCount() - start));
    TM_RETURN_IF_ERROR(fetch(c, n));
    const uint8_t* sel = nullptr;
    if (plan_.hasFilter) {
      uint8_t* m = buffer(0);
      evalFilter(plan_.filter, n, m, 0);
      sel = m;
    }
    const bool grouped = !plan_.groups.empty();
    if (grouped) TM_RETURN_IF_ERROR(groupIndex(c, n));
    const uint32_t cells = plan_.cells;
    result_.rowsScanned += n;
    chunkRows_.assign(cells, 0);
    countPerCell(sel, n, chunkRows_.data());
    for (uint32_t k = 0; k < cells; ++k) result_.cellRows[k] += chunkRows_[k];
    sel_ = sel;

    for (size_t ai = 0; ai < plan_.aggregates.size(); ++ai) {
      const auto& a = plan_.aggregates[ai];
      if (!a.hasVar || a.sameStateAs >= 0) continue;  // filled in after merging
      StatPartial& s = result_.stats[ai];
      const ColumnChunk& col = *cols_[a.var];
      if (a.fn == AggFn::kKm) {
        TM_RETURN_IF_ERROR(
            collectKm(ai, col, *cols_[a.event], sel, grouped ? cells32(n) : nullptr, n));
        continue;
      }
      // valid = selected and known
      const uint8_t* valid = sel;
      if (col.hasMissing()) {
        uint8_t* v = buffer(1);
        if (sel) {
          std::copy(sel, sel + n, v);
        } else {
          std::fill(v, v + n, uint8_t{1});
        }
        forEachMissing(col, [&](uint32_t row) {
          s.missing[grouped ? codeAt(row) : 0] += v[row];
          v[row] = 0;
        });
        valid = v;
      }
      if (a.fn == AggFn::kCount) {
        countPerCell(valid, n, s.n.data());
        continue;
      }
      const uint32_t* cell = grouped ? cells32(n) : nullptr;
      if (a.fn == AggFn::kHist) {
        hist(ai, a, col, valid, cell, n);
        continue;
      }
      visitValues(col, [&](const auto* x) {
        if (valid) {
          numeric<true>(a, s, x, valid, cell, n);
        } else {
          numeric<false>(a, s, x, valid, cell, n);
        }
      });
    }
    return Status::ok();
  }

  template <bool kMasked, class T>
  void numeric(const detail::BoundAggregate& a, StatPartial& s, const T* x, const uint8_t* m,
               const uint32_t* cell, uint32_t n) {
    const uint32_t cells = plan_.cells;
    if (!cell) {
      const uint64_t cnt = kMasked ? sumBytes(m, n) : n;
      if (cnt == 0) return;
      switch (a.fn) {
        case AggFn::kSum:
          s.n[0] += cnt;
          s.sum[0] += sumSelected<T, kMasked>(x, m, n);
          if (!s.intSum.empty()) {
            s.intSum[0] = static_cast<int64_t>(static_cast<uint64_t>(s.intSum[0]) +
                                               intSumSelected<T, kMasked>(x, m, n));
          }
          break;
        case AggFn::kMean:
        case AggFn::kVar:
        case AggFn::kSd:
          momentsFewCells<kMasked>(s, x, m, nullptr, n, &cnt);
          break;
        case AggFn::kMin:
        case AggFn::kMax: {
          const bool isMin = a.fn == AggFn::kMin;
          double acc[4] = {kInf, kInf, kInf, kInf};
          const double sign = isMin ? 1.0 : -1.0;  // max(x) = -min(-x)
          uint32_t i = 0;
          for (; i + 4 <= n; i += 4) {
            for (int j = 0; j < 4; ++j) {
              double v = sign * static_cast<double>(x[i + j]);
              if (kMasked && !m[i + j]) v = kInf;
              acc[j] = std::min(acc[j], v);
            }
          }
          for (; i < n; ++i) {
            double v = sign * static_cast<double>(x[i]);
            if (kMasked && !m[i]) v = kInf;
            acc[0] = std::min(acc[0], v);
          }
          double best = sign * std::min(std::min(acc[0], acc[1]), std::min(acc[2], acc[3]));
          s.n[0] += cnt;
          if (isMin) {
            s.min[0] = std::min(s.min[0], best);
          } else {
            s.max[0] = std::max(s.max[0], best);
          }
          break;
        }
        default:
          break;
      }
      return;
    }
    // Grouped. Values counted per cell: the chunk's row counts unless missing values dropped some.
    if (m == sel_) {
      chunkN_ = chunkRows_;
    } else {
      chunkN_.assign(cells, 0);
      countCells(cell, kMasked ? m : nullptr, n, cells, chunkN_.data(), scratch32_);
    }
    switch (a.fn) {
      case AggFn::kSum: {
        chunkSum_.resize(cells);
        if (cells <= kPerCellPassLimit) {
          for (uint32_t c = 0; c < cells; ++c)
            chunkSum_[c] = chunkN_[c] ? sumInCell<T, kMasked>(x, m, cell, c, n, 0.0) : 0.0;
        } else {
          scatterSum<T, kMasked>(x, m, cell, n, cells, chunkSum_.data(), scratchD_);
        }
        for (uint32_t c = 0; c < cells; ++c) {
          s.n[c] += chunkN_[c];
          s.sum[c] += chunkSum_[c];
        }
        if (!s.intSum.empty()) {
          for (uint32_t i = 0; i < n; ++i) {
            uint64_t v = static_cast<uint64_t>(static_cast<int64_t>(x[i]));
            if (!kMasked || m[i])
              s.intSum[cell[i]] =
                  static_cast<int64_t>(static_cast<uint64_t>(s.intSum[cell[i]]) + v);
          }
        }
        break;
      }
      case AggFn::kMean:
      case AggFn::kVar:
      case AggFn::kSd: {
        if (cells <= kMomentCells) {
          momentsFewCells<kMasked>(s, x, m, cell, n, chunkN_.data());
          break;
        }
        chunkSum_.resize(cells);
        chunkMean_.resize(cells);
        chunkM2_.resize(cells);
        const double shift = firstSelected<T, kMasked>(x, m, n);
        scatterSum<T, kMasked>(x, m, cell, n, cells, chunkSum_.data(), scratchD_, shift);
        for (uint32_t c = 0; c < cells; ++c)
          chunkMean_[c] = chunkN_[c] ? shift + chunkSum_[c] / static_cast<double>(chunkN_[c]) : 0.0;
        scatterSquaredDeviations<T, kMasked>(x, m, cell, n, cells, chunkMean_.data(),
                                             chunkM2_.data(), scratchD_);
        for (uint32_t c = 0; c < cells; ++c)
          detail::mergeMoments(s.n[c], s.mean[c], s.m2[c], chunkN_[c], chunkMean_[c], chunkM2_[c]);
        break;
      }
      case AggFn::kMin:
      case AggFn::kMax: {
        const bool isMin = a.fn == AggFn::kMin;
        double* out = isMin ? s.min.data() : s.max.data();
        for (uint32_t i = 0; i < n; ++i) {
          if (kMasked && !m[i]) continue;
          const double v = static_cast<double>(x[i]);
          double& o = out[cell[i]];
          o = isMin ? std::min(o, v) : std::max(o, v);
        }
        for (uint32_t c = 0; c < cells; ++c) s.n[c] += chunkN_[c];
        break;
      }
      default:
        break;
    }
  }

  // Means and M2 of up to kMomentCells cells in one pass: sums around a per-cell shift K (the
  // cell's first value in this chunk, so within the data's spread of the mean), M2 =
  // sum (x-K)^2 - (sum (x-K))^2 / n, then Chan's merge into the running state. `cnt` holds the
  // number of values per cell in this chunk; `cell` is null for a query without groups.
  template <bool kMasked, class T>
  void momentsFewCells(StatPartial& s, const T* x, const uint8_t* m, const uint32_t* cell,
                       uint32_t n, const uint64_t* cnt) {
    const uint32_t cells = cell ? plan_.cells : 1;
    // Rows that are not selected get the code `cells`, which matches no cell.
    const uint32_t* code = cell;
    if (kMasked) {
      codes_.resize(kChunkRows);
      uint32_t* cs = codes_.data();
      if (cell) {
        for (uint32_t i = 0; i < n; ++i) cs[i] = m[i] ? cell[i] : cells;
      } else {
        for (uint32_t i = 0; i < n; ++i) cs[i] = m[i] ? 0u : 1u;
      }
      code = cs;
    }
    uint32_t need = 0;
    for (uint32_t c = 0; c < cells; ++c) need += cnt[c] != 0;
    if (need == 0) return;
    bool found[kMomentCells] = {};
    for (uint32_t i = 0; need > 0 && i < n; ++i) {
      const uint32_t c = code ? code[i] : 0;
      if (c < cells && !found[c]) {
        found[c] = true;
        shiftK_[c] = static_cast<double>(x[i]);
        --need;
      }
    }
    for (uint32_t c = 0; c < cells; ++c)
      if (!found[c]) shiftK_[c] = 0;  // empty cell: its sums stay 0 and are not used
    if (code) {
      shiftedSumsFor<T, true>(cells, x, code, 0, n, shiftK_, sumS_, sumQ_);
    } else {
      shiftedSumsFor<T, false>(1, x, nullptr, 0, n, shiftK_, sumS_, sumQ_);
    }
    for (uint32_t c = 0; c < cells; ++c) {
      if (cnt[c] == 0) continue;
      const double nc = static_cast<double>(cnt[c]);
      double mean = shiftK_[c] + sumS_[c] / nc;
      const double between = sumS_[c] * (sumS_[c] / nc);  // n (mean - K)^2
      double m2 = sumQ_[c] - between;
      if (!(between <= kCancellationLimit * m2) && between > 0) {
        // K was far from this cell's mean compared with its spread: recompute around the mean
        // (the corrected two-pass algorithm, which also refines the mean).
        double s1 = 0, q1 = 0;
        if (code) {
          shiftedSumsFor<T, true>(1, x, code, c, n, &mean, &s1, &q1);
        } else {
          shiftedSumsFor<T, false>(1, x, nullptr, 0, n, &mean, &s1, &q1);
        }
        m2 = q1 - s1 * (s1 / nc);
        mean += s1 / nc;
      }
      detail::mergeMoments(s.n[c], s.mean[c], s.m2[c], cnt[c], mean, std::max(m2, 0.0));
    }
  }

  void hist(size_t ai, const detail::BoundAggregate& a, const ColumnChunk& col,
            const uint8_t* valid, const uint32_t* cell, uint32_t n) {
    StatPartial& s = result_.stats[ai];
    const uint32_t slots = s.bins + 1;
    idx_.resize(kChunkRows);
    uint32_t* idx = idx_.data();
    const std::vector<uint32_t>& lut = binLuts_[ai];
    visitValues(col, [&](const auto* x) {
      using T = std::remove_cv_t<std::remove_pointer_t<decltype(x)>>;
      if constexpr (kLutType<T>) {
        constexpr int64_t lo = std::numeric_limits<T>::min();
        const uint32_t* l = lut.data();
        for (uint32_t i = 0; i < n; ++i) idx[i] = l[static_cast<int64_t>(x[i]) - lo];
      } else {
        for (uint32_t i = 0; i < n; ++i) idx[i] = binOf(static_cast<double>(x[i]), a);
      }
    });
    if (cell) {
      for (uint32_t i = 0; i < n; ++i) idx[i] += cell[i] * slots;
    }
    countCells(idx, valid, n, plan_.cells * slots, s.binCounts.data(), scratch32_);
    chunkN_.assign(plan_.cells, 0);
    countCells(cell, valid, n, plan_.cells, chunkN_.data(), scratch32_);
    for (uint32_t c = 0; c < plan_.cells; ++c) s.n[c] += chunkN_[c];
  }

  Status collectKm(size_t ai, const ColumnChunk& time, const ColumnChunk& event, const uint8_t* sel,
                   const uint32_t* cell, uint32_t n) {
    StatPartial& s = result_.stats[ai];
    auto& raw = kmRaw_[ai];
    const detail::EventCoding& coding = plan_.aggregates[ai].eventCoding;
    std::vector<double> bad;
    visitValues(time, [&](const auto* t) {
      visitValues(event, [&](const auto* e) {
        for (uint32_t i = 0; i < n; ++i) {
          if (sel && !sel[i]) continue;
          const uint32_t c = cell ? cell[i] : 0;
          if (time.isMissing(i) || event.isMissing(i)) {
            ++s.missing[c];
            continue;
          }
          const auto ev = static_cast<double>(e[i]);
          if (ev != coding.event && ev != coding.censored) {
            bad.push_back(ev);
            continue;
          }
          raw[c].push_back({static_cast<double>(t[i]), ev == coding.event});
          ++s.n[c];
        }
      });
    });
    if (!bad.empty())
      return detail::eventCodingError("km", plan_.dictionary.variable(plan_.aggregates[ai].event),
                                      coding, bad);
    return Status::ok();
  }

  void finishKm() {
    for (size_t ai = 0; ai < kmRaw_.size(); ++ai) {
      for (size_t c = 0; c < kmRaw_[ai].size(); ++c) {
        auto& raw = kmRaw_[ai][c];
        std::sort(raw.begin(), raw.end(),
                  [](const auto& x, const auto& y) { return x.first < y.first; });
        auto& out = result_.stats[ai].km[c];
        for (const auto& [t, ev] : raw) {
          if (out.empty() || out.back().time != t) out.push_back({t, 0, 0});
          (ev ? out.back().events : out.back().censored)++;
        }
        raw.clear();
        raw.shrink_to_fit();
      }
    }
  }

  const detail::Plan& plan_;
  const storage::ColumnSource& source_;
  const std::vector<std::vector<uint32_t>>& binLuts_;
  PartialResult result_;
  std::vector<std::shared_ptr<const ColumnChunk>> cols_;
  std::vector<std::vector<uint8_t>> masks_;
  std::vector<uint8_t> g8_;                    // cell codes when the query has fewer than 256 cells
  std::vector<uint32_t> g_, idx_, scratch32_;  // g_: 32-bit cell codes (see cells32)
  bool g32Ready_ = false;
  std::vector<uint32_t> codes_;  // cell codes with a "not selected" sentinel (moments)
  double shiftK_[kMomentCells], sumS_[kMomentCells], sumQ_[kMomentCells];
  std::vector<uint64_t> chunkN_, chunkRows_;
  const uint8_t* sel_ = nullptr;  // this chunk's selection mask (null: every row)
  std::vector<double> chunkSum_, chunkMean_, chunkM2_, scratchD_;
  std::vector<std::vector<std::vector<std::pair<double, bool>>>> kmRaw_;  // [aggregate][cell]
};

// The keys of one quantile_counts query's rows (every round of one quantile asks about the same
// rows), kept for the select's later rounds so they skip the column reads: the last few, keyed
// by ExecOptions::cacheKey (the dataset's version), the dictionary and the query text without
// its intervals. 8 bytes per row with a value.
struct QuantileRows {
  std::vector<uint64_t> keys;
  uint64_t rowsScanned = 0, selected = 0, missing = 0;
  std::array<uint64_t, kDecimalTests> notDecimal{};  // values that are not q-place decimals
};
constexpr size_t kQuantileCacheEntries = 4;
std::mutex quantileCacheMutex;
std::deque<std::pair<std::string, std::shared_ptr<const QuantileRows>>> quantileCache;

Result<std::shared_ptr<const QuantileRows>> quantileRows(const detail::Plan& plan,
                                                         const storage::ColumnSource& source,
                                                         const ExecOptions& options) {
  std::string key;
  if (!options.cacheKey.empty()) {
    Query q = plan.query;
    q.select[0].keyBounds.clear();
    key = options.cacheKey + "\n" + plan.dictionaryHash + "\n" + canonicalQueryText(q);
    std::lock_guard<std::mutex> lock(quantileCacheMutex);
    for (const auto& [k, rows] : quantileCache)
      if (k == key) return rows;
  }
  const detail::BoundAggregate& a = plan.aggregates.front();
  auto out = std::make_shared<QuantileRows>();
  const bool integer = a.type == storage::VariableType::kInteger;
  bool tooLarge = false;
  std::array<uint64_t, kDecimalTests + 1> places{};  // values by their decimalPlaces()
  for (uint32_t c = 0; c < source.chunkCount(); ++c) {
    const uint32_t rows = static_cast<uint32_t>(std::min<uint64_t>(
        storage::kChunkRows, source.rowCount() - uint64_t{c} * storage::kChunkRows));
    TM_ASSIGN_OR_RETURN(std::vector<uint8_t> sel, detail::selectChunk(plan, source, c, rows));
    TM_ASSIGN_OR_RETURN(auto chunk, source.column(a.var, c));
    out->rowsScanned += rows;
    out->selected += sumBytes(sel.data(), rows);
    forEachMissing(*chunk, [&](uint32_t row) {
      out->missing += sel[row];
      sel[row] = 0;
    });
    visitValues(*chunk, [&](const auto* x) {
      for (uint32_t r = 0; r < rows; ++r) {
        if (!sel[r]) continue;
        const double v = static_cast<double>(x[r]);
        if (std::isnan(v)) {
          ++out->missing;
          continue;
        }
        tooLarge |= integer && std::fabs(v) >= 0x1p53;
        ++places[decimalPlaces(v)];
        out->keys.push_back(quantileKey(v));
      }
    });
  }
  if (tooLarge)
    return Status::invalidArgument(
        fmt::format("{}: {} has a value beyond 2^53 in size, which a quantile cannot key exactly",
                    plan.canonical, plan.dictionary.variable(a.var).name));
  // Not a q-place decimal: every value whose fewest places exceed q.
  for (size_t q = 0; q < kDecimalTests; ++q)
    for (size_t more = q + 1; more <= kDecimalTests; ++more) out->notDecimal[q] += places[more];
  if (!key.empty()) {
    std::lock_guard<std::mutex> lock(quantileCacheMutex);
    quantileCache.emplace_front(key, out);
    if (quantileCache.size() > kQuantileCacheEntries) quantileCache.pop_back();
  }
  return std::shared_ptr<const QuantileRows>(std::move(out));
}

// quantile_counts (query/quantile.h): the keys of the rows passing the filter, counted per
// bucket of each interval asked, plus one "outside" slot. Every value is keyed as a double
// (exact for an integer below 2^53 in size), so the coordinator maps a key back to a value
// without knowing the variable's type, and all sites bucket alike. Between the buckets and the
// outside slot come kDecimalTests counts of the values without q decimal places (q = 0, 1,
// ...): when one is 0 over the federation the coordinator stops narrowing at a bucket holding
// one such value, so whole numbers and values recorded to a few decimals take 2 or 3 rounds
// instead of 6 (federatedQuantile).
Result<PartialResult> executeQuantileCounts(const detail::Plan& plan,
                                            const storage::ColumnSource& source,
                                            const ExecOptions& options) {
  const detail::BoundAggregate& a = plan.aggregates.front();
  TM_ASSIGN_OR_RETURN(std::shared_ptr<const QuantileRows> rows,
                      quantileRows(plan, source, options));
  PartialResult p = emptyPartial(plan);
  StatPartial& s = p.stats.front();
  p.rowsScanned = rows->rowsScanned;
  p.cellRows[0] = rows->selected;
  s.missing[0] = rows->missing;
  s.n[0] = rows->keys.size();
  SelectRound round;
  round.buckets = a.buckets;
  for (size_t i = 0; i + 1 < a.keyBounds.size(); i += 2)
    round.intervals.push_back({a.keyBounds[i], a.keyBounds[i + 1]});
  TM_ASSIGN_OR_RETURN(s.binCounts, countKeys(rows->keys, round));
  uint64_t inside = 0;
  for (uint64_t k : s.binCounts) inside += k;
  s.binCounts.insert(s.binCounts.end(), rows->notDecimal.begin(), rows->notDecimal.end());
  s.bins = static_cast<uint32_t>(s.binCounts.size());
  s.binCounts.push_back(s.n[0] - inside);  // outside every interval
  return p;
}

}  // namespace

Result<std::vector<uint8_t>> detail::selectChunk(const detail::Plan& plan,
                                                 const storage::ColumnSource& source,
                                                 uint32_t chunk, uint32_t rows) {
  std::vector<uint8_t> out;
  if (!plan.hasFilter) {
    out.assign(rows, 1);
    return out;
  }
  static const std::vector<std::vector<uint32_t>> kNoLuts;
  Worker w(plan, source, kNoLuts);
  TM_RETURN_IF_ERROR(w.select(chunk, rows, out));
  return out;
}

Status scanCancelledStatus() {
  return Status::resourceExhausted(
      "scan cancelled: the query was abandoned (timed out at the site, or the node is stopping)");
}

Result<PartialResult> execute(const BoundQuery& query, const storage::ColumnSource& source,
                              const ExecOptions& options) {
  const detail::Plan& plan = query.plan();
  if (source.dictionary().hashHex() != plan.dictionaryHash) {
    return Status::failedPrecondition(fmt::format(
        "the dataset's dictionary (study {}, hash {}) is not the one the query was bound to "
        "(hash {}); bind the query to this dataset's dictionary",
        source.dictionary().study(), source.dictionary().hashHex(), plan.dictionaryHash));
  }
  if (plan.model) return detail::executeModel(plan, source, options);
  if (plan.aggregates.front().fn == AggFn::kQuantileCounts)
    return executeQuantileCounts(plan, source, options);
  std::vector<std::vector<uint32_t>> binLuts(plan.aggregates.size());
  for (size_t i = 0; i < plan.aggregates.size(); ++i) {
    const auto& a = plan.aggregates[i];
    if (a.fn == AggFn::kHist)
      binLuts[i] = buildBinLut(a, storage::physicalTypeOf(plan.dictionary.variable(a.var)));
  }

  const uint32_t chunks = source.chunkCount();
  unsigned threads = options.threads ? options.threads : std::thread::hardware_concurrency();
  threads = std::max(1u, std::min<unsigned>(threads, std::max<uint32_t>(chunks, 1)));

  std::vector<std::unique_ptr<Worker>> workers;
  std::vector<Status> statuses(threads);
  for (unsigned t = 0; t < threads; ++t)
    workers.push_back(std::make_unique<Worker>(plan, source, binLuts));
  auto range = [&](unsigned t) {
    return std::pair<uint32_t, uint32_t>(
        static_cast<uint32_t>(uint64_t{chunks} * t / threads),
        static_cast<uint32_t>(uint64_t{chunks} * (t + 1) / threads));
  };
  {
    std::vector<std::thread> pool;
    for (unsigned t = 1; t < threads; ++t) {
      pool.emplace_back([&, t] {
        auto [b, e] = range(t);
        statuses[t] = workers[t]->run(b, e, options.cancelled.get());
      });
    }
    auto [b, e] = range(0);
    statuses[0] = workers[0]->run(b, e, options.cancelled.get());
    for (auto& th : pool) th.join();
  }
  for (const auto& s : statuses) TM_RETURN_IF_ERROR(s);

  PartialResult result = std::move(workers[0]->result());
  for (unsigned t = 1; t < threads; ++t)
    TM_RETURN_IF_ERROR(mergeInto(result, workers[t]->result()));

  for (size_t i = 0; i < plan.aggregates.size(); ++i) {
    const auto& a = plan.aggregates[i];
    if (!a.hasVar) {
      result.stats[i].n = result.cellRows;
    } else if (a.sameStateAs >= 0) {
      const StatPartial& src = result.stats[static_cast<size_t>(a.sameStateAs)];
      result.stats[i] = src;
    }
  }
  return result;
}

}  // namespace trialmesh::query
