#include "storage/column.h"

#include <cmath>
#include <limits>

namespace trialmesh::storage {

namespace {

template <typename T>
bool fits(double lo, double hi) {
  return lo >= static_cast<double>(std::numeric_limits<T>::min()) &&
         hi <= static_cast<double>(std::numeric_limits<T>::max());
}

ColumnValues emptyValues(PhysicalType type) {
  switch (type) {
    case PhysicalType::kI8:
      return std::vector<int8_t>();
    case PhysicalType::kI16:
      return std::vector<int16_t>();
    case PhysicalType::kI32:
      return std::vector<int32_t>();
    case PhysicalType::kI64:
      return std::vector<int64_t>();
    case PhysicalType::kF64:
      return std::vector<double>();
    case PhysicalType::kU8:
      return std::vector<uint8_t>();
    case PhysicalType::kU16:
      return std::vector<uint16_t>();
  }
  return std::vector<int64_t>();
}

}  // namespace

PhysicalType physicalTypeOf(const Variable& variable) {
  switch (variable.type) {
    case VariableType::kInteger: {
      if (!variable.min || !variable.max) return PhysicalType::kI64;
      if (fits<int8_t>(*variable.min, *variable.max)) return PhysicalType::kI8;
      if (fits<int16_t>(*variable.min, *variable.max)) return PhysicalType::kI16;
      if (fits<int32_t>(*variable.min, *variable.max)) return PhysicalType::kI32;
      return PhysicalType::kI64;
    }
    case VariableType::kReal:
      return PhysicalType::kF64;
    case VariableType::kCategorical:
      return variable.levels.size() <= 256 ? PhysicalType::kU8 : PhysicalType::kU16;
    case VariableType::kBoolean:
      return PhysicalType::kU8;
    case VariableType::kDate:
      return PhysicalType::kI32;
    case VariableType::kIdentifier:
      return PhysicalType::kU8;  // an empty placeholder: every row missing
  }
  return PhysicalType::kF64;
}

double ColumnChunk::valueAsDouble(uint32_t row) const {
  return std::visit([row](const auto& v) { return static_cast<double>(v[row]); }, values);
}

size_t ColumnChunk::memoryBytes() const {
  size_t bytes = sizeof(*this) + missing.capacity() * sizeof(uint64_t);
  std::visit([&](const auto& v) { bytes += v.capacity() * sizeof(v[0]); }, values);
  return bytes;
}

ColumnChunkBuilder::ColumnChunkBuilder(PhysicalType type)
    : type_(type), values_(emptyValues(type)) {
  std::visit([](auto& v) { v.reserve(kChunkRows); }, values_);
  missing_.assign(kChunkRows / 64, 0);
}

void ColumnChunkBuilder::appendInt(int64_t value) {
  std::visit(
      [value](auto& v) {
        v.push_back(static_cast<typename std::decay_t<decltype(v)>::value_type>(value));
      },
      values_);
  ++rows_;
}

void ColumnChunkBuilder::appendDouble(double value) {
  std::visit(
      [value](auto& v) {
        v.push_back(static_cast<typename std::decay_t<decltype(v)>::value_type>(value));
      },
      values_);
  ++rows_;
}

void ColumnChunkBuilder::appendMissing() {
  std::visit([](auto& v) { v.push_back(0); }, values_);
  missing_[rows_ >> 6] |= uint64_t{1} << (rows_ & 63);
  anyMissing_ = true;
  ++rows_;
}

ColumnChunk ColumnChunkBuilder::finish() {
  ColumnChunk chunk;
  chunk.rows = rows_;
  chunk.values = std::move(values_);
  if (anyMissing_) {
    missing_.resize((rows_ + 63) / 64);
    chunk.missing = std::move(missing_);
  }
  values_ = emptyValues(type_);
  std::visit([](auto& v) { v.reserve(kChunkRows); }, values_);
  missing_.assign(kChunkRows / 64, 0);
  anyMissing_ = false;
  rows_ = 0;
  return chunk;
}

InMemoryTable::InMemoryTable(Dictionary dictionary)
    : dictionary_(std::move(dictionary)), sealed_(dictionary_.size()) {
  open_.reserve(dictionary_.size());
  for (const auto& v : dictionary_.variables()) open_.emplace_back(physicalTypeOf(v));
}

void InMemoryTable::appendRow(const std::vector<Cell>& row) {
  for (size_t i = 0; i < open_.size(); ++i) {
    const Cell& cell = row[i];
    if (cell.missing) {
      open_[i].appendMissing();
    } else if (dictionary_.variable(i).type == VariableType::kReal) {
      open_[i].appendDouble(cell.d);
    } else {
      open_[i].appendInt(cell.i);
    }
  }
  ++rows_;
  if (rows_ % kChunkRows == 0) sealChunk();
}

void InMemoryTable::finish() {
  if (!finished_ && rows_ % kChunkRows != 0) sealChunk();
  finished_ = true;
}

void InMemoryTable::sealChunk() {
  for (size_t i = 0; i < open_.size(); ++i) {
    sealed_[i].push_back(std::make_shared<const ColumnChunk>(open_[i].finish()));
  }
}

Result<std::shared_ptr<const ColumnChunk>> InMemoryTable::column(size_t variable,
                                                                 uint32_t chunk) const {
  if (!finished_) return Status::failedPrecondition("InMemoryTable read before finish()");
  if (variable >= sealed_.size() || chunk >= sealed_[variable].size()) {
    return Status::notFound("no chunk " + std::to_string(chunk) + " of variable " +
                            std::to_string(variable));
  }
  return sealed_[variable][chunk];
}

}  // namespace trialmesh::storage
