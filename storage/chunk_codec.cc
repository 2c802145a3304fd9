#include "storage/chunk_codec.h"

#include <bit>
#include <cstring>

namespace trialmesh::storage::internal {

static_assert(std::endian::native == std::endian::little,
              "chunk values are stored little-endian and copied as is");

namespace {

constexpr uint64_t kP1 = 0x9E3779B185EBCA87ull;
constexpr uint64_t kP2 = 0xC2B2AE3D27D4EB4Full;
constexpr uint64_t kP3 = 0x165667B19E3779F9ull;
constexpr uint64_t kP4 = 0x85EBCA77C2B2AE63ull;
constexpr uint64_t kP5 = 0x27D4EB2F165667C5ull;

inline uint64_t read64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}
inline uint32_t read32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
inline uint64_t round64(uint64_t acc, uint64_t input) {
  acc += input * kP2;
  acc = std::rotl(acc, 31);
  return acc * kP1;
}
inline uint64_t mergeRound(uint64_t acc, uint64_t val) {
  acc ^= round64(0, val);
  return acc * kP1 + kP4;
}

// Header: "TMC" u8 formatVersion u8 physicalType u8 flags u16 reserved u32 rows u32 reserved.
constexpr size_t kHeaderBytes = 16;
constexpr size_t kTrailerBytes = 8;
constexpr uint8_t kFormatVersion = 1;
constexpr uint8_t kFlagMissing = 1;

size_t widthOf(PhysicalType type) {
  switch (type) {
    case PhysicalType::kI8:
    case PhysicalType::kU8:
      return 1;
    case PhysicalType::kI16:
    case PhysicalType::kU16:
      return 2;
    case PhysicalType::kI32:
      return 4;
    case PhysicalType::kI64:
    case PhysicalType::kF64:
      return 8;
  }
  return 8;
}

template <size_t I>
void decodeValues(const char* src, uint32_t rows, ColumnValues& out) {
  using Vec = std::variant_alternative_t<I, ColumnValues>;
  Vec v(rows);
  if (rows) std::memcpy(v.data(), src, rows * sizeof(typename Vec::value_type));
  out.template emplace<I>(std::move(v));
}

}  // namespace

uint64_t xxh64(const void* data, size_t size, uint64_t seed) {
  const auto* p = static_cast<const uint8_t*>(data);
  const uint8_t* const end = p + size;
  uint64_t h;
  if (size >= 32) {
    uint64_t v1 = seed + kP1 + kP2, v2 = seed + kP2, v3 = seed, v4 = seed - kP1;
    const uint8_t* const limit = end - 32;
    do {
      v1 = round64(v1, read64(p));
      v2 = round64(v2, read64(p + 8));
      v3 = round64(v3, read64(p + 16));
      v4 = round64(v4, read64(p + 24));
      p += 32;
    } while (p <= limit);
    h = std::rotl(v1, 1) + std::rotl(v2, 7) + std::rotl(v3, 12) + std::rotl(v4, 18);
    h = mergeRound(h, v1);
    h = mergeRound(h, v2);
    h = mergeRound(h, v3);
    h = mergeRound(h, v4);
  } else {
    h = seed + kP5;
  }
  h += static_cast<uint64_t>(size);
  while (p + 8 <= end) {
    h ^= round64(0, read64(p));
    h = std::rotl(h, 27) * kP1 + kP4;
    p += 8;
  }
  if (p + 4 <= end) {
    h ^= static_cast<uint64_t>(read32(p)) * kP1;
    h = std::rotl(h, 23) * kP2 + kP3;
    p += 4;
  }
  while (p < end) {
    h ^= (*p) * kP5;
    h = std::rotl(h, 11) * kP1;
    ++p;
  }
  h ^= h >> 33;
  h *= kP2;
  h ^= h >> 29;
  h *= kP3;
  h ^= h >> 32;
  return h;
}

void encodeChunk(const ColumnChunk& chunk, std::string_view key, std::string& out) {
  const size_t start = out.size();
  const size_t width = widthOf(chunk.type());
  const size_t valueBytes = size_t{chunk.rows} * width;
  const size_t missingBytes = chunk.hasMissing() ? ((chunk.rows + 63) / 64) * 8 : 0;
  out.resize(start + kHeaderBytes + valueBytes + missingBytes + kTrailerBytes);
  char* p = out.data() + start;
  const char header[8] = {'T',
                          'M',
                          'C',
                          static_cast<char>(kFormatVersion),
                          static_cast<char>(chunk.type()),
                          static_cast<char>(chunk.hasMissing() ? kFlagMissing : 0),
                          0,
                          0};
  std::memcpy(p, header, 8);
  const uint32_t rows = chunk.rows;
  std::memcpy(p + 8, &rows, 4);
  std::memset(p + 12, 0, 4);
  std::visit(
      [&](const auto& v) {
        if (valueBytes) std::memcpy(p + kHeaderBytes, v.data(), valueBytes);
      },
      chunk.values);
  if (missingBytes) std::memcpy(p + kHeaderBytes + valueBytes, chunk.missing.data(), missingBytes);
  const size_t body = kHeaderBytes + valueBytes + missingBytes;
  const uint64_t sum = xxh64(p, body, xxh64(key.data(), key.size()));
  std::memcpy(p + body, &sum, 8);
}

Result<ColumnChunk> decodeChunk(std::string_view bytes, std::string_view key,
                                PhysicalType expectedType, uint32_t expectedRows) {
  if (bytes.size() < kHeaderBytes + kTrailerBytes) {
    return Status::corruption("chunk is truncated (" + std::to_string(bytes.size()) + " bytes)");
  }
  const char* p = bytes.data();
  if (std::memcmp(p, "TMC", 3) != 0) return Status::corruption("chunk has a bad magic number");
  if (static_cast<uint8_t>(p[3]) != kFormatVersion) {
    return Status::corruption("chunk format version " + std::to_string(uint8_t(p[3])) +
                              " is not supported (this build reads version 1)");
  }
  const size_t body = bytes.size() - kTrailerBytes;
  uint64_t stored;
  std::memcpy(&stored, p + body, 8);
  if (stored != xxh64(p, body, xxh64(key.data(), key.size()))) {
    return Status::corruption("chunk checksum mismatch (XXH64)");
  }
  const auto type = static_cast<PhysicalType>(p[4]);
  const uint8_t flags = static_cast<uint8_t>(p[5]);
  uint32_t rows;
  std::memcpy(&rows, p + 8, 4);
  if (type != expectedType) {
    return Status::corruption("chunk has physical type " + std::to_string(uint8_t(p[4])) +
                              " but the dictionary implies " +
                              std::to_string(static_cast<int>(expectedType)));
  }
  if (rows != expectedRows) {
    return Status::corruption("chunk holds " + std::to_string(rows) + " rows, expected " +
                              std::to_string(expectedRows));
  }
  const size_t valueBytes = size_t{rows} * widthOf(type);
  const size_t missingWords = (flags & kFlagMissing) ? (rows + 63) / 64 : 0;
  if (kHeaderBytes + valueBytes + missingWords * 8 != body) {
    return Status::corruption("chunk size " + std::to_string(bytes.size()) +
                              " does not match its header");
  }
  ColumnChunk chunk;
  chunk.rows = rows;
  const char* values = p + kHeaderBytes;
  switch (type) {
    case PhysicalType::kI8:
      decodeValues<0>(values, rows, chunk.values);
      break;
    case PhysicalType::kI16:
      decodeValues<1>(values, rows, chunk.values);
      break;
    case PhysicalType::kI32:
      decodeValues<2>(values, rows, chunk.values);
      break;
    case PhysicalType::kI64:
      decodeValues<3>(values, rows, chunk.values);
      break;
    case PhysicalType::kF64:
      decodeValues<4>(values, rows, chunk.values);
      break;
    case PhysicalType::kU8:
      decodeValues<5>(values, rows, chunk.values);
      break;
    case PhysicalType::kU16:
      decodeValues<6>(values, rows, chunk.values);
      break;
  }
  if (missingWords) {
    chunk.missing.resize(missingWords);
    std::memcpy(chunk.missing.data(), values + valueBytes, missingWords * 8);
  }
  return chunk;
}

}  // namespace trialmesh::storage::internal
