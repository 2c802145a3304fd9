// Internal to tm_ethics: the big-endian byte writer/reader behind every canonical form in this
// module (entries, tree heads, approvals, statements). Not a public header.
#pragma once

#include <array>
#include <bit>
#include <charconv>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "common/status.h"

namespace trialmesh::ethics::detail {

// Shortest text that reads back to the same double, with ".0" on whole numbers so that an ε
// or a bin width reads as a real number (and a TOML float stays a float): "0.25", "1.0".
inline std::string realNumberText(double v) {
  char buf[32];
  auto res = std::to_chars(buf, buf + sizeof buf, v);
  std::string s(buf, res.ptr);
  if (s.find_first_of(".e") == std::string::npos) s += ".0";
  return s;
}

class Writer {
 public:
  void u8(uint8_t v) { out_.push_back(static_cast<char>(v)); }
  void u16(uint16_t v) { be(v, 2); }
  void u32(uint32_t v) { be(v, 4); }
  void u64(uint64_t v) { be(v, 8); }
  void i64(int64_t v) { be(static_cast<uint64_t>(v), 8); }
  // IEEE 754 binary64, its bits as u64 BE: exact, one encoding per value.
  void f64(double v) { be(std::bit_cast<uint64_t>(v), 8); }
  template <size_t N>
  void fixed(const std::array<uint8_t, N>& a) {
    out_.append(reinterpret_cast<const char*>(a.data()), N);
  }
  // u32 BE length, then the bytes.
  void str(std::string_view s) {
    u32(static_cast<uint32_t>(s.size()));
    out_.append(s);
  }
  std::string take() { return std::move(out_); }

 private:
  void be(uint64_t v, int n) {
    for (int i = n - 1; i >= 0; --i) out_.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  }
  std::string out_;
};

// Every read names the field so a Corruption message says what was truncated.
class Reader {
 public:
  Reader(std::span<const uint8_t> bytes, std::string what) : b_(bytes), what_(std::move(what)) {}

  Result<uint64_t> be(int n, std::string_view field) {
    if (remaining() < static_cast<size_t>(n)) return truncated(field);
    uint64_t v = 0;
    for (int i = 0; i < n; ++i) v = (v << 8) | b_[pos_++];
    return v;
  }
  Result<uint8_t> u8(std::string_view f) {
    TM_ASSIGN_OR_RETURN(uint64_t v, be(1, f));
    return static_cast<uint8_t>(v);
  }
  Result<uint16_t> u16(std::string_view f) {
    TM_ASSIGN_OR_RETURN(uint64_t v, be(2, f));
    return static_cast<uint16_t>(v);
  }
  Result<uint32_t> u32(std::string_view f) {
    TM_ASSIGN_OR_RETURN(uint64_t v, be(4, f));
    return static_cast<uint32_t>(v);
  }
  Result<uint64_t> u64(std::string_view f) { return be(8, f); }
  Result<int64_t> i64(std::string_view f) {
    TM_ASSIGN_OR_RETURN(uint64_t v, be(8, f));
    return static_cast<int64_t>(v);
  }
  Result<double> f64(std::string_view f) {
    TM_ASSIGN_OR_RETURN(uint64_t v, be(8, f));
    return std::bit_cast<double>(v);
  }
  // A byte that must be 0 or 1; Corruption naming both meanings otherwise.
  Result<bool> flag(std::string_view field, std::string_view zeroMeans, std::string_view oneMeans) {
    TM_ASSIGN_OR_RETURN(uint8_t v, u8(field));
    if (v > 1) {
      return Status::corruption(what_ + ": " + std::string(field) + " byte " + std::to_string(v) +
                                " is neither 0 (" + std::string(zeroMeans) + ") nor 1 (" +
                                std::string(oneMeans) + ")");
    }
    return v == 1;
  }
  template <size_t N>
  Result<std::array<uint8_t, N>> fixed(std::string_view field) {
    if (remaining() < N) return truncated(field);
    std::array<uint8_t, N> a;
    std::copy(b_.begin() + static_cast<ptrdiff_t>(pos_),
              b_.begin() + static_cast<ptrdiff_t>(pos_ + N), a.begin());
    pos_ += N;
    return a;
  }
  Result<std::string> str(std::string_view field) {
    TM_ASSIGN_OR_RETURN(uint32_t n, u32(field));
    if (remaining() < n) return truncated(field);
    std::string s(reinterpret_cast<const char*>(b_.data() + pos_), n);
    pos_ += n;
    return s;
  }
  // Corruption unless every byte was consumed.
  Status finish() const {
    if (remaining() != 0) {
      return Status::corruption(what_ + ": " + std::to_string(remaining()) +
                                " unexpected trailing bytes");
    }
    return Status::ok();
  }
  size_t remaining() const { return b_.size() - pos_; }
  const std::string& what() const { return what_; }

 private:
  Status truncated(std::string_view field) const {
    return Status::corruption(what_ + ": truncated at field '" + std::string(field) + "' (byte " +
                              std::to_string(pos_) + " of " + std::to_string(b_.size()) + ")");
  }
  std::span<const uint8_t> b_;
  size_t pos_ = 0;
  std::string what_;
};

inline std::span<const uint8_t> bytesOf(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

}  // namespace trialmesh::ethics::detail
