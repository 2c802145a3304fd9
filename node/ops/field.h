// Field: one structured key/value for JSON log lines (logEvent) and /healthz details.
//
// Written as brace lists: `{{"coordinator", name}, {"rows", rowCount}, {"partial", true}}`.
// The constructors pick the JSON type from the C++ type, so a string literal stays a string
// (never a bool) and unsigned counts keep their full range. Plain value; thread-compatible.
#pragma once

#include <concepts>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace trialmesh::ops {

class Field {
 public:
  using Value = std::variant<std::string, std::int64_t, std::uint64_t, double, bool>;

  Field(std::string key, std::string_view value)
      : key_(std::move(key)), value_(std::string(value)) {}
  Field(std::string key, const char* value) : key_(std::move(key)), value_(std::string(value)) {}
  Field(std::string key, const std::string& value) : key_(std::move(key)), value_(value) {}
  Field(std::string key, bool value) : key_(std::move(key)), value_(value) {}
  template <std::signed_integral T>
  Field(std::string key, T value)
      : key_(std::move(key)), value_(static_cast<std::int64_t>(value)) {}
  template <std::unsigned_integral T>
  requires(!std::same_as<T, bool>) Field(std::string key, T value)
      : key_(std::move(key)), value_(static_cast<std::uint64_t>(value)) {}
  template <std::floating_point T>
  Field(std::string key, T value) : key_(std::move(key)), value_(static_cast<double>(value)) {}

  const std::string& key() const { return key_; }
  const Value& value() const { return value_; }

 private:
  std::string key_;
  Value value_;
};

}  // namespace trialmesh::ops
