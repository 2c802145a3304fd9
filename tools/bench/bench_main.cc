// trialmesh-bench: import rate and the four benchmark queries, side by side on the same
// generated LUNG-7 data, for trialmesh, an in-memory C++ floor, SQLite and DuckDB. Writes a
// markdown report (medians, ratios, peak memory of the trialmesh scan phase). See BENCHMARKS.md.
//
//   trialmesh-bench --rows 1000000,10000000 --runs 11 --threads 2 --workdir /tmp/x --out r.md
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tools/bench/engines.h"
#include "tools/bench/machine.h"

namespace trialmesh::bench {
namespace {

namespace fs = std::filesystem;

struct Flags {
  std::string loadAtStart;
  std::vector<uint64_t> rows = {1000000, 10000000};
  int runs = 11;
  unsigned threads = 2;
  std::string workdir = "/tmp/trialmesh-bench";
  std::string out;
  uint64_t seed = 1;
  uint32_t sites = 3;
  int importRuns = 3;
  int sqliteRuns = 0;  // 0 = --runs
  size_t cacheMb = 256;
  size_t smallCacheMb = 16;
  bool noSqlite = false;
  bool noDuckdb = false;
  std::string duckdbDir = TRIALMESH_SOURCE_DIR "/tools/bench/duckdb";
  std::string scanOnly;  // internal: run the trialmesh queries on this store and report RSS
  std::string commandLine;
};

double msSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

void progress(const std::string& line) { std::cerr << "[bench] " << line << std::endl; }

std::string fmtMs(double ms) {
  if (ms < 0) return "n/a";
  char buf[32];
  std::snprintf(buf, sizeof buf, ms < 10 ? "%.2f" : ms < 100 ? "%.1f" : "%.0f", ms);
  return buf;
}

std::string fmtRatio(double ours, double other) {
  if (ours < 0 || other <= 0) return "n/a";
  char buf[32];
  const double ratio = ours / other;
  std::snprintf(buf, sizeof buf, ratio < 0.1 ? "%.3f" : "%.2f", ratio);
  return buf;
}

std::string fmtCount(double v) {
  char buf[32];
  if (v >= 1e6) {
    std::snprintf(buf, sizeof buf, "%.2fM", v / 1e6);
  } else if (v >= 1e3) {
    std::snprintf(buf, sizeof buf, "%.0fk", v / 1e3);
  } else {
    std::snprintf(buf, sizeof buf, "%.0f", v);
  }
  return buf;
}

std::string fmtMiB(double bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.0f MiB", bytes / (1024.0 * 1024.0));
  return buf;
}

std::string loadAverage() {
  std::ifstream in("/proc/loadavg");
  double one = -1, five = -1;
  in >> one >> five;
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.2f (1 min) / %.2f (5 min)", one, five);
  return buf;
}

std::string today() {
  std::time_t t = std::time(nullptr);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M UTC", std::gmtime(&t));
  return buf;
}

uint64_t dirBytes(const fs::path& dir) {
  uint64_t total = 0;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec);
       it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (!ec && it->is_regular_file(ec)) total += it->file_size(ec);
  }
  return total;
}

// Internal mode: the scan phase alone in a fresh process, so its peak RSS is the scan's own.
int scanOnlyMain(const Flags& f) {
  auto r = trialmeshQueries(f.scanOnly, f.cacheMb << 20, f.runs, f.threads);
  if (!r.isOk()) {
    std::cerr << r.status().toString() << "\n";
    return 1;
  }
  struct rusage usage {};
  ::getrusage(RUSAGE_SELF, &usage);
  std::printf("peak_rss_kb %ld", usage.ru_maxrss);
  for (int q = 0; q < kQueryCount; ++q) std::printf(" %.4f", r->warmMs[q]);
  std::printf("\n");
  return 0;
}

struct ScanMemory {
  size_t cacheMb = 0;
  long peakRssKb = -1;
  QueryTimes warmMs{-1, -1, -1, -1};
};

ScanMemory measureScanMemory(const Flags& f, const std::string& storeDir, size_t cacheMb) {
  ScanMemory m;
  m.cacheMb = cacheMb;
  char self[4096];
  const ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return m;
  self[n] = '\0';
  const std::string command = std::string("'") + self + "' --scan-only '" + storeDir +
                              "' --cache-mb " + std::to_string(cacheMb) + " --runs " +
                              std::to_string(f.runs) + " --threads " + std::to_string(f.threads);
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return m;
  char line[512] = {};
  if (std::fgets(line, sizeof line, pipe) != nullptr) {
    std::sscanf(line, "peak_rss_kb %ld %lf %lf %lf %lf", &m.peakRssKb, &m.warmMs[0], &m.warmMs[1],
                &m.warmMs[2], &m.warmMs[3]);
  }
  ::pclose(pipe);
  return m;
}

struct SizeResult {
  uint64_t rows = 0;
  uint64_t csvBytes = 0;
  uint64_t storeBytes = 0;
  double genMs = 0;
  double importMs = -1;
  std::string importError;
  TrialmeshQueryResult trialmesh;
  bool trialmeshOk = false;
  std::string trialmeshError;
  QueryTimes floor1{-1, -1, -1, -1}, floorN{-1, -1, -1, -1};
  std::array<Answer, kQueryCount> floorAnswers;
  double sqliteLoadMs = -1;
  QueryTimes sqliteMs{-1, -1, -1, -1};
  std::string sqliteNote;
  std::array<Answer, kQueryCount> sqliteAnswers;
  DuckDbResult duck;
  std::vector<ScanMemory> memory;
  std::vector<std::string> mismatches;
};

// Median of `runs` timed calls, after one untimed warm-up call unless the caller already made
// one.
template <typename Fn>
double medianMs(int runs, const Fn& fn, bool warmUp = true) {
  if (warmUp) fn();
  std::vector<double> times;
  for (int i = 0; i < runs; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    times.push_back(msSince(t0));
  }
  return median(times);
}

SizeResult benchSize(const Flags& f, uint64_t rows) {
  SizeResult r;
  r.rows = rows;
  const gen::GenOptions options{.rows = rows, .seed = f.seed, .sites = f.sites};
  const fs::path dir = fs::path(f.workdir) / ("rows-" + std::to_string(rows));
  fs::create_directories(dir);
  const std::string csv = (dir / "lung7.csv").string();
  const std::string dict = (dir / "dictionary.toml").string();
  const std::string store = (dir / "store").string();

  progress("generating " + std::to_string(rows) + " rows into " + csv);
  auto t0 = std::chrono::steady_clock::now();
  Status s = gen::writeTrialDataset(options, csv, dict);
  r.genMs = msSince(t0);
  if (!s.isOk()) {
    r.importError = s.toString();
    return r;
  }
  r.csvBytes = fs::file_size(csv);

  // --- trialmesh import --------------------------------------------------------------------
  std::vector<double> importTimes;
  for (int i = 0; i < f.importRuns; ++i) {
    progress("trialmesh import " + std::to_string(i + 1) + "/" + std::to_string(f.importRuns));
    auto ms = trialmeshImport(store, csv, dict);
    if (!ms.isOk()) {
      r.importError = ms.status().toString();
      break;
    }
    importTimes.push_back(*ms);
  }
  if (!importTimes.empty()) r.importMs = median(importTimes);
  r.storeBytes = dirBytes(store);

  // --- trialmesh queries -------------------------------------------------------------------
  if (r.importError.empty()) {
    progress("trialmesh queries");
    auto q = trialmeshQueries(store, f.cacheMb << 20, f.runs, f.threads);
    if (q.isOk()) {
      r.trialmesh = *q;
      r.trialmeshOk = true;
    } else {
      r.trialmeshError = q.status().toString();
    }
    progress("trialmesh scan memory");
    for (size_t mb : {f.smallCacheMb, f.cacheMb})
      r.memory.push_back(measureScanMemory(f, store, mb));
  }

  // --- floor -------------------------------------------------------------------------------
  progress("floor");
  {
    const FloorColumns columns = makeFloorColumns(options);
    for (int q = 0; q < kQueryCount; ++q) {
      r.floorAnswers[q] = runFloorQuery(columns, q, 1);
      r.floor1[q] = medianMs(f.runs, [&] { runFloorQuery(columns, q, 1); });
      r.floorN[q] = medianMs(f.runs, [&] { runFloorQuery(columns, q, f.threads); });
    }
  }

  // --- SQLite ------------------------------------------------------------------------------
  if (!f.noSqlite) {
    progress("SQLite load");
    SqliteBench sqlite;
    t0 = std::chrono::steady_clock::now();
    s = sqlite.load(options);
    r.sqliteLoadMs = msSince(t0);
    const int runs = f.sqliteRuns > 0 ? f.sqliteRuns : f.runs;
    for (int q = 0; q < kQueryCount && s.isOk(); ++q) {
      progress(std::string("SQLite ") + benchQueries()[q].id);
      auto a = sqlite.run(q);
      if (!a.isOk()) {
        s = a.status();
        break;
      }
      r.sqliteAnswers[q] = *a;
      // The run above that produced the answer was the warm-up.
      r.sqliteMs[q] = medianMs(
          runs, [&] { (void)sqlite.run(q); }, false);
    }
    if (!s.isOk()) r.sqliteNote = s.toString();
  } else {
    r.sqliteNote = "skipped (--no-sqlite)";
  }

  // --- DuckDB ------------------------------------------------------------------------------
  if (!f.noDuckdb) {
    progress("DuckDB (node " + f.duckdbDir + "/bench.mjs)");
    r.duck = runDuckDb(f.duckdbDir, csv, f.runs, f.threads);
  } else {
    r.duck.unavailableReason = "skipped (--no-duckdb)";
  }

  // --- every engine must agree with the floor ----------------------------------------------
  for (int q = 0; q < kQueryCount; ++q) {
    const auto check = [&](const char* engine, const Answer& a) {
      const std::string d = compareAnswers(r.floorAnswers[q], a);
      if (!d.empty())
        r.mismatches.push_back(std::string(engine) + " " + benchQueries()[q].id + ": " + d);
    };
    if (r.trialmeshOk) check("trialmesh", r.trialmesh.answers[q]);
    if (r.sqliteMs[q] >= 0) check("SQLite", r.sqliteAnswers[q]);
    if (r.duck.available) check("DuckDB", r.duck.answers[q]);
  }
  return r;
}

std::string report(const Flags& f, const std::vector<SizeResult>& results) {
  std::ostringstream o;
  o << "## trialmesh-bench results, " << today() << "\n\n";
  o << "Command: `" << f.commandLine << "`\n\n" << machineDescription(TRIALMESH_BUILD_TYPE);
  o << "- SQLite " << SqliteBench::version();
  for (const auto& r : results) {
    if (r.duck.available) {
      o << ", DuckDB " << r.duck.version << " (@duckdb/node-api, Node.js)";
      break;
    }
  }
  o << "\n- Load average at start: " << f.loadAtStart << "; at end: " << loadAverage()
    << " (other work on the machine slows every engine alike and adds noise)";
  o << "\n- Query threads: " << f.threads << " (trialmesh, floor \"" << f.threads
    << "T\", DuckDB); SQLite is single-threaded. Medians of " << f.runs
    << " runs after one warm-up run.\n\n";

  for (const auto& r : results) {
    o << "### " << fmtCount(static_cast<double>(r.rows)) << " rows (CSV "
      << fmtMiB(static_cast<double>(r.csvBytes)) << ", store on disk "
      << fmtMiB(static_cast<double>(r.storeBytes)) << ")\n\n";
    o << "| Load | what | time (s) | rows/s |\n|---|---|---:|---:|\n";
    const auto loadRow = [&](const std::string& name, const std::string& what, double ms) {
      o << "| " << name << " | " << what << " | ";
      if (ms < 0) {
        o << "n/a | n/a |\n";
      } else {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.2f", ms / 1000);
        o << buf << " | " << fmtCount(static_cast<double>(r.rows) / (ms / 1000)) << " |\n";
      }
    };
    loadRow("trialmesh",
            "`Store::importCsv`: CSV parsed, validated against the dictionary, "
            "written to RocksDB (median of " +
                std::to_string(f.importRuns) + ")",
            r.importMs);
    loadRow("DuckDB", "`CREATE TABLE AS SELECT ... FROM read_csv(...)` in memory (1 run)",
            r.duck.available ? r.duck.loadMs : -1);
    loadRow("SQLite", "prepared INSERTs of the generated rows (no CSV parsing), `:memory:` (1 run)",
            r.sqliteLoadMs);
    loadRow("generator", "`tm_gen` writing the CSV", r.genMs);
    if (!r.importError.empty()) o << "\ntrialmesh import failed: " << r.importError << "\n";
    o << "\n";

    o << "| Query | trialmesh warm | trialmesh cold | floor 1T | floor " << f.threads
      << "T | SQLite | DuckDB VARCHAR | DuckDB ENUM | ours/DuckDB | ours/floor " << f.threads
      << "T | ours/SQLite |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    for (int q = 0; q < kQueryCount; ++q) {
      const double ours = r.trialmeshOk ? r.trialmesh.warmMs[q] : -1;
      double duckBest = -1;
      if (r.duck.available) duckBest = std::min(r.duck.varcharMs[q], r.duck.enumMs[q]);
      o << "| " << benchQueries()[q].id << " `" << benchQueries()[q].trialmesh << "` | "
        << fmtMs(ours) << " | " << fmtMs(r.trialmeshOk ? r.trialmesh.coldMs[q] : -1) << " | "
        << fmtMs(r.floor1[q]) << " | " << fmtMs(r.floorN[q]) << " | " << fmtMs(r.sqliteMs[q])
        << " | " << fmtMs(r.duck.available ? r.duck.varcharMs[q] : -1) << " | "
        << fmtMs(r.duck.available ? r.duck.enumMs[q] : -1) << " | " << fmtRatio(ours, duckBest)
        << " | " << fmtRatio(ours, r.floorN[q]) << " | " << fmtRatio(ours, r.sqliteMs[q]) << " |\n";
    }
    o << "\nTimes in ms. ours/DuckDB uses the faster DuckDB layout per query. ";
    if (!r.trialmeshOk) o << "trialmesh queries failed: " << r.trialmeshError << ". ";
    if (!r.duck.available) o << "DuckDB: " << r.duck.unavailableReason << ". ";
    if (!r.sqliteNote.empty()) o << "SQLite: " << r.sqliteNote << ". ";
    if (r.mismatches.empty()) {
      o << "All engines returned the same results as the floor.\n\n";
    } else {
      o << "\n\n**Result mismatches:**\n";
      for (const auto& m : r.mismatches) o << "- " << m << "\n";
      o << "\n";
    }

    if (!r.memory.empty()) {
      o << "| trialmesh scan phase (own process, 4 queries x " << f.runs
        << " runs) | peak RSS | warm ms Q1/Q2/Q3/Q4 |\n|---|---:|---|\n";
      for (const auto& m : r.memory) {
        o << "| chunk cache " << m.cacheMb << " MiB | "
          << (m.peakRssKb < 0 ? std::string("n/a")
                              : fmtMiB(static_cast<double>(m.peakRssKb) * 1024))
          << " | ";
        for (int q = 0; q < kQueryCount; ++q) o << (q ? " / " : "") << fmtMs(m.warmMs[q]);
        o << " |\n";
      }
      o << "\n";
    }
  }
  return o.str();
}

std::vector<uint64_t> parseRows(const std::string& text) {
  std::vector<uint64_t> rows;
  std::stringstream s(text);
  std::string item;
  while (std::getline(s, item, ',')) rows.push_back(std::stoull(item));
  return rows;
}

}  // namespace
}  // namespace trialmesh::bench

int main(int argc, char** argv) {
  using namespace trialmesh::bench;
  Flags f;
  for (int i = 0; i < argc; ++i)
    f.commandLine += (i ? " " : "") + std::string(i ? argv[i] : "trialmesh-bench");
  CLI::App app{"trialmesh-bench: trialmesh vs an in-memory floor, SQLite and DuckDB"};
  std::string rows = "1000000,10000000";
  app.add_option("--rows", rows, "Row counts, comma-separated")->capture_default_str();
  app.add_option("--runs", f.runs, "Timed runs per query (median reported)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--threads", f.threads, "Query threads")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--workdir", f.workdir, "Folder for the CSV and the store (kept)")
      ->capture_default_str();
  app.add_option("--out", f.out, "Also write the markdown report to this file");
  app.add_option("--seed", f.seed, "Generator seed")->capture_default_str();
  app.add_option("--sites", f.sites, "Generator sites")->capture_default_str();
  app.add_option("--import-runs", f.importRuns, "trialmesh imports per size (median)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--sqlite-runs", f.sqliteRuns, "SQLite runs per query (default: --runs)");
  app.add_option("--cache-mb", f.cacheMb, "trialmesh chunk cache for the main runs")
      ->capture_default_str();
  app.add_option("--small-cache-mb", f.smallCacheMb, "Chunk cache of the bounded-memory run")
      ->capture_default_str();
  app.add_flag("--no-sqlite", f.noSqlite, "Skip SQLite");
  app.add_flag("--no-duckdb", f.noDuckdb, "Skip DuckDB");
  app.add_option("--duckdb-dir", f.duckdbDir, "Folder of bench.mjs and node_modules")
      ->capture_default_str();
  app.add_option("--scan-only", f.scanOnly, "Internal: run the trialmesh queries on this store")
      ->group("");
  CLI11_PARSE(app, argc, argv);
  if (!f.scanOnly.empty()) return scanOnlyMain(f);
  try {
    f.rows = parseRows(rows);
  } catch (const std::exception&) {
    std::cerr << "--rows '" << rows
              << "': expected comma-separated row counts, e.g. 1000000,10000000\n";
    return 2;
  }
  f.loadAtStart = loadAverage();
  std::vector<SizeResult> results;
  for (uint64_t n : f.rows) results.push_back(benchSize(f, n));
  const std::string text = report(f, results);
  std::cout << text;
  if (!f.out.empty()) {
    std::ofstream out(f.out);
    out << text;
    if (!out) {
      std::cerr << "cannot write '" << f.out << "'\n";
      return 1;
    }
  }
  bool failed = false;
  for (const auto& r : results) failed = failed || !r.mismatches.empty() || !r.trialmeshOk;
  return failed ? 1 : 0;
}
