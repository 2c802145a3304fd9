// CSV import (protocol in docs/storage-format.md). Three threads share the work:
//  - the calling thread scans CSV records into batches of 8192 rows (field bytes copied into a
//    compact arena) and validates a share of the columns;
//  - a validation worker validates the other columns of the same batch meanwhile;
//  - a writer thread encodes finished 64K-row chunk sets and writes them to RocksDB.
// Each column's open chunk is touched by one thread only; batches are handed over under a mutex.
#include <rocksdb/sst_file_writer.h>
#include <rocksdb/write_batch.h>

#include <charconv>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <ctime>
#include <deque>
#include <filesystem>
#include <functional>
#include <limits>
#include <optional>
#include <thread>
#include <unordered_map>

#include "storage/cell_text.h"
#include "storage/chunk_codec.h"
#include "storage/column_out.h"
#include "storage/store_impl.h"

namespace trialmesh::storage {

namespace {

using namespace detail;

constexpr uint64_t kProgressEveryBytes = uint64_t{4} << 20;
constexpr size_t kLinearLevelLimit = 8;
constexpr size_t kQueueDepth = 2;
// Records up to this size are copied into a batch whole (one memcpy); longer ones field by
// field, so that large ignored columns do not inflate batch memory.
constexpr size_t kCopyWholeRecordBytes = 512;

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
  // Identifier columns: each id seen so far and the line it was first seen on. Only the
  // column's validation lane touches it, in row order.
  bool identifier = false;
  std::unordered_map<std::string, uint64_t> seenIds;
  uint64_t duplicates = 0;
  std::vector<std::pair<uint64_t, std::string>> duplicateWarnings;  // (line, message), capped
};

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

// Scanned records of one batch: each record's bytes (from its first to its last field) back to
// back, and where each needed field lies in them.
struct Batch {
  uint32_t rows = 0;
  uint32_t firstRow = 0;  // row of the current chunk where this batch starts
  std::string bytes;
  std::vector<size_t> spans;    // per row and column: begin, end offsets into bytes
  std::vector<uint64_t> lines;  // physical line of each record
  void clear() {
    rows = 0;
    bytes.clear();
    lines.clear();
  }
  std::string_view field(uint32_t row, size_t column, size_t columns) const {
    const size_t i = 2 * (size_t{row} * columns + column);
    return std::string_view(bytes.data() + spans[i], spans[i + 1] - spans[i]);
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
  // Validates the values of one column of `batch` (fast paths inline, the rest through cell).
  template <typename T>
  void validateColumn(const Batch& batch, size_t column, ErrorLog& log);
  // Validates one value; stores it (or a missing placeholder after an error) at `row` of the
  // column's open chunk.
  void cell(size_t column, uint32_t row, std::string_view v, uint64_t line, ErrorLog& log);
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
  void sendChunkSet(uint32_t rows);
  void discardVersion();
  // Writer thread: appends one chunk set to the per-variable SST files (opened on first use).
  rocksdb::Status writeChunkSet(const ChunkSet& set);
  // Removes this import's temporary SST files (after a failure, or leftovers after ingestion).
  void removeTempFiles();

  Store::Impl& impl_;
  const std::string& dataset_;
  const Dictionary& dict_;
  const ImportOptions& options_;
  size_t maxErrors_;
  std::string source_;
  uint64_t version_ = 0;

  std::vector<ColumnPlan> plans_;
  std::vector<ColumnOut> outs_;   // the open chunk of each column
  std::vector<size_t> lanes_[2];  // column indexes validated by each thread
  size_t maxField_ = 0;           // highest CSV field index a plan reads
  uint32_t chunkIndex_ = 0;
  uint64_t nextProgress_ = kProgressEveryBytes;

  ErrorLog logs_[2];

  ChunkQueue queue_;
  // One SST file per variable: chunk sets arrive in chunk order, and a variable's keys sort by
  // chunk, so each file is written in key order and the files' key ranges do not overlap.
  std::string tempDir_;
  std::vector<std::string> sstPaths_;
  std::vector<std::unique_ptr<rocksdb::SstFileWriter>> sstWriters_;
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
      case VariableType::kIdentifier:
        return 4;  // a hash-table insert per row
    }
    return 2;
  };
  int total = 0;
  for (const auto& p : plans_) total += cost(p.var->type);
  // Measured with callgrind (200k generated rows): scanning costs about as much as validating
  // all columns, and the writer (encode, SST build, checksums) much less. With the scan on
  // the calling thread and the writer sharing the other core with the worker, giving the worker
  // ~70% of the validation balances the two cores.
  const int workerShare = total * 7 / 10;
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
    const size_t columns = plans_.size();
    if (batch.spans.size() < size_t{kBatchRows} * columns * 2) {
      batch.spans.resize(size_t{kBatchRows} * columns * 2);
    }
    size_t* span = batch.spans.data() + size_t{batch.rows} * columns * 2;
    const char* base = fields.front().data();
    const auto recordBytes =
        static_cast<size_t>(fields.back().data() + fields.back().size() - base);
    if (recordBytes <= kCopyWholeRecordBytes) {
      // One copy of the whole record; every field (unescaped in place) lies inside it.
      const size_t at = batch.bytes.size();
      batch.bytes.append(base, recordBytes);
      for (const ColumnPlan& plan : plans_) {
        const std::string_view f = fields[plan.field];
        const size_t begin = at + static_cast<size_t>(f.data() - base);
        *span++ = begin;
        *span++ = begin + f.size();
      }
    } else {
      // A long record (e.g. free text in an ignored column): copy only the needed fields.
      for (const ColumnPlan& plan : plans_) {
        const std::string_view f = fields[plan.field];
        *span++ = batch.bytes.size();
        batch.bytes.append(f.data(), f.size());
        *span++ = batch.bytes.size();
      }
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
  ErrorLog& log = logs_[lane];
  for (size_t column : lanes_[lane]) {
    switch (outs_[column].type()) {
      case PhysicalType::kI8:
        validateColumn<int8_t>(batch, column, log);
        break;
      case PhysicalType::kI16:
        validateColumn<int16_t>(batch, column, log);
        break;
      case PhysicalType::kI32:
        validateColumn<int32_t>(batch, column, log);
        break;
      case PhysicalType::kI64:
        validateColumn<int64_t>(batch, column, log);
        break;
      case PhysicalType::kF64:
        validateColumn<double>(batch, column, log);
        break;
      case PhysicalType::kU8:
        validateColumn<uint8_t>(batch, column, log);
        break;
      case PhysicalType::kU16:
        validateColumn<uint16_t>(batch, column, log);
        break;
    }
  }
}

template <typename T>
void Importer::validateColumn(const Batch& batch, size_t column, ErrorLog& log) {
  const size_t columns = plans_.size();
  const ColumnPlan& plan = plans_[column];
  T* const values = outs_[column].data<T>() + batch.firstRow;
  const VariableType type = plan.var->type;
  const double dmin = plan.min.value_or(-std::numeric_limits<double>::infinity());
  const double dmax = plan.max.value_or(std::numeric_limits<double>::infinity());
  for (uint32_t r = 0; r < batch.rows; ++r) {
    const std::string_view v = batch.field(r, column, columns);
    bool done = false;
    switch (type) {
      case VariableType::kInteger: {
        int64_t x;
        if (fastDigits(v, x) && x >= plan.imin && x <= plan.imax) {
          values[r] = static_cast<T>(x);
          done = true;
        }
        break;
      }
      case VariableType::kReal: {
        double x;
        if (fastReal(v, x) && x >= dmin && x <= dmax) {
          values[r] = static_cast<T>(x);
          done = true;
        }
        break;
      }
      case VariableType::kCategorical: {
        if (!plan.levels.empty() && !v.empty()) {
          for (size_t i = 0; i < plan.levels.size(); ++i) {
            const std::string_view level = plan.levels[i];
            if (level.size() == v.size() && level[0] == v[0] &&
                std::memcmp(level.data(), v.data(), v.size()) == 0) {
              values[r] = static_cast<T>(i);
              done = true;
              break;
            }
          }
        }
        break;
      }
      case VariableType::kBoolean: {
        int64_t b;
        if (parseBool(v, b)) {
          values[r] = static_cast<T>(b);
          done = true;
        }
        break;
      }
      case VariableType::kDate: {
        int64_t days;
        if (fastDate(v, days) && static_cast<double>(days) >= dmin &&
            static_cast<double>(days) <= dmax) {
          values[r] = static_cast<T>(days);
          done = true;
        }
        break;
      }
      case VariableType::kIdentifier:
        break;  // cell() checks it
    }
    if (!done) cell(column, batch.firstRow + r, v, batch.lines[r], log);
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
    plan.identifier = v.type == VariableType::kIdentifier;
    plan.label = "column '" + v.csvColumn + "' (variable " + v.name + ")";
    plans_.push_back(std::move(plan));
    outs_.emplace_back(physicalTypeOf(v));
  }
  if (!problems.empty()) {
    std::string found;
    for (const auto& h : header) found += (found.empty() ? "'" : ", '") + h + "'";
    std::string msg =
        source_ + ": the header does not match the dictionary of study '" + dict_.study() + "'";
    for (const auto& p : problems) msg += "\n" + p;
    msg += "\ncolumns found in the header: " + found;
    // One column holding another separator: the commonest cause is a ';' or tab export.
    if (header.size() == 1) {
      for (const auto& [c, name] :
           {std::pair<char, const char*>{';', "';'"}, {'\t', "tab"}, {'|', "'|'"}, {',', "','"}}) {
        if (c != options_.csv.delimiter && header[0].find(c) != std::string::npos) {
          msg += std::string("\nthe header looks separated by ") + name +
                 "; give the separator with --delimiter";
          break;
        }
      }
    }
    return Status::invalidArgument(msg);
  }
  return Status::ok();
}

void Importer::cell(size_t column, uint32_t row, std::string_view v, uint64_t line, ErrorLog& log) {
  ColumnPlan& plan = plans_[column];
  ColumnOut& out = outs_[column];
  const Variable& var = *plan.var;
  const bool isNa = v.size() == 2 && v[0] == 'N' && v[1] == 'A';
  if (v.empty() || (isNa && !plan.naIsLevel)) {
    if (!plan.missingAllowed) {
      valueError(column, line, v,
                 "is missing (empty or NA), but the dictionary does not allow missing values "
                 "for this variable (missing = false)",
                 log);
    }
    out.setMissing(row);
    return;
  }
  switch (var.type) {
    case VariableType::kIdentifier: {
      // Checked, never stored: the row keeps the missing placeholder.
      auto [it, fresh] = plan.seenIds.try_emplace(std::string(v), line);
      if (!fresh) {
        const std::string rule = "repeats the subject id of line " + std::to_string(it->second);
        if (options_.duplicateIds == ImportOptions::DuplicateIds::kWarn) {
          ++plan.duplicates;
          if (plan.duplicateWarnings.size() < maxErrors_) {
            plan.duplicateWarnings.emplace_back(line, source_ + ":" + std::to_string(line) + ": " +
                                                          plan.label + ": value '" + showValue(v) +
                                                          "' " + rule);
          }
        } else {
          valueError(column, line, v,
                     rule +
                         "; subject ids must be unique (import with --duplicate-ids warn if "
                         "the export has one row per visit)",
                     log);
        }
      }
      break;
    }
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
        out.setInt(row, x);
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
        out.setDouble(row, x);
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
            out.setInt(row, static_cast<int64_t>(i));
            return;
          }
        }
      } else if (auto it = plan.levelMap.find(v); it != plan.levelMap.end()) {
        out.setInt(row, it->second);
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
        out.setInt(row, b);
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
        out.setInt(row, *days);
        return;
      }
      break;
    }
  }
  out.setMissing(row);  // placeholder; nothing is written once an error was seen
}

rocksdb::Status Importer::writeChunkSet(const ChunkSet& set) {
  if (sstWriters_.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(tempDir_, ec);
    if (ec) return rocksdb::Status::IOError("cannot create " + tempDir_ + ": " + ec.message());

    const rocksdb::Options options = impl_.db_->GetOptions(impl_.data_);
    rocksdb::EnvOptions envOptions(options);
    // Write back in the background while importing, so the sync at the end is short.
    envOptions.bytes_per_sync = size_t{1} << 20;
    for (uint32_t var = 0; var < set.chunks.size(); ++var) {
      sstPaths_.push_back(tempDir_ + "/" + dataset_ + "." + std::to_string(version_) + "." +
                          std::to_string(var) + ".sst");
      // The imported data is likely to be queried soon: keep it in the page cache.
      sstWriters_.push_back(std::make_unique<rocksdb::SstFileWriter>(
          envOptions, options, impl_.data_, /*invalidate_page_cache=*/false));
      rocksdb::Status s = sstWriters_.back()->Open(sstPaths_.back());
      if (!s.ok()) return s;
    }
  }
  std::string value;
  for (uint32_t var = 0; var < set.chunks.size(); ++var) {
    const std::string key = internal::dataKey(dataset_, version_, var, set.index);
    value.clear();
    internal::encodeChunk(set.chunks[var], key, value);
    rocksdb::Status s = sstWriters_[var]->Put(key, value);
    if (!s.ok()) return s;
  }
  return rocksdb::Status::OK();
}

void Importer::writerLoop() {
  while (auto set = queue_.pop()) {
    if (writerFailed_) continue;  // drain so the parser never blocks
    rocksdb::Status s = writeChunkSet(*set);
    if (!s.ok()) {
      std::lock_guard lock(writerMu_);
      writerStatus_ = fromRocks(s, "store " + impl_.dir_ + ": writing dataset '" + dataset_ + "'");
      writerFailed_ = true;
    }
  }
  // Finish (and fsync) the files unless the import failed; then they are only deleted.
  if (writerFailed_ || errorCount() > 0) return;
  for (auto& w : sstWriters_) {
    rocksdb::Status s = w->Finish();
    if (!s.ok()) {
      std::lock_guard lock(writerMu_);
      writerStatus_ = fromRocks(s, "store " + impl_.dir_ + ": writing dataset '" + dataset_ + "'");
      writerFailed_ = true;
      return;
    }
  }
}

void Importer::removeTempFiles() {
  sstWriters_.clear();
  for (const auto& path : sstPaths_) {
    std::error_code ec;
    std::filesystem::remove(path, ec);  // best effort: Store::open removes leftovers too
  }
}

void Importer::sendChunkSet(uint32_t rows) {
  ChunkSet set;
  set.index = chunkIndex_++;
  set.chunks.reserve(outs_.size());
  for (auto& o : outs_) set.chunks.push_back(o.finish(rows));
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
  TM_ASSIGN_OR_RETURN(auto reader, options_.inputFd >= 0
                                       ? CsvReader::openFd(options_.inputFd, csvPath, options_.csv)
                                       : CsvReader::openFile(csvPath, options_.csv));
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
  tempDir_ = impl_.dir_ + "/" + std::string(internal::kImportTempDir);
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
      batches[cur].firstRow = inChunk;
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
        sendChunkSet(kChunkRows);
      }
      more = nextMore;
    }
    if (inChunk > 0) sendChunkSet(inChunk);
  }
  queue_.close();
  writer.join();

  if (errorCount() > 0) {
    removeTempFiles();
    return errorStatus();
  }
  if (writerFailed_) {
    removeTempFiles();
    std::lock_guard lock(writerMu_);
    return writerStatus_;
  }
  const std::string ctx = "store " + impl_.dir_ + ": committing dataset '" + dataset_ + "'";
  // Ingest the finished (fsynced) SST files: atomic for all of them, and durable (MANIFEST
  // synced) before the commit record can be.
  if (!sstPaths_.empty()) {
    rocksdb::IngestExternalFileOptions io;
    io.move_files = true;            // hard links: the files are not copied
    io.write_global_seqno = false;   // the sequence number lives in the MANIFEST only
    io.allow_blocking_flush = true;  // key ranges never overlap memtable data, but be safe
    rocksdb::Status s = impl_.db_->IngestExternalFile(impl_.data_, sstPaths_, io);
    removeTempFiles();
    if (!s.ok()) {
      discardVersion();
      return fromRocks(s, ctx);
    }
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
  std::vector<std::pair<uint64_t, std::string>> warnings;
  for (const ColumnPlan& plan : plans_) {
    report.duplicateIds += plan.duplicates;
    warnings.insert(warnings.end(), plan.duplicateWarnings.begin(), plan.duplicateWarnings.end());
  }
  std::stable_sort(warnings.begin(), warnings.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  for (size_t i = 0; i < warnings.size() && i < maxErrors_; ++i)
    report.warnings.push_back(std::move(warnings[i].second));
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
