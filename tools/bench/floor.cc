// The "in-memory floor": the four queries as plain C++ loops over compact in-memory vectors,
// written so the compiler can vectorise them. No storage, no decoding, no query planning: what
// trialmesh would cost if all it did were the arithmetic. Compiled with -O3 like the engine.
#include <algorithm>
#include <cstring>
#include <thread>

#include "tools/bench/engines.h"

namespace trialmesh::bench {
namespace {

// Per-thread partial state of any of the four queries.
struct Partial {
  uint64_t count = 0;
  uint64_t armN[2] = {0, 0};
  double armSum[2] = {0, 0};
  double armSumSq[2] = {0, 0};
  uint64_t bins[13] = {};  // 12 bins + outside
  uint64_t cells[12] = {};
};

void q1(const FloorColumns& c, size_t begin, size_t end, Partial& p) {
  const int8_t* age = c.age.data();
  const uint8_t* sex = c.sex.data();
  uint64_t n = 0;
  for (size_t i = begin; i < end; ++i) n += (age[i] >= 65) & (sex[i] == 0);
  p.count = n;
}

void q2(const FloorColumns& c, size_t begin, size_t end, Partial& p) {
  // Two groups: accumulate the total and the TRT part branch-free; PBO is the difference.
  const uint8_t* arm = c.arm.data();
  const double* bmi = c.bmi.data();
  uint64_t nTrt = 0;
  double sAll = 0, sTrt = 0, qAll = 0, qTrt = 0;
  for (size_t i = begin; i < end; ++i) {
    const double x = bmi[i];
    const double m = static_cast<double>(arm[i]);
    nTrt += arm[i];
    sAll += x;
    qAll += x * x;
    sTrt += m * x;
    qTrt += m * x * x;
  }
  p.armN[1] = nTrt;
  p.armN[0] = (end - begin) - nTrt;
  p.armSum[1] = sTrt;
  p.armSum[0] = sAll - sTrt;
  p.armSumSq[1] = qTrt;
  p.armSumSq[0] = qAll - qTrt;
}

void q3(const FloorColumns& c, size_t begin, size_t end, Partial& p) {
  // Four tables so consecutive increments of the same bin do not wait on each other.
  uint32_t t[4][16] = {};
  const int8_t* age = c.age.data();
  size_t i = begin;
  const auto bin = [](int8_t a) -> unsigned {
    return a >= 0 && a < 120 ? static_cast<unsigned>(a) / 10u : 12u;
  };
  for (; i + 4 <= end; i += 4) {
    ++t[0][bin(age[i])];
    ++t[1][bin(age[i + 1])];
    ++t[2][bin(age[i + 2])];
    ++t[3][bin(age[i + 3])];
  }
  for (; i < end; ++i) ++t[0][bin(age[i])];
  for (int b = 0; b < 13; ++b) p.bins[b] = uint64_t{t[0][b]} + t[1][b] + t[2][b] + t[3][b];
}

void q4(const FloorColumns& c, size_t begin, size_t end, Partial& p) {
  uint32_t t[4][12] = {};
  const uint8_t* arm = c.arm.data();
  const uint8_t* ecog = c.ecog.data();
  size_t i = begin;
  for (; i + 4 <= end; i += 4) {
    ++t[0][arm[i] * 6 + ecog[i]];
    ++t[1][arm[i + 1] * 6 + ecog[i + 1]];
    ++t[2][arm[i + 2] * 6 + ecog[i + 2]];
    ++t[3][arm[i + 3] * 6 + ecog[i + 3]];
  }
  for (; i < end; ++i) ++t[0][arm[i] * 6 + ecog[i]];
  for (int k = 0; k < 12; ++k) p.cells[k] = uint64_t{t[0][k]} + t[1][k] + t[2][k] + t[3][k];
}

void runRange(const FloorColumns& c, int q, size_t begin, size_t end, Partial& p) {
  // uint32 tables in q3/q4 hold at most 2^32-1 per slot: split huge ranges.
  constexpr size_t kSlice = size_t{1} << 30;
  Partial total;
  for (size_t b = begin; b < end; b += kSlice) {
    Partial s;
    const size_t e = std::min(end, b + kSlice);
    switch (q) {
      case 0:
        q1(c, b, e, s);
        break;
      case 1:
        q2(c, b, e, s);
        break;
      case 2:
        q3(c, b, e, s);
        break;
      default:
        q4(c, b, e, s);
        break;
    }
    total.count += s.count;
    for (int a = 0; a < 2; ++a) {
      total.armN[a] += s.armN[a];
      total.armSum[a] += s.armSum[a];
      total.armSumSq[a] += s.armSumSq[a];
    }
    for (int k = 0; k < 13; ++k) total.bins[k] += s.bins[k];
    for (int k = 0; k < 12; ++k) total.cells[k] += s.cells[k];
  }
  p = total;
}

}  // namespace

FloorColumns makeFloorColumns(const gen::GenOptions& options) {
  FloorColumns c;
  c.age.resize(options.rows);
  c.sex.resize(options.rows);
  c.arm.resize(options.rows);
  c.ecog.resize(options.rows);
  c.bmi.resize(options.rows);
  gen::TrialRowGenerator generator(options);
  gen::TrialRow r;
  for (uint64_t i = 0; i < options.rows; ++i) {
    generator.next(r);
    c.age[i] = static_cast<int8_t>(r.age);
    c.sex[i] = r.sex;
    c.arm[i] = r.arm;
    c.ecog[i] = r.ecog < 0 ? 5 : static_cast<uint8_t>(r.ecog);
    c.bmi[i] = r.bmiTenths / 10.0;  // the value the CSV's "27.3" parses to
  }
  return c;
}

Answer runFloorQuery(const FloorColumns& c, int q, unsigned threads) {
  threads = std::max(1u, threads);
  const size_t n = c.rows();
  std::vector<Partial> parts(threads);
  std::vector<std::thread> pool;
  for (unsigned t = 1; t < threads; ++t) {
    pool.emplace_back([&, t] { runRange(c, q, n * t / threads, n * (t + 1) / threads, parts[t]); });
  }
  runRange(c, q, 0, n / threads, parts[0]);
  for (auto& th : pool) th.join();

  Partial p;
  for (const Partial& s : parts) {
    p.count += s.count;
    for (int a = 0; a < 2; ++a) {
      p.armN[a] += s.armN[a];
      p.armSum[a] += s.armSum[a];
      p.armSumSq[a] += s.armSumSq[a];
    }
    for (int k = 0; k < 13; ++k) p.bins[k] += s.bins[k];
    for (int k = 0; k < 12; ++k) p.cells[k] += s.cells[k];
  }
  Answer a;
  switch (q) {
    case 0:
      a.push_back(static_cast<double>(p.count));
      break;
    case 1:
      for (int g = 0; g < 2; ++g) {
        const double cnt = static_cast<double>(p.armN[g]);
        const double mean = p.armSum[g] / cnt;
        a.push_back(cnt);
        a.push_back(mean);
        a.push_back((p.armSumSq[g] - p.armSum[g] * mean) / (cnt - 1));
      }
      break;
    case 2:
      for (int k = 0; k < 12; ++k) a.push_back(static_cast<double>(p.bins[k]));
      break;
    default:
      for (int k = 0; k < 12; ++k) a.push_back(static_cast<double>(p.cells[k]));
      break;
  }
  return a;
}

}  // namespace trialmesh::bench
