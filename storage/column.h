// Decoded column chunks and the read interface the query engine scans.
//
// A dataset is stored column by column in chunks of up to kChunkRows rows. A decoded chunk
// holds its values in the narrowest physical type the variable's declaration allows and, when
// any value is missing, a bitmap marking the missing rows (the value slot of a missing row is 0).
//
// Thread-safety: ColumnChunk is immutable once built. ColumnSource implementations must be
// safe to call from several scan threads at once.
#pragma once

#include <cstdint>
#include <memory>
#include <variant>
#include <vector>

#include "common/status.h"
#include "storage/dictionary.h"

namespace trialmesh::storage {

inline constexpr uint32_t kChunkRows = 65536;

// Frozen: the index of each alternative is written on disk.
enum class PhysicalType : uint8_t {
  kI8 = 0,
  kI16 = 1,
  kI32 = 2,
  kI64 = 3,
  kF64 = 4,
  kU8 = 5,
  kU16 = 6
};

using ColumnValues = std::variant<std::vector<int8_t>, std::vector<int16_t>, std::vector<int32_t>,
                                  std::vector<int64_t>, std::vector<double>, std::vector<uint8_t>,
                                  std::vector<uint16_t>>;

// Integer: narrowest signed width holding the declared range (int64 when unbounded).
// Real: f64. Categorical: u8 for up to 256 levels, else u16. Boolean: u8 (0/1). Date: i32.
PhysicalType physicalTypeOf(const Variable& variable);

struct ColumnChunk {
  uint32_t rows = 0;
  ColumnValues values;            // alternative index == PhysicalType
  std::vector<uint64_t> missing;  // empty: no row missing; else (rows+63)/64 words, bit = missing

  PhysicalType type() const { return static_cast<PhysicalType>(values.index()); }
  bool hasMissing() const { return !missing.empty(); }
  bool isMissing(uint32_t row) const {
    return !missing.empty() && ((missing[row >> 6] >> (row & 63)) & 1u);
  }
  // Value of `row` widened to double (dates as days, categories as level index).
  double valueAsDouble(uint32_t row) const;
  size_t memoryBytes() const;
};

// Builds one chunk from values appended in row order.
class ColumnChunkBuilder {
 public:
  explicit ColumnChunkBuilder(PhysicalType type);
  // REQUIRES: the value fits the physical type (import validates ranges before appending).
  void appendInt(int64_t value);
  void appendDouble(double value);
  void appendMissing();
  uint32_t rows() const { return rows_; }
  // Returns the chunk and resets the builder for the next one.
  ColumnChunk finish();

 private:
  PhysicalType type_;
  uint32_t rows_ = 0;
  ColumnValues values_;
  std::vector<uint64_t> missing_;
  bool anyMissing_ = false;
};

// A readable, consistent view of one dataset: what the query engine scans.
class ColumnSource {
 public:
  virtual ~ColumnSource() = default;
  virtual const Dictionary& dictionary() const = 0;
  virtual uint64_t rowCount() const = 0;
  // Chunk c holds rows [c * kChunkRows, min(rowCount, (c+1) * kChunkRows)).
  uint32_t chunkCount() const {
    return static_cast<uint32_t>((rowCount() + kChunkRows - 1) / kChunkRows);
  }
  // The decoded chunk `chunk` of variable `variable` (dictionary index). The shared_ptr keeps
  // it alive even if a cache evicts it meanwhile. Errors: Corruption, IOError.
  virtual Result<std::shared_ptr<const ColumnChunk>> column(size_t variable,
                                                            uint32_t chunk) const = 0;
};

// A dataset held entirely in memory: used by tests, the data generator and benchmarks.
class InMemoryTable final : public ColumnSource {
 public:
  explicit InMemoryTable(Dictionary dictionary);
  // Appends one row. Each cell is nullopt (missing) or the value as int64 (integer, categorical
  // level index, boolean 0/1, date days) or double (real), matching the variable's type.
  // REQUIRES: row.size() == dictionary().size().
  struct Cell {
    bool missing = true;
    int64_t i = 0;
    double d = 0;
    static Cell none() { return {}; }
    static Cell integer(int64_t v) { return {false, v, 0}; }
    static Cell real(double v) { return {false, 0, v}; }
  };
  void appendRow(const std::vector<Cell>& row);
  // Seals the last partial chunk. REQUIRES: called once, after the last appendRow and before
  // the table is read.
  void finish();

  const Dictionary& dictionary() const override { return dictionary_; }
  uint64_t rowCount() const override { return rows_; }
  Result<std::shared_ptr<const ColumnChunk>> column(size_t variable, uint32_t chunk) const override;

 private:
  void sealChunk();
  Dictionary dictionary_;
  uint64_t rows_ = 0;
  bool finished_ = false;
  std::vector<ColumnChunkBuilder> open_;                                 // per variable
  std::vector<std::vector<std::shared_ptr<const ColumnChunk>>> sealed_;  // [variable][chunk]
};

}  // namespace trialmesh::storage
