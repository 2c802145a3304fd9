// Internal to trialmesh-bench: the four benchmark queries and the engines that run them
// (trialmesh over its RocksDB store, an in-memory C++ floor, SQLite, DuckDB via Node.js).
//
// Every engine reduces its result to an Answer, a flat vector of numbers in one fixed layout per
// query, so the benchmark can check that all engines computed the same thing before it
// compares their speed.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "tools/gen/gen.h"

struct sqlite3;  // sqlite3.h stays out of this header

namespace trialmesh::bench {

inline constexpr int kQueryCount = 4;

struct BenchQuery {
  const char* id;         // "Q1"
  const char* trialmesh;  // the trialmesh query text
  const char* sql;        // SQLite's SQL (DuckDB's is in duckdb/bench.mjs)
  const char* description;
};

// Q1 count with a filter, Q2 moments by arm, Q3 histogram of age, Q4 cross-table arm x ecog.
const std::array<BenchQuery, kQueryCount>& benchQueries();

// Answer layouts (counts exact, reals compared with a relative tolerance):
//   Q1: [count]
//   Q2: [n, mean(bmi), var(bmi)] for PBO, then for TRT (sample variance, n - 1)
//   Q3: counts of the 12 age bins [0,10), ..., [110,120)
//   Q4: counts of arm x ecog, arm-major, ecog 0..4 then NA (12 cells)
using Answer = std::vector<double>;

// Empty when equal within tolerance, else a description of the first difference.
std::string compareAnswers(const Answer& expected, const Answer& actual);

// Per-query median wall times (ms); negative when not measured.
using QueryTimes = std::array<double, kQueryCount>;

// The columns the queries read, in compact types, filled from the generator's rows.
struct FloorColumns {
  std::vector<int8_t> age;
  std::vector<uint8_t> sex;   // 0 F, 1 M
  std::vector<uint8_t> arm;   // 0 PBO, 1 TRT
  std::vector<uint8_t> ecog;  // 0..4, 5 = NA
  std::vector<double> bmi;
  size_t rows() const { return age.size(); }
  size_t bytes() const { return rows() * (4 * sizeof(uint8_t) + sizeof(double)); }
};

FloorColumns makeFloorColumns(const gen::GenOptions& options);

// Runs query q (0..3) over the columns with `threads` threads.
Answer runFloorQuery(const FloorColumns& columns, int q, unsigned threads);

// SQLite (in process, in-memory database). Loads the same rows through prepared INSERTs.
class SqliteBench {
 public:
  SqliteBench() = default;
  ~SqliteBench();
  SqliteBench(const SqliteBench&) = delete;
  SqliteBench& operator=(const SqliteBench&) = delete;

  Status load(const gen::GenOptions& options);
  Result<Answer> run(int q);
  static std::string version();

 private:
  ::sqlite3* db_ = nullptr;
};

// DuckDB through tools/bench/duckdb/bench.mjs (Node.js). `scriptDir` holds bench.mjs and
// node_modules/@duckdb/node-api.
struct DuckDbResult {
  bool available = false;
  std::string unavailableReason;  // when !available
  std::string version;
  double loadMs = 0;
  uint64_t rows = 0;
  QueryTimes varcharMs{};  // CSV-natural types (VARCHAR codes)
  QueryTimes enumMs{};     // compact types (ENUM codes, TINYINT)
  std::array<Answer, kQueryCount> answers;
};
DuckDbResult runDuckDb(const std::string& scriptDir, const std::string& csvPath, int runs,
                       unsigned threads);

// trialmesh: import into a fresh store, and the query engine over an opened dataset.
Result<double> trialmeshImport(const std::string& storeDir, const std::string& csvPath,
                               const std::string& dictionaryPath);

struct TrialmeshQueryResult {
  QueryTimes coldMs{};  // first run after opening the store (empty chunk cache)
  QueryTimes warmMs{};  // median of `runs` later runs
  std::array<Answer, kQueryCount> answers;
};
Result<TrialmeshQueryResult> trialmeshQueries(const std::string& storeDir, size_t cacheBytes,
                                              int runs, unsigned threads);

inline constexpr const char* kDatasetName = "lung7";

// Median of the values (REQUIRES: not empty).
double median(std::vector<double> values);

}  // namespace trialmesh::bench
