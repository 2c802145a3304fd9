// query_bench: times the engine on the four reference queries over an in-memory table
// shaped like trialmesh-bench's data (arm PBO/TRT, ecog 0..4 with ~3% missing, bmi in tenths)
// and compares each with the hand-written loops of tools/bench/floor.cc over contiguous copies
// of the same columns. Not a test (no assertions); run it on an otherwise idle machine:
//   query_bench [rows=10000000] [threads=2] ["extra query" ...]
// For load-independent numbers, count instructions of one run of one query under callgrind
// (only the measured call is instrumented):
//   valgrind --tool=callgrind --instr-atstart=no query_bench 2000000 1 --once "count by arm"
//   valgrind --tool=callgrind --instr-atstart=no query_bench 2000000 1 --floors
// Each query or floor loop writes its own callgrind dump (callgrind.out.<pid>.<k>).
#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>

#include "query/engine.h"
#include "query/format.h"

#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
#define TM_CALLGRIND_START() CALLGRIND_START_INSTRUMENTATION
#define TM_CALLGRIND_STOP() CALLGRIND_STOP_INSTRUMENTATION
#define TM_CALLGRIND_DUMP(name) CALLGRIND_DUMP_STATS_AT(name)
#else
#define TM_CALLGRIND_DUMP(name) (void)0
#define TM_CALLGRIND_START() (void)0
#define TM_CALLGRIND_STOP() (void)0
#endif

using namespace trialmesh;
using storage::InMemoryTable;
using storage::Variable;
using storage::VariableType;

namespace {

query::ExecOptions threadsOnly(unsigned threads) {
  query::ExecOptions o;
  o.threads = threads;
  return o;
}

Variable var(std::string name, VariableType type, std::vector<std::string> levels = {},
             std::optional<double> min = {}, std::optional<double> max = {},
             bool missingAllowed = false) {
  Variable v;
  v.name = v.csvColumn = std::move(name);
  v.type = type;
  v.missingAllowed = missingAllowed;
  for (auto& l : levels) v.levels.push_back({l, ""});
  v.min = min;
  v.max = max;
  return v;
}

double bestMs(const std::function<void()>& f) {
  double best = 1e300;
  for (int i = 0; i < 7; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    f();
    auto t1 = std::chrono::steady_clock::now();
    best = std::min(best, std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  return best;
}

// The columns as contiguous arrays, as tools/bench/floor.cc holds them (ecog NA = 5).
struct Columns {
  std::vector<int8_t> age;
  std::vector<uint8_t> sex, arm, ecog;
  std::vector<double> bmi;
};

// The loops of tools/bench/floor.cc (one thread), kept identical so the ratio means the same.
uint64_t sink = 0;
double sinkD = 0;

void floorQ1(const Columns& c) {
  const int8_t* age = c.age.data();
  const uint8_t* sex = c.sex.data();
  uint64_t n = 0;
  for (size_t i = 0; i < c.age.size(); ++i) n += (age[i] >= 65) & (sex[i] == 0);
  sink += n;
}

void floorQ2(const Columns& c) {
  const uint8_t* arm = c.arm.data();
  const double* bmi = c.bmi.data();
  uint64_t nTrt = 0;
  double sAll = 0, sTrt = 0, qAll = 0, qTrt = 0;
  for (size_t i = 0; i < c.bmi.size(); ++i) {
    const double x = bmi[i];
    const double m = static_cast<double>(arm[i]);
    nTrt += arm[i];
    sAll += x;
    qAll += x * x;
    sTrt += m * x;
    qTrt += m * x * x;
  }
  sink += nTrt;
  sinkD += sAll + sTrt + qAll + qTrt;
}

void floorQ3(const Columns& c) {
  uint32_t t[4][16] = {};
  const int8_t* age = c.age.data();
  const size_t end = c.age.size();
  size_t i = 0;
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
  sink += t[0][3] + t[1][3] + t[2][3] + t[3][3];
}

void floorQ4(const Columns& c) {
  uint32_t t[4][12] = {};
  const uint8_t* arm = c.arm.data();
  const uint8_t* ecog = c.ecog.data();
  const size_t end = c.arm.size();
  size_t i = 0;
  for (; i + 4 <= end; i += 4) {
    ++t[0][arm[i] * 6 + ecog[i]];
    ++t[1][arm[i + 1] * 6 + ecog[i + 1]];
    ++t[2][arm[i + 2] * 6 + ecog[i + 2]];
    ++t[3][arm[i + 3] * 6 + ecog[i + 3]];
  }
  for (; i < end; ++i) ++t[0][arm[i] * 6 + ecog[i]];
  sink += t[0][7] + t[1][7] + t[2][7] + t[3][7];
}

}  // namespace

int main(int argc, char** argv) {
  const uint64_t rows = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 10'000'000;
  const unsigned threads = argc > 2 ? static_cast<unsigned>(std::atoi(argv[2])) : 2;
  int argi = 3;
  // --once: run each extra query once (for callgrind) and skip the reference queries.
  // --floors: run the four floor loops once each (for callgrind) and nothing else.
  const bool once = argi < argc && std::strcmp(argv[argi], "--once") == 0;
  const bool floorOnly = argi < argc && std::strcmp(argv[argi], "--floors") == 0;
  if (once) ++argi;
  auto dict = storage::Dictionary::create(
      "BENCH", {var("age", VariableType::kInteger, {}, 18, 95),
                var("sex", VariableType::kCategorical, {"F", "M"}), var("bmi", VariableType::kReal),
                var("arm", VariableType::kCategorical, {"PBO", "TRT"}),
                var("ecog", VariableType::kCategorical, {"0", "1", "2", "3", "4"}, {}, {}, true)});
  if (!dict.isOk()) {
    fmt::print(stderr, "{}\n", dict.status().toString());
    return 1;
  }
  InMemoryTable table(*dict);
  Columns cols;
  cols.age.resize(rows);
  cols.sex.resize(rows);
  cols.arm.resize(rows);
  cols.ecog.resize(rows);
  cols.bmi.resize(rows);
  std::mt19937_64 rng(1);
  std::normal_distribution<double> normal(26, 4.8);
  std::uniform_real_distribution<double> unit(0, 1);
  std::vector<InMemoryTable::Cell> row(5);
  for (uint64_t i = 0; i < rows; ++i) {
    const int64_t age =
        std::clamp<int64_t>(std::llround(63 + 9.5 * (normal(rng) - 26) / 4.8), 18, 95);
    const int64_t sex = unit(rng) < 0.42 ? 0 : 1;
    const double bmi =
        static_cast<double>(std::clamp<int64_t>(std::llround(normal(rng) * 10), 140, 600)) / 10.0;
    const int64_t arm = static_cast<int64_t>(rng() >> 63);
    const int64_t ecog = unit(rng) < 0.03 ? -1 : static_cast<int64_t>(rng() % 5);
    row[0] = InMemoryTable::Cell::integer(age);
    row[1] = InMemoryTable::Cell::integer(sex);
    row[2] = InMemoryTable::Cell::real(bmi);
    row[3] = InMemoryTable::Cell::integer(arm);
    row[4] = ecog < 0 ? InMemoryTable::Cell::none() : InMemoryTable::Cell::integer(ecog);
    table.appendRow(row);
    cols.age[i] = static_cast<int8_t>(age);
    cols.sex[i] = static_cast<uint8_t>(sex);
    cols.bmi[i] = bmi;
    cols.arm[i] = static_cast<uint8_t>(arm);
    cols.ecog[i] = ecog < 0 ? 5 : static_cast<uint8_t>(ecog);
  }
  table.finish();

  const std::function<void()> floors[] = {[&] { floorQ1(cols); }, [&] { floorQ2(cols); },
                                          [&] { floorQ3(cols); }, [&] { floorQ4(cols); }};
  if (floorOnly) {
    for (const auto& f : floors) {
      TM_CALLGRIND_START();
      f();
      TM_CALLGRIND_STOP();
      TM_CALLGRIND_DUMP("floor");
    }
    fmt::print("(checksum {} {})\n", sink, sinkD);
    return 0;
  }

  fmt::print("{} rows, {} threads\n", rows, threads);
  // Extra queries given on the command line are timed too (engine only).
  for (int a = argi; a < argc; ++a) {
    auto q = query::parseQuery(argv[a]);
    auto b = q.isOk() ? query::bindQuery(*q, *dict) : Result<query::BoundQuery>(q.status());
    if (!b.isOk()) {
      fmt::print(stderr, "{}\n", b.status().toString());
      return 1;
    }
    if (once) {
      TM_CALLGRIND_START();
      auto r = query::execute(*b, table, threadsOnly(threads));
      TM_CALLGRIND_STOP();
      TM_CALLGRIND_DUMP(argv[a]);
      fmt::print("   {:40} {}\n", argv[a], r.isOk() ? "ok" : r.status().toString());
      continue;
    }
    double ms = bestMs([&] { (void)query::execute(*b, table, threadsOnly(threads)); });
    fmt::print("   {:40} engine {:7.2f} ms\n", argv[a], ms);
  }
  if (once) return 0;

  const char* cases[] = {"count where age >= 65 and sex = \"F\"",
                         "count, mean(bmi), var(bmi) by arm", "hist(age, 0, 120, 10)",
                         "count by arm, ecog"};
  for (int qi = 0; qi < 4; ++qi) {
    auto q = query::parseQuery(cases[qi]);
    auto b = query::bindQuery(*q, *dict);
    if (!b.isOk()) {
      fmt::print(stderr, "{}\n", b.status().toString());
      return 1;
    }
    query::PartialResult last;
    double engine = bestMs([&] { last = *query::execute(*b, table, threadsOnly(threads)); });
    double engine1 = bestMs([&] { last = *query::execute(*b, table, threadsOnly(1)); });
    double loop = bestMs(floors[qi]);
    fmt::print(
        "Q{} {:40} engine {:7.2f} ms ({} thr)  {:7.2f} ms (1 thr)  floor loop {:7.2f} ms (1 thr)"
        "  ratio(1 thr) {:4.2f}\n",
        qi + 1, cases[qi], engine, threads, engine1, loop, engine1 / loop);
  }
  fmt::print("(checksum {} {})\n", sink, sinkD);
  return 0;
}
