// Status and Result<T>: how expected failures travel between trialmesh modules.
//
// Every error that crosses a module boundary is a value, never an exception, and carries a
// message a site IT person can act on ("dictionary.toml: variable 'age': range min 120 is
// above max 18"). Library-specific error types (rocksdb::Status, libsodium's int results,
// Asio's error_code) are converted at the lowest layer and never leak upward.
//
// Thread-safety: plain values; safe to copy and move between threads.
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace trialmesh {

// Frozen: the numeric values are never reused (they appear in logs and on the wire).
enum class StatusCode : int {
  kOk = 0,
  kInvalidArgument = 1,  // the caller's input is wrong (query, file, flag); do not retry as is
  kNotFound = 2,         // a named thing (dataset, variable, file) does not exist
  kAlreadyExists = 3,
  kCorruption = 4,         // stored or received bytes fail a check; data needs attention
  kIOError = 5,            // the operating system or RocksDB failed; may succeed later
  kPermissionDenied = 6,   // refused by policy (approval, role, file mode)
  kUnavailable = 7,        // a peer or resource is temporarily unreachable; retry later
  kResourceExhausted = 8,  // a limit was hit (size, budget, concurrency)
  kFailedPrecondition = 9,
  kInternal = 10,  // a bug in trialmesh; please report it
};

const char* statusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status ok() { return Status(); }
  static Status invalidArgument(std::string m) {
    return {StatusCode::kInvalidArgument, std::move(m)};
  }
  static Status notFound(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
  static Status alreadyExists(std::string m) { return {StatusCode::kAlreadyExists, std::move(m)}; }
  static Status corruption(std::string m) { return {StatusCode::kCorruption, std::move(m)}; }
  static Status ioError(std::string m) { return {StatusCode::kIOError, std::move(m)}; }
  static Status permissionDenied(std::string m) {
    return {StatusCode::kPermissionDenied, std::move(m)};
  }
  static Status unavailable(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }
  static Status resourceExhausted(std::string m) {
    return {StatusCode::kResourceExhausted, std::move(m)};
  }
  static Status failedPrecondition(std::string m) {
    return {StatusCode::kFailedPrecondition, std::move(m)};
  }
  static Status internal(std::string m) { return {StatusCode::kInternal, std::move(m)}; }

  bool isOk() const { return code_ == StatusCode::kOk; }
  explicit operator bool() const { return isOk(); }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "InvalidArgument: <message>", or "OK".
  std::string toString() const;

  // Returns a copy whose message is "<context>: <message>", keeping the code.
  Status withContext(const std::string& context) const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

// A value or the Status explaining why there is none. REQUIRES: the Status is not OK.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}        // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {  // NOLINT: implicit by design
    assert(!std::get<Status>(v_).isOk());
  }

  bool isOk() const { return std::holds_alternative<T>(v_); }
  explicit operator bool() const { return isOk(); }
  // REQUIRES: isOk().
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  // OK when isOk().
  Status status() const { return isOk() ? Status() : std::get<Status>(v_); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace trialmesh

// Early return of a failed Status from a function that returns Status or Result<T>.
#define TM_RETURN_IF_ERROR(expr)               \
  do {                                         \
    ::trialmesh::Status tm_status_ = (expr);   \
    if (!tm_status_.isOk()) return tm_status_; \
  } while (0)

#define TM_CONCAT_INNER_(a, b) a##b
#define TM_CONCAT_(a, b) TM_CONCAT_INNER_(a, b)
// `TM_ASSIGN_OR_RETURN(auto x, f());` declares x from a Result or returns its Status.
#define TM_ASSIGN_OR_RETURN(decl, expr) \
  TM_ASSIGN_OR_RETURN_IMPL_(TM_CONCAT_(tm_result_, __LINE__), decl, expr)
#define TM_ASSIGN_OR_RETURN_IMPL_(tmp, decl, expr) \
  auto tmp = (expr);                               \
  if (!tmp.isOk()) return tmp.status();            \
  decl = std::move(tmp).value()
