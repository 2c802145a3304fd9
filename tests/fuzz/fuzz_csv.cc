// CSV reader (storage/csv_reader.cc). Two paths must agree: the input read with the smallest
// block size (records straddle every refill) and in one block give the same records, lines
// and verdicts, record by record.
#include <string>
#include <vector>

#include "fuzz_check.h"
#include "storage/csv_reader.h"

namespace {

using namespace trialmesh;

struct Step {
  bool ok;
  bool more;
  std::string error;
  std::vector<std::string> fields;
  uint64_t line;
};

std::vector<Step> readAll(std::string text, size_t blockBytes, bool uniform) {
  storage::CsvOptions options;
  options.blockBytes = blockBytes;
  options.requireUniformFieldCount = uniform;
  auto reader = storage::CsvReader::fromString(std::move(text), "fuzz.csv", options);
  std::vector<Step> steps;
  for (int i = 0; i < 100000; ++i) {  // recoverable errors skip a record: bounded anyway
    auto r = reader->next();
    Step s{r.isOk(), r.isOk() && *r, r.isOk() ? "" : r.status().message(), {}, 0};
    if (s.ok && s.more) {
      for (auto f : reader->fields()) s.fields.emplace_back(f);
      s.line = reader->line();
    }
    steps.push_back(std::move(s));
    if ((s.ok && !s.more) || reader->failed()) break;
  }
  return steps;
}

bool same(const std::vector<Step>& a, const std::vector<Step>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].ok != b[i].ok || a[i].more != b[i].more || a[i].error != b[i].error ||
        a[i].fields != b[i].fields || a[i].line != b[i].line)
      return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0 || size > 64 * 1024) return 0;
  const bool uniform = data[0] & 1;
  std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
  auto small = readAll(text, 16, uniform);
  auto large = readAll(text, 1 << 20, uniform);
  FUZZ_CHECK(same(small, large), "16-byte blocks and one block read the same records");
  return 0;
}
