// How the CSV importer reads one cell's text (storage/import.cc): the general parsers for
// booleans and integers, the fast paths for the common value shapes, and how a value is shown
// in an error message. Internal to storage/; inline because they run once per cell.
//
// Thread-safety: pure functions.
#pragma once

#include <charconv>
#include <cstdint>
#include <string>
#include <string_view>

namespace trialmesh::storage::detail {

inline std::string formatNumber(double v) {
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof(buf), v);
  return std::string(buf, r.ptr);
}

// A value as shown in an error message: bounded length, control characters escaped.
inline std::string showValue(std::string_view v) {
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

inline bool parseBool(std::string_view s, int64_t& out) {
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
inline bool parseInt(std::string_view s, int64_t& out, bool& overflow) {
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

inline std::string_view stripPlus(std::string_view s) {
  if (s.size() > 1 && s[0] == '+' && s[1] != '-' && s[1] != '+') s.remove_prefix(1);
  return s;
}

// Fast paths for the common value shapes. Each accepts only input that the general parser in
// Importer::cell accepts, with the identical result; anything else (signs, exponents, missing
// values, errors) goes to cell, which decides and writes the error messages.

// 1-18 decimal digits, no sign.
inline bool fastDigits(std::string_view s, int64_t& out) {
  if (s.empty() || s.size() > 18) return false;
  int64_t v = 0;
  for (char c : s) {
    const unsigned d = static_cast<unsigned char>(c) - '0';
    if (d > 9) return false;
    v = v * 10 + d;
  }
  out = v;
  return true;
}

// [-]digits[.digits] with at most 15 significant digits: the mantissa and the power of ten are
// exact doubles, so one IEEE division gives the correctly rounded value (Clinger's fast path),
// the same value std::from_chars returns.
inline bool fastReal(std::string_view s, double& out) {
  static constexpr double kPow10[] = {1e0, 1e1, 1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                      1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15};
  size_t i = 0;
  const size_t n = s.size();
  const bool negative = n > 0 && s[0] == '-';
  i = negative;
  uint64_t m = 0;
  size_t digits = 0;
  size_t frac = 0;
  bool dot = false;
  for (; i < n; ++i) {
    const unsigned d = static_cast<unsigned char>(s[i]) - '0';
    if (d <= 9) {
      m = m * 10 + d;
      ++digits;
      frac += dot;
    } else if (s[i] == '.' && !dot) {
      dot = true;
      if (digits == 0 || i + 1 == n) return false;  // ".5" and "5." go the general way
    } else {
      return false;
    }
  }
  if (digits == 0 || digits > 15) return false;
  const double x = static_cast<double>(m) / kPow10[frac];
  out = negative ? -x : x;
  return true;
}

// YYYY-MM-DD, the same rules and result as parseIsoDate (dictionary.h).
inline bool fastDate(std::string_view t, int64_t& out) {
  if (t.size() != 10 || t[4] != '-' || t[7] != '-') return false;
  unsigned dg[8];
  static constexpr size_t kPos[8] = {0, 1, 2, 3, 5, 6, 8, 9};
  for (int k = 0; k < 8; ++k) {
    dg[k] = static_cast<unsigned char>(t[kPos[k]]) - '0';
    if (dg[k] > 9) return false;
  }
  int y = static_cast<int>(dg[0] * 1000 + dg[1] * 100 + dg[2] * 10 + dg[3]);
  const int m = static_cast<int>(dg[4] * 10 + dg[5]);
  const int d = static_cast<int>(dg[6] * 10 + dg[7]);
  if (m < 1 || m > 12 || d < 1) return false;
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  if (d > kDays[m - 1] + (m == 2 && leap ? 1 : 0)) return false;
  y -= m <= 2;
  const int era = y / 400;  // y >= -1 here; -1 / 400 == 0 and yoe below stays in range
  const int yoe = y - era * 400;
  if (yoe < 0) return false;  // year 0000 in Jan/Feb: leave it to parseIsoDate
  const unsigned doy =
      (153 * static_cast<unsigned>(m + (m > 2 ? -3 : 9)) + 2) / 5 + static_cast<unsigned>(d) - 1;
  const unsigned doe = static_cast<unsigned>(yoe) * 365 + static_cast<unsigned>(yoe) / 4 -
                       static_cast<unsigned>(yoe) / 100 + doy;
  out = era * 146097 + static_cast<int>(doe) - 719468;
  return true;
}

}  // namespace trialmesh::storage::detail
