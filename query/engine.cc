// execute: the local aggregate engine.
//
// Work is done a chunk (storage::kChunkRows rows) at a time so every intermediate stays in
// cache: the filter becomes a byte mask (one per filter node, combined with & and |), the
// group variables become a small cell index per row, and each statistic runs a kernel
// templated on the column's physical type, selected by one std::visit per chunk. Loops are
// branch-free so the compiler vectorises them; scattered accumulations (counts per cell) use
// several accumulator copies to avoid store-to-load stalls. Chunks are split into contiguous
// ranges, one per thread, and the per-thread partials merged in thread order, so a given
// thread count always gives bit-identical results.
#include "query/engine.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <thread>

#include "query/plan.h"

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

uint64_t sumBytes(const uint8_t* m, uint32_t n) {
  uint32_t s = 0;  // n <= 65536, so no overflow
  for (uint32_t i = 0; i < n; ++i) s += m[i];
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
double sumSquaredDeviations(const T* x, const uint8_t* m, uint32_t n, double mean) {
  double a[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  uint32_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) {
      double d = static_cast<double>(x[i + j]) - mean;
      a[j] += kMasked ? (m[i + j] ? d * d : 0.0) : d * d;
    }
  }
  for (; i < n; ++i) {
    double d = static_cast<double>(x[i]) - mean;
    a[0] += kMasked ? (m[i] ? d * d : 0.0) : d * d;
  }
  return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
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

template <class T, bool kMasked>
double squaredDeviationsInCell(const T* x, const uint8_t* m, const uint32_t* cell, uint32_t target,
                               uint32_t n, double mean) {
  V2 a[4] = {};
  const V2 mv = {mean, mean};
  uint32_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (uint32_t j = 0; j < 4; ++j) {
      const V2 d =
          (pairOf<T, kMasked>(x, i + 2 * j) - mv) * keepPair(cell, m, target, i + 2 * j, kMasked);
      a[j] += d * d;
    }
  }
  double rest = 0;
  for (; i < n; ++i) {
    const uint32_t keep = (cell[i] == target) & (kMasked ? m[i] : 1u);
    const double d = (static_cast<double>(x[i]) - mean) * static_cast<double>(keep);
    rest += d * d;
  }
  return horizontal(a) + rest;
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

  Status run(uint32_t begin, uint32_t end) {
    for (uint32_t c = begin; c < end; ++c) TM_RETURN_IF_ERROR(chunk(c));
    finishKm();
    return Status::ok();
  }

  PartialResult& result() { return result_; }

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

  Status groupIndex(uint32_t chunkIndex, uint32_t n) {
    g_.resize(kChunkRows);
    uint32_t* g = g_.data();
    bool first = true;
    for (const auto& gv : plan_.groups) {
      const ColumnChunk& col = *cols_[gv.var];
      const uint32_t levels = gv.levels, width = gv.width();
      bool ok = visitValues(col, [&](const auto* x) {
        using T = std::remove_cv_t<std::remove_pointer_t<decltype(x)>>;
        if constexpr (std::is_integral_v<T>) {
          T mx = 0;
          for (uint32_t i = 0; i < n; ++i) mx = std::max(mx, x[i]);
          if constexpr (std::is_signed_v<T>) {
            T mn = 0;
            for (uint32_t i = 0; i < n; ++i) mn = std::min(mn, x[i]);
            if (mn < 0) return false;
          }
          if (static_cast<uint64_t>(mx) >= levels) return false;
          if (first) {
            for (uint32_t i = 0; i < n; ++i) g[i] = static_cast<uint32_t>(x[i]);
          } else {
            for (uint32_t i = 0; i < n; ++i) g[i] = g[i] * width + static_cast<uint32_t>(x[i]);
          }
          if (col.hasMissing()) {
            if (!gv.hasNa) return false;
            forEachMissing(col, [&](uint32_t row) {
              g[row] = g[row] - static_cast<uint32_t>(x[row]) + levels;
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
    const uint32_t* cell = nullptr;
    if (!plan_.groups.empty()) {
      TM_RETURN_IF_ERROR(groupIndex(c, n));
      cell = g_.data();
    }
    const uint32_t cells = plan_.cells;
    result_.rowsScanned += n;
    chunkRows_.assign(cells, 0);
    countCells(cell, sel, n, cells, chunkRows_.data(), scratch32_);
    for (uint32_t k = 0; k < cells; ++k) result_.cellRows[k] += chunkRows_[k];
    sel_ = sel;

    for (size_t ai = 0; ai < plan_.aggregates.size(); ++ai) {
      const auto& a = plan_.aggregates[ai];
      if (!a.hasVar || a.sameStateAs >= 0) continue;  // filled in after merging
      StatPartial& s = result_.stats[ai];
      const ColumnChunk& col = *cols_[a.var];
      if (a.fn == AggFn::kKm) {
        collectKm(ai, col, *cols_[a.event], sel, cell, n);
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
          s.missing[cell ? cell[row] : 0] += v[row];
          v[row] = 0;
        });
        valid = v;
      }
      if (a.fn == AggFn::kCount) {
        countCells(cell, valid, n, cells, s.n.data(), scratch32_);
        continue;
      }
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
        case AggFn::kSd: {
          const double shift = firstSelected<T, kMasked>(x, m, n);
          const double mean =
              shift + sumSelected<T, kMasked>(x, m, n, shift) / static_cast<double>(cnt);
          const double m2 = sumSquaredDeviations<T, kMasked>(x, m, n, mean);
          detail::mergeMoments(s.n[0], s.mean[0], s.m2[0], cnt, mean, m2);
          break;
        }
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
        chunkSum_.resize(cells);
        chunkMean_.resize(cells);
        chunkM2_.resize(cells);
        const double shift = firstSelected<T, kMasked>(x, m, n);
        const bool perCell = cells <= kPerCellPassLimit;
        if (perCell) {
          for (uint32_t c = 0; c < cells; ++c)
            chunkSum_[c] = chunkN_[c] ? sumInCell<T, kMasked>(x, m, cell, c, n, shift) : 0.0;
        } else {
          scatterSum<T, kMasked>(x, m, cell, n, cells, chunkSum_.data(), scratchD_, shift);
        }
        for (uint32_t c = 0; c < cells; ++c)
          chunkMean_[c] = chunkN_[c] ? shift + chunkSum_[c] / static_cast<double>(chunkN_[c]) : 0.0;
        if (perCell) {
          for (uint32_t c = 0; c < cells; ++c)
            chunkM2_[c] = chunkN_[c]
                              ? squaredDeviationsInCell<T, kMasked>(x, m, cell, c, n, chunkMean_[c])
                              : 0.0;
        } else {
          scatterSquaredDeviations<T, kMasked>(x, m, cell, n, cells, chunkMean_.data(),
                                               chunkM2_.data(), scratchD_);
        }
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

  void collectKm(size_t ai, const ColumnChunk& time, const ColumnChunk& event, const uint8_t* sel,
                 const uint32_t* cell, uint32_t n) {
    StatPartial& s = result_.stats[ai];
    auto& raw = kmRaw_[ai];
    visitValues(time, [&](const auto* t) {
      visitValues(event, [&](const auto* e) {
        for (uint32_t i = 0; i < n; ++i) {
          if (sel && !sel[i]) continue;
          const uint32_t c = cell ? cell[i] : 0;
          if (time.isMissing(i) || event.isMissing(i)) {
            ++s.missing[c];
            continue;
          }
          raw[c].push_back({static_cast<double>(t[i]), e[i] != 0});
          ++s.n[c];
        }
      });
    });
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
  std::vector<uint32_t> g_, idx_, scratch32_;
  std::vector<uint64_t> chunkN_, chunkRows_;
  const uint8_t* sel_ = nullptr;  // this chunk's selection mask (null: every row)
  std::vector<double> chunkSum_, chunkMean_, chunkM2_, scratchD_;
  std::vector<std::vector<std::vector<std::pair<double, bool>>>> kmRaw_;  // [aggregate][cell]
};

}  // namespace

Result<PartialResult> execute(const BoundQuery& query, const storage::ColumnSource& source,
                              const ExecOptions& options) {
  const detail::Plan& plan = query.plan();
  if (source.dictionary().hashHex() != plan.dictionaryHash) {
    return Status::failedPrecondition(fmt::format(
        "the dataset's dictionary (study {}, hash {}) is not the one the query was bound to "
        "(hash {}); bind the query to this dataset's dictionary",
        source.dictionary().study(), source.dictionary().hashHex(), plan.dictionaryHash));
  }
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
        statuses[t] = workers[t]->run(b, e);
      });
    }
    auto [b, e] = range(0);
    statuses[0] = workers[0]->run(b, e);
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
