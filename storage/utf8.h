// Internal to the storage libraries: UTF-8 validation shared by the CSV reader (every record)
// and the data dictionary (every text key). Not a public header.
#pragma once

#include <cstddef>
#include <string_view>

namespace trialmesh::storage::detail {

// The offset of the first byte of `data` that does not start a well-formed UTF-8 sequence
// (overlong forms, surrogates and code points above U+10FFFF included), or
// std::string_view::npos when all `size` bytes are valid. Pure ASCII runs are checked 8 or 16
// bytes at a time.
size_t findInvalidUtf8(const char* data, size_t size);

inline bool isValidUtf8(std::string_view s) {
  return findInvalidUtf8(s.data(), s.size()) == std::string_view::npos;
}

}  // namespace trialmesh::storage::detail
