// Test helper for crash_test.cc: imports a CSV into a store and reports progress on stdout, so
// the parent can SIGKILL it mid-import.
//   storage_import_child <storeDir> <dataset> <dictionary.toml> <csv>
#include <cstdio>

#include "storage/store.h"

using namespace trialmesh::storage;

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: %s <storeDir> <dataset> <dictionary.toml> <csv>\n", argv[0]);
    return 2;
  }
  auto dict = Dictionary::loadFile(argv[3]);
  if (!dict.isOk()) return std::fprintf(stderr, "%s\n", dict.status().toString().c_str()), 1;
  auto store = Store::open(argv[1]);
  if (!store.isOk()) return std::fprintf(stderr, "%s\n", store.status().toString().c_str()), 1;
  std::printf("opened\n");
  std::fflush(stdout);
  ImportOptions options;
  options.progress = [](uint64_t done, uint64_t total) {
    std::printf("progress %llu %llu\n", static_cast<unsigned long long>(done),
                static_cast<unsigned long long>(total));
    std::fflush(stdout);
  };
  auto report = (*store)->importCsv(argv[2], *dict, argv[4], options);
  if (!report.isOk()) return std::fprintf(stderr, "%s\n", report.status().toString().c_str()), 1;
  std::printf("done %llu\n", static_cast<unsigned long long>(report->rows));
  return 0;
}
