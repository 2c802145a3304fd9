// Measures CSV import and column scan speed on generated trial data (not a test; run by hand):
//   storage_import_bench [rows] [workdir]
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>

#include "storage/store.h"
#include "test_data.h"

using namespace trialmesh::storage;

int main(int argc, char** argv) {
  const uint64_t rows = argc > 1 ? std::stoull(argv[1]) : 1000000;
  const std::string dir = argc > 2 ? argv[2] : "/tmp/tm_import_bench";
  const std::string csv = dir + "/trial.csv";
  // Reuse a CSV generated earlier with the same row count (saves time when profiling).
  const bool reuse = std::filesystem::exists(dir + "/rows-" + std::to_string(rows));
  std::filesystem::remove_all(dir + "/store");
  if (!reuse) {
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    if (!testing::writeTrialCsv(csv, rows)) return std::fprintf(stderr, "write failed\n"), 1;
    std::FILE* marker = std::fopen((dir + "/rows-" + std::to_string(rows)).c_str(), "w");
    if (marker) std::fclose(marker);
  }
  auto dict = Dictionary::parseToml(testing::trialDictionaryToml(), "bench.toml");
  if (!dict.isOk()) return std::fprintf(stderr, "%s\n", dict.status().toString().c_str()), 1;
  auto store = Store::open(dir + "/store");
  if (!store.isOk()) return std::fprintf(stderr, "%s\n", store.status().toString().c_str()), 1;
  auto report = (*store)->importCsv("bench", *dict, csv);
  if (!report.isOk()) return std::fprintf(stderr, "%s\n", report.status().toString().c_str()), 1;
  std::printf("import: %llu rows, %.3f s, %.0f rows/s, %.1f MB CSV\n",
              static_cast<unsigned long long>(report->rows), report->seconds,
              report->rows / report->seconds, std::filesystem::file_size(csv) / 1e6);
  auto ds = (*store)->openDataset("bench");
  if (!ds.isOk()) return 1;
  for (int pass = 0; pass < 2; ++pass) {
    for (size_t var : {size_t{4}, size_t{2}}) {
      auto t0 = std::chrono::steady_clock::now();
      double sum = 0;
      for (uint32_t c = 0; c < (*ds)->chunkCount(); ++c) {
        auto chunk = (*ds)->column(var, c);
        if (!chunk.isOk())
          return std::fprintf(stderr, "%s\n", chunk.status().toString().c_str()), 1;
        for (uint32_t r = 0; r < (*chunk)->rows; ++r) sum += (*chunk)->valueAsDouble(r);
      }
      double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::printf("%s scan of '%s': %.4f s (sum %.1f)\n", pass ? "warm" : "cold",
                  (*ds)->dictionary().variable(var).name.c_str(), s, sum);
    }
  }
  std::uintmax_t bytes = 0;
  for (auto& e : std::filesystem::recursive_directory_iterator(dir + "/store")) {
    if (e.is_regular_file()) bytes += e.file_size();
  }
  std::printf("store size: %.1f MB\n", bytes / 1e6);
  return 0;
}
