// Internal to tm_storage: the on-disk encoding of one column chunk (byte layout in
// docs/storage-format.md) and the XXH64 checksum it carries. Not for other modules.
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"
#include "storage/column.h"

namespace trialmesh::storage::internal {

// XXH64 (the xxHash 64-bit algorithm, https://xxhash.com).
uint64_t xxh64(const void* data, size_t size, uint64_t seed = 0);

// Appends the encoding of `chunk` to `out`. `key` is the chunk's data key: it seeds the
// checksum, so a chunk stored under the wrong key fails verification.
void encodeChunk(const ColumnChunk& chunk, std::string_view key, std::string& out);

// Decodes and verifies a chunk. Errors (Corruption) describe what is wrong, without naming the
// dataset (the caller adds that context).
Result<ColumnChunk> decodeChunk(std::string_view bytes, std::string_view key,
                                PhysicalType expectedType, uint32_t expectedRows);

}  // namespace trialmesh::storage::internal
