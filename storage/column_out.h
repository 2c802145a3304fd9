// The chunk the CSV importer fills for one variable (storage/import.cc). Internal to storage/.
//
// Thread-safety: one thread fills a ColumnOut at a time (the importer's validation lane).
#pragma once

#include <cstdint>
#include <variant>
#include <vector>

#include "storage/column.h"

namespace trialmesh::storage::detail {

// The chunk being filled for one variable. Rows are written by index (a batch covers a known
// row range of the chunk), so the hot loops store straight into the typed array.
class ColumnOut {
 public:
  explicit ColumnOut(PhysicalType type) : type_(type) { reset(); }
  PhysicalType type() const { return type_; }
  template <typename T>
  T* data() {
    return std::get<std::vector<T>>(values_).data();
  }
  void setInt(uint32_t row, int64_t x) {
    std::visit(
        [&](auto& v) { v[row] = static_cast<typename std::decay_t<decltype(v)>::value_type>(x); },
        values_);
  }
  void setDouble(uint32_t row, double x) { std::get<std::vector<double>>(values_)[row] = x; }
  void setMissing(uint32_t row) {
    std::visit([&](auto& v) { v[row] = 0; }, values_);
    missing_[row >> 6] |= uint64_t{1} << (row & 63);
    anyMissing_ = true;
  }
  // Returns the first `rows` rows as a chunk and starts a new one.
  ColumnChunk finish(uint32_t rows) {
    ColumnChunk chunk;
    chunk.rows = rows;
    std::visit([&](auto& v) { v.resize(rows); }, values_);
    chunk.values = std::move(values_);
    if (anyMissing_) {
      missing_.resize((rows + 63) / 64);
      chunk.missing = std::move(missing_);
    }
    reset();
    return chunk;
  }

 private:
  void reset() {
    switch (type_) {
      case PhysicalType::kI8:
        values_ = std::vector<int8_t>(kChunkRows);
        break;
      case PhysicalType::kI16:
        values_ = std::vector<int16_t>(kChunkRows);
        break;
      case PhysicalType::kI32:
        values_ = std::vector<int32_t>(kChunkRows);
        break;
      case PhysicalType::kI64:
        values_ = std::vector<int64_t>(kChunkRows);
        break;
      case PhysicalType::kF64:
        values_ = std::vector<double>(kChunkRows);
        break;
      case PhysicalType::kU8:
        values_ = std::vector<uint8_t>(kChunkRows);
        break;
      case PhysicalType::kU16:
        values_ = std::vector<uint16_t>(kChunkRows);
        break;
    }
    missing_.assign(kChunkRows / 64, 0);
    anyMissing_ = false;
  }

  PhysicalType type_;
  ColumnValues values_;
  std::vector<uint64_t> missing_;
  bool anyMissing_ = false;
};

}  // namespace trialmesh::storage::detail
