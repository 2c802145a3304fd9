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

std::vector<Step> readAll(std::string text, size_t blockBytes, bool uniform,
                          const storage::CsvOptions& base) {
  storage::CsvOptions options = base;
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
  // The first byte picks the settings: bit 0 the field-count check, bits 1-2 the delimiter,
  // bits 3-4 the encoding (transcoding must not depend on where blocks end either).
  const bool uniform = data[0] & 1;
  static constexpr char kDelimiters[] = {',', ';', '\t', '|'};
  static constexpr storage::CsvEncoding kEncodings[] = {
      storage::CsvEncoding::kUtf8, storage::CsvEncoding::kLatin1,
      storage::CsvEncoding::kWindows1252, storage::CsvEncoding::kGb18030};
  storage::CsvOptions options;
  options.delimiter = kDelimiters[(data[0] >> 1) & 3];
  options.encoding = kEncodings[(data[0] >> 3) & 3];
  std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
  auto small = readAll(text, 16, uniform, options);
  auto large = readAll(text, 1 << 20, uniform, options);
  FUZZ_CHECK(same(small, large), "16-byte blocks and one block read the same records");
  return 0;
}
