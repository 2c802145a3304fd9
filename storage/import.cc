// CSV import (protocol in docs/storage-format.md). Three threads share the work:
//  - the calling thread scans CSV records into batches of 8192 rows (field bytes copied into a
//    compact arena) and validates a share of the columns;
//  - a validation worker validates the other columns of the same batch meanwhile;
//  - a writer thread encodes finished 64K-row chunk sets and writes them to RocksDB.
// Each column's builder is touched by one thread only; batches are handed over under a mutex.
#include <rocksdb/write_batch.h>

#include <charconv>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <ctime>
#include <deque>
#include <functional>
#include <limits>
#include <optional>
#include <thread>
#include <unordered_map>

#include "storage/chunk_codec.h"
#include "storage/store_impl.h"

namespace trialmesh::storage {

namespace {

constexpr uint64_t kProgressEveryBytes = uint64_t{4} << 20;
constexpr size_t kLinearLevelLimit = 8;
constexpr size_t kQueueDepth = 2;

struct ChunkSet {
  uint32_t index = 0;
  std::vector<ColumnChunk> chunks;  // per variable
};

// A bounded hand-off between the parsing thread and the writer thread.
class ChunkQueue {
 public:
  void push(ChunkSet set) {
    std::unique_lock lock(mu_);
    notFull_.wait(lock, [&] { return items_.size() < kQueueDepth; });
    items_.push_back(std::move(set));
    notEmpty_.notify_one();
  }
  void close() {
    std::lock_guard lock(mu_);
    closed_ = true;
    notEmpty_.notify_one();
  }
  std::optional<ChunkSet> pop() {
    std::unique_lock lock(mu_);
    notEmpty_.wait(lock, [&] { return !items_.empty() || closed_; });
    if (items_.empty()) return std::nullopt;
    ChunkSet set = std::move(items_.front());
    items_.pop_front();
    notFull_.notify_one();
    return set;
  }

 private:
  std::mutex mu_;
  std::condition_variable notEmpty_, notFull_;
  std::deque<ChunkSet> items_;
  bool closed_ = false;
};

std::string formatNumber(double v) {
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof(buf), v);
  return std::string(buf, r.ptr);
}

// A value as shown in an error message: bounded length, control characters escaped.
std::string showValue(std::string_view v) {
  std::string out;
  const size_t limit = 60;
  for (size_t i = 0; i < v.size() && i < limit; ++i) {
    const char c = v[i];
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else {
      out += c;
    }
  }
  if (v.size() > limit) out += "...";
  return out;
}

// How one dictionary variable is read from its CSV field.
struct ColumnPlan {
  size_t field = 0;
  const Variable* var = nullptr;
  bool missingAllowed = false;
  bool naIsLevel = false;
  std::optional<double> min, max;
  int64_t imin = std::numeric_limits<int64_t>::min();
  int64_t imax = std::numeric_limits<int64_t>::max();
  std::vector<std::string_view> levels;  // small level sets: linear search
  std::unordered_map<std::string_view, uint32_t> levelMap;
  std::string label;  // "column 'AGE' (variable age)"
};

bool parseBool(std::string_view s, int64_t& out) {
  switch (s.size()) {
    case 1:
      if (s == "1" || s == "T" || s == "Y") return out = 1, true;
      if (s == "0" || s == "F" || s == "N") return out = 0, true;
      return false;
    case 2:
      return s == "no" && (out = 0, true);
    case 3:
      return s == "yes" && (out = 1, true);
    case 4:
      if (s == "true" || s == "TRUE" || s == "True") return out = 1, true;
      return false;
    case 5:
      if (s == "false" || s == "FALSE" || s == "False") return out = 0, true;
      return false;
    default:
      return false;
  }
}

// Decimal integer with optional sign. Up to 18 digits cannot overflow and take the fast path;
// longer inputs go through std::from_chars. Returns false for text that is not an integer;
// sets `overflow` when it is one but does not fit int64.
bool parseInt(std::string_view s, int64_t& out, bool& overflow) {
  overflow = false;
  size_t i = 0;
  bool negative = false;
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) {
    negative = s[0] == '-';
    i = 1;
  }
  const size_t digits = s.size() - i;
  if (digits == 0) return false;
  if (digits <= 18) {
    int64_t v = 0;
    for (; i < s.size(); ++i) {
      const unsigned d = static_cast<unsigned char>(s[i]) - '0';
      if (d > 9) return false;
      v = v * 10 + d;
    }
    out = negative ? -v : v;
    return true;
  }
  std::string_view t = s[0] == '+' ? s.substr(1) : s;
  auto r = std::from_chars(t.data(), t.data() + t.size(), out);
  if (r.ptr != t.data() + t.size()) return false;
  if (r.ec == std::errc::result_out_of_range) {
    overflow = true;
    return false;
  }
  return r.ec == std::errc();
}

std::string_view stripPlus(std::string_view s) {
  if (s.size() > 1 && s[0] == '+' && s[1] != '-' && s[1] != '+') s.remove_prefix(1);
  return s;
}

constexpr uint32_t kBatchRows = 8192;
static_assert(kChunkRows % kBatchRows == 0, "batches must tile chunks");

struct ErrorEntry {
  uint64_t line;
  size_t order;  // column index (SIZE_MAX for record-level errors), to sort within a line
  std::string message;
};

// Errors found by one thread, in line order; capped, but every error is counted.
struct ErrorLog {
  size_t cap = 20;
  uint64_t count = 0;
  std::vector<ErrorEntry> entries;
  void add(uint64_t line, size_t order, std::string message) {
    ++count;
    if (entries.size() < cap) entries.push_back({line, order, std::move(message)});
  }
};

// Scanned records of one batch: the needed fields' bytes back to back.
struct Batch {
  uint32_t rows = 0;
  std::string bytes;
  std::vector<size_t> ends;     // rows * columns end offsets into bytes
  std::vector<uint64_t> lines;  // physical line of each record
  void clear() {
    rows = 0;
    bytes.clear();
    ends.clear();
    lines.clear();
  }
  std::string_view field(uint32_t row, size_t column, size_t columns) const {
    const size_t i = size_t{row} * columns + column;
    const size_t begin = i ? ends[i - 1] : 0;
    return std::string_view(bytes.data() + begin, ends[i] - begin);
  }
};

// Runs one validation job at a time on its own thread.
class ValidationWorker {
 public:
  explicit ValidationWorker(std::function<void(const Batch&)> job)
      : job_(std::move(job)), thread_([this] { loop(); }) {}
  ~ValidationWorker() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  void submit(const Batch* batch) {
    std::lock_guard lock(mu_);
    batch_ = batch;
    cv_.notify_all();
  }
  void wait() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return batch_ == nullptr; });
  }

 private:
  void loop() {
    std::unique_lock lock(mu_);
    for (;;) {
      cv_.wait(lock, [&] { return batch_ != nullptr || stop_; });
      if (batch_ == nullptr) return;  // stop requested and no job pending
      const Batch* batch = batch_;
      lock.unlock();
      job_(*batch);
      lock.lock();
      batch_ = nullptr;
      cv_.notify_all();
    }
  }

  std::function<void(const Batch&)> job_;
  std::mutex mu_;
  std::condition_variable cv_;
  const Batch* batch_ = nullptr;
  bool stop_ = false;
  std::thread thread_;  // last: starts after the other members exist
};

class Importer {
 public:
  Importer(Store::Impl& impl, const std::string& dataset, const Dictionary& dict,
           const ImportOptions& options)
      : impl_(impl), dataset_(dataset), dict_(dict), options_(options) {
    maxErrors_ = std::max<size_t>(options.maxErrors, 1);
    for (auto& log : logs_) log.cap = maxErrors_;
  }

  Result<ImportReport> run(const std::string& csvPath);

 private:
  Status readHeader(CsvReader& reader);
  void assignLanes();
  // Scans up to kBatchRows records. Returns false once the input is exhausted or unreadable.
  bool scanBatch(CsvReader& reader, Batch& batch);
  // Validates the columns of `lane` (0: calling thread, 1: worker) for every row of `batch`.
  void validateLane(const Batch& batch, int lane);
  // Validates one value; appends it (or a placeholder after an error) to the builder.
  void cell(size_t column, std::string_view v, uint64_t line, ErrorLog& log);
  void valueError(size_t column, uint64_t line, std::string_view v, const std::string& rule,
                  ErrorLog& log) {
    ++log.count;
    if (log.entries.size() < log.cap) {
      log.entries.push_back({line, column,
                             source_ + ":" + std::to_string(line) + ": " + plans_[column].label +
                                 ": value '" + showValue(v) + "' " + rule});
    }
  }
  uint64_t errorCount() const { return logs_[0].count + logs_[1].count; }
  Status errorStatus() const;
  void writerLoop();
  void sendChunkSet();
  void discardVersion();

  Store::Impl& impl_;
  const std::string& dataset_;
  const Dictionary& dict_;
  const ImportOptions& options_;
  size_t maxErrors_;
  std::string source_;
  uint64_t version_ = 0;

  std::vector<ColumnPlan> plans_;
  std::vector<ColumnChunkBuilder> builders_;
  std::vector<size_t> lanes_[2];  // column indexes validated by each thread
  size_t maxField_ = 0;           // highest CSV field index a plan reads
  uint32_t chunkIndex_ = 0;
  uint64_t nextProgress_ = kProgressEveryBytes;

  ErrorLog logs_[2];

  ChunkQueue queue_;
  std::mutex writerMu_;
  Status writerStatus_;
  std::atomic<bool> writerFailed_{false};
};

Status Importer::errorStatus() const {
  std::vector<const ErrorEntry*> all;
  for (const auto& log : logs_) {
    for (const auto& e : log.entries) all.push_back(&e);
  }
  std::stable_sort(all.begin(), all.end(), [](const ErrorEntry* a, const ErrorEntry* b) {
    return a->line != b->line ? a->line < b->line : a->order < b->order;
  });
  if (all.size() > maxErrors_) all.resize(maxErrors_);
  const uint64_t count = errorCount();
  std::string msg = source_ + ": " + std::to_string(count) + (count == 1 ? " error" : " errors") +
                    "; dataset '" + dataset_ + "' was not changed";
  for (const auto* e : all) msg += "\n" + e->message;
  if (count > all.size()) {
    msg += "\n... and " + std::to_string(count - all.size()) + " more errors";
  }
  return Status::invalidArgument(msg);
}

// Splits the columns between the calling thread, which also scans the CSV, and the worker, by
// a rough per-type cost, so that both finish a batch at about the same time.
void Importer::assignLanes() {
  auto cost = [](VariableType t) {
    switch (t) {
      case VariableType::kReal:
        return 4;
      case VariableType::kDate:
        return 3;
      case VariableType::kInteger:
        return 2;
      case VariableType::kCategorical:
        return 2;
      case VariableType::kBoolean:
        return 1;
    }
    return 2;
  };
  int total = 0;
  for (const auto& p : plans_) total += cost(p.var->type);
  // Half of the validation cost each: the calling thread also scans, the worker competes with
  // the writer and RocksDB flush threads for the second core.
  const int workerShare = total / 2;
  int worker = 0;
  for (size_t i = 0; i < plans_.size(); ++i) {
    const int c = cost(plans_[i].var->type);
    if (worker + c <= workerShare) {
      lanes_[1].push_back(i);
      worker += c;
    } else {
      lanes_[0].push_back(i);
    }
  }
}

bool Importer::scanBatch(CsvReader& reader, Batch& batch) {
  batch.clear();
  while (batch.rows < kBatchRows) {
    auto more = reader.next();
    if (!more.isOk()) {
      logs_[0].add(reader.failed() ? UINT64_MAX : reader.line(), SIZE_MAX, more.status().message());
      if (reader.failed()) return false;
      continue;  // a ragged record: reported, skipped
    }
    if (!*more) return false;
    const auto& fields = reader.fields();
    if (fields.size() <= maxField_) {  // only possible when uniform field counts are not enforced
      logs_[0].add(reader.line(), SIZE_MAX,
                   source_ + ":" + std::to_string(reader.line()) + ": record has " +
                       std::to_string(fields.size()) + " fields but column " +
                       std::to_string(maxField_ + 1) + " is needed");
      continue;
    }
    for (const ColumnPlan& plan : plans_) {
      const std::string_view f = fields[plan.field];
      batch.bytes.append(f.data(), f.size());
      batch.ends.push_back(batch.bytes.size());
    }
    batch.lines.push_back(reader.line());
    ++batch.rows;
    if (options_.progress && reader.bytesConsumed() >= nextProgress_) {
      options_.progress(reader.bytesConsumed(), reader.totalBytes());
      nextProgress_ = reader.bytesConsumed() + kProgressEveryBytes;
    }
  }
  return true;
}

void Importer::validateLane(const Batch& batch, int lane) {
  const size_t columns = plans_.size();
  ErrorLog& log = logs_[lane];
  for (size_t column : lanes_[lane]) {
    for (uint32_t row = 0; row < batch.rows; ++row) {
      cell(column, batch.field(row, column, columns), batch.lines[row], log);
    }
  }
}

Status Importer::readHeader(CsvReader& reader) {
  auto first = reader.next();
  if (!first.isOk()) return first.status();
  if (!*first) {
    return Status::invalidArgument(source_ +
                                   ": the file is empty; expected a header line naming the "
                                   "columns");
  }
  std::vector<std::string> header(reader.fields().begin(), reader.fields().end());
  const uint64_t line = reader.line();
  std::vector<std::string> problems;
  for (const Variable& v : dict_.variables()) {
    std::vector<size_t> at;
    for (size_t i = 0; i < header.size(); ++i) {
      if (header[i] == v.csvColumn) at.push_back(i);
    }
    if (at.empty()) {
      problems.push_back(source_ + ":" + std::to_string(line) + ": the header has no column '" +
                         v.csvColumn + "' (variable " + v.name + ")");
      continue;
    }
    if (at.size() > 1) {
      std::string where;
      for (size_t i : at) where += (where.empty() ? "" : ", ") + std::to_string(i + 1);
      problems.push_back(source_ + ":" + std::to_string(line) + ": column '" + v.csvColumn +
                         "' (variable " + v.name + ") appears " + std::to_string(at.size()) +
                         " times in the header (fields " + where +
                         "); rename or remove the duplicates");
      continue;
    }
    ColumnPlan plan;
    plan.field = at[0];
    maxField_ = std::max(maxField_, at[0]);
    plan.var = &v;
    plan.missingAllowed = v.missingAllowed;
    plan.min = v.min;
    plan.max = v.max;
    if (v.type == VariableType::kInteger) {
      if (v.min) plan.imin = static_cast<int64_t>(*v.min);
      if (v.max) plan.imax = static_cast<int64_t>(*v.max);
    }
    if (v.type == VariableType::kCategorical) {
      for (uint32_t i = 0; i < v.levels.size(); ++i) {
        if (v.levels[i].code == "NA") plan.naIsLevel = true;
        if (v.levels.size() <= kLinearLevelLimit) {
          plan.levels.push_back(v.levels[i].code);
        } else {
          plan.levelMap.emplace(v.levels[i].code, i);
        }
      }
    }
    plan.label = "column '" + v.csvColumn + "' (variable " + v.name + ")";
    plans_.push_back(std::move(plan));
    builders_.emplace_back(physicalTypeOf(v));
  }
  if (!problems.empty()) {
    std::string found;
    for (const auto& h : header) found += (found.empty() ? "'" : ", '") + h + "'";
    std::string msg =
        source_ + ": the header does not match the dictionary of study '" + dict_.study() + "'";
    for (const auto& p : problems) msg += "\n" + p;
    msg += "\ncolumns found in the header: " + found;
    return Status::invalidArgument(msg);
  }
  return Status::ok();
}

void Importer::cell(size_t column, std::string_view v, uint64_t line, ErrorLog& log) {
  ColumnPlan& plan = plans_[column];
  ColumnChunkBuilder& builder = builders_[column];
  const Variable& var = *plan.var;
  const bool isNa = v.size() == 2 && v[0] == 'N' && v[1] == 'A';
  if (v.empty() || (isNa && !plan.naIsLevel)) {
    if (!plan.missingAllowed) {
      valueError(column, line, v,
                 "is missing (empty or NA), but the dictionary does not allow missing values "
                 "for this variable (missing = false)",
                 log);
    }
    builder.appendMissing();
    return;
  }
  switch (var.type) {
    case VariableType::kInteger: {
      int64_t x = 0;
      bool overflow = false;
      const bool ok = parseInt(v, x, overflow);
      if (overflow) {
        valueError(column, line, v, "is outside the 64-bit integer range", log);
      } else if (!ok) {
        valueError(column, line, v, "is not an integer", log);
      } else if (x < plan.imin) {
        valueError(column, line, v, "is below the allowed minimum " + formatNumber(*plan.min), log);
      } else if (x > plan.imax) {
        valueError(column, line, v, "is above the allowed maximum " + formatNumber(*plan.max), log);
      } else {
        builder.appendInt(x);
        return;
      }
      break;
    }
    case VariableType::kReal: {
      const std::string_view s = stripPlus(v);
      double x = 0;
      auto r = std::from_chars(s.data(), s.data() + s.size(), x);
      if (r.ec == std::errc::result_out_of_range && r.ptr == s.data() + s.size()) {
        valueError(column, line, v, "is outside the range of a double", log);
      } else if (r.ec != std::errc() || r.ptr != s.data() + s.size()) {
        valueError(column, line, v, "is not a number", log);
      } else if (!std::isfinite(x)) {
        valueError(column, line, v, "is not a finite number (NaN and infinity are not allowed)",
                   log);
      } else if (plan.min && x < *plan.min) {
        valueError(column, line, v, "is below the allowed minimum " + formatNumber(*plan.min), log);
      } else if (plan.max && x > *plan.max) {
        valueError(column, line, v, "is above the allowed maximum " + formatNumber(*plan.max), log);
      } else {
        builder.appendDouble(x);
        return;
      }
      break;
    }
    case VariableType::kCategorical: {
      if (plan.levelMap.empty()) {
        for (size_t i = 0; i < plan.levels.size(); ++i) {
          const std::string_view level = plan.levels[i];
          // Cheap first-byte test before the full comparison (levels are short).
          if (level.size() == v.size() && level[0] == v[0] &&
              std::memcmp(level.data(), v.data(), v.size()) == 0) {
            builder.appendInt(static_cast<int64_t>(i));
            return;
          }
        }
      } else if (auto it = plan.levelMap.find(v); it != plan.levelMap.end()) {
        builder.appendInt(it->second);
        return;
      }
      std::string list;
      for (size_t i = 0; i < var.levels.size() && i < 10; ++i) {
        list += (i ? ", " : "") + var.levels[i].code;
      }
      if (var.levels.size() > 10) list += ", ...";
      valueError(column, line, v, "is not one of the declared levels (" + list + ")", log);
      break;
    }
    case VariableType::kBoolean: {
      int64_t b = 0;
      if (parseBool(v, b)) {
        builder.appendInt(b);
        return;
      }
      valueError(column, line, v,
                 "is not a boolean (use 1/0, true/false, TRUE/FALSE, True/False, T/F, yes/no "
                 "or Y/N)",
                 log);
      break;
    }
    case VariableType::kDate: {
      auto days = parseIsoDate(v);
      if (!days) {
        valueError(column, line, v, "is not a valid date (YYYY-MM-DD, e.g. 2024-02-29)", log);
      } else if (plan.min && *days < *plan.min) {
        valueError(
            column, line, v,
            "is before the allowed minimum " + formatIsoDate(static_cast<int32_t>(*plan.min)), log);
      } else if (plan.max && *days > *plan.max) {
        valueError(column, line, v,
                   "is after the allowed maximum " + formatIsoDate(static_cast<int32_t>(*plan.max)),
                   log);
      } else {
        builder.appendInt(*days);
        return;
      }
      break;
    }
  }
  builder.appendMissing();  // placeholder; nothing is written once an error was seen
}

void Importer::writerLoop() {
  rocksdb::WriteOptions wo;
  // Chunk data skips the WAL: it becomes durable through the flush before the commit, and
  // data lost in a crash belongs to an uncommitted version anyway (cleaned at open).
  wo.disableWAL = true;
  std::string value;
  while (auto set = queue_.pop()) {
    if (writerFailed_) continue;  // drain so the parser never blocks
    rocksdb::WriteBatch batch;
    rocksdb::Status s;
    for (uint32_t var = 0; var < set->chunks.size() && s.ok(); ++var) {
      const std::string key = internal::dataKey(dataset_, version_, var, set->index);
      value.clear();
      internal::encodeChunk(set->chunks[var], key, value);
      s = batch.Put(impl_.data_, key, value);
    }
    if (s.ok()) s = impl_.db_->Write(wo, &batch);
    if (!s.ok()) {
      std::lock_guard lock(writerMu_);
      writerStatus_ = fromRocks(s, "store " + impl_.dir_ + ": writing dataset '" + dataset_ + "'");
      writerFailed_ = true;
    }
  }
}

void Importer::sendChunkSet() {
  ChunkSet set;
  set.index = chunkIndex_++;
  set.chunks.reserve(builders_.size());
  for (auto& b : builders_) set.chunks.push_back(b.finish());
  if (errorCount() == 0 && !writerFailed_) queue_.push(std::move(set));
}

void Importer::discardVersion() {
  rocksdb::WriteBatch batch;
  rocksdb::Status s = batch.DeleteRange(impl_.data_, internal::versionBegin(dataset_, version_),
                                        internal::versionBegin(dataset_, version_ + 1));
  // Best effort: if this fails the leftovers are removed at the next open.
  if (s.ok()) impl_.db_->Write(rocksdb::WriteOptions(), &batch).PermitUncheckedError();
}

Result<ImportReport> Importer::run(const std::string& csvPath) {
  const auto started = std::chrono::steady_clock::now();
  source_ = csvPath;
  TM_ASSIGN_OR_RETURN(auto reader, CsvReader::openFile(csvPath, options_.csv));
  TM_RETURN_IF_ERROR(readHeader(*reader));

  // The previous committed version, if any (imports of this dataset are exclusive).
  std::optional<internal::DatasetRecord> previous;
  {
    auto rec = impl_.readRecord(dataset_, nullptr);
    if (rec.isOk()) {
      previous = std::move(rec).value();
    } else if (rec.status().code() != StatusCode::kNotFound) {
      return rec.status();
    }
  }
  version_ = impl_.allocateVersion();
  assignLanes();
  std::thread writer([this] { writerLoop(); });

  uint64_t rows = 0;
  const uint64_t total = reader->totalBytes();
  if (options_.progress) options_.progress(0, total);
  {
    ValidationWorker worker([this](const Batch& batch) { validateLane(batch, 1); });
    Batch batches[2];
    bool more = scanBatch(*reader, batches[0]);
    uint32_t inChunk = 0;
    for (int cur = 0; batches[cur].rows > 0; cur ^= 1) {
      const Batch& batch = batches[cur];
      worker.submit(&batch);
      validateLane(batch, 0);
      // Scan the next batch while the worker finishes this one.
      const bool nextMore = more && !writerFailed_ && scanBatch(*reader, batches[cur ^ 1]);
      if (!more || writerFailed_) batches[cur ^ 1].clear();
      worker.wait();
      rows += batch.rows;
      inChunk += batch.rows;
      if (inChunk == kChunkRows) {
        inChunk = 0;
        sendChunkSet();
      }
      more = nextMore;
    }
    if (inChunk > 0) sendChunkSet();
  }
  queue_.close();
  writer.join();

  if (errorCount() > 0) {
    discardVersion();
    return errorStatus();
  }
  if (writerFailed_) {
    discardVersion();
    std::lock_guard lock(writerMu_);
    return writerStatus_;
  }
  const std::string ctx = "store " + impl_.dir_ + ": committing dataset '" + dataset_ + "'";
  // Make the chunk data durable before the commit record can be.
  rocksdb::FlushOptions fo;
  fo.wait = true;
  fo.allow_write_stall = true;
  if (Status s = fromRocks(impl_.db_->Flush(fo, impl_.data_), ctx); !s.isOk()) {
    discardVersion();
    return s;
  }

  internal::DatasetRecord record;
  record.info.name = dataset_;
  record.info.study = dict_.study();
  record.info.dictionaryHash = dict_.hashHex();
  record.info.sourceFile = csvPath;
  record.info.version = version_;
  record.info.rows = rows;
  record.info.importedAtUnixSeconds = static_cast<int64_t>(std::time(nullptr));
  record.dictionaryToml = dict_.toToml();
  std::string seq;
  for (int s = 56; s >= 0; s -= 8) seq.push_back(static_cast<char>((version_ >> s) & 0xFF));

  rocksdb::WriteBatch commit;
  rocksdb::Status s = commit.Put(impl_.meta_, internal::datasetRecordKey(dataset_),
                                 internal::encodeDatasetRecord(record));
  if (s.ok()) s = commit.Put(impl_.meta_, std::string(internal::kSequenceKey), seq);
  rocksdb::WriteOptions sync;
  sync.sync = true;
  if (s.ok()) s = impl_.db_->Write(sync, &commit);
  if (!s.ok()) {
    discardVersion();
    return fromRocks(s, ctx);
  }
  // The old version stays readable through readers' snapshots; its keys go now. If this is
  // lost in a crash, the next open removes them.
  if (previous) {
    rocksdb::WriteBatch cleanup;
    if (cleanup
            .DeleteRange(impl_.data_, internal::versionBegin(dataset_, previous->info.version),
                         internal::versionBegin(dataset_, previous->info.version + 1))
            .ok()) {
      impl_.db_->Write(rocksdb::WriteOptions(), &cleanup).PermitUncheckedError();
    }
  }
  if (options_.progress) options_.progress(total ? total : reader->bytesConsumed(), total);
  ImportReport report;
  report.rows = rows;
  report.version = version_;
  report.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return report;
}

}  // namespace

Result<ImportReport> Store::Impl::importCsv(const std::string& dataset, const Dictionary& dict,
                                            const std::string& csvPath,
                                            const ImportOptions& options) {
  Importer importer(*this, dataset, dict, options);
  return importer.run(csvPath);
}

}  // namespace trialmesh::storage
