// Process-wide logging for trialmesh daemons and tools: configures spdlog's default logger, so
// code everywhere keeps calling spdlog::info(...) / spdlog::warn(...), and adds logEvent() for
// structured events that log collectors can filter on.
//
// Formats:
//   plain: `2026-11-22T07:09:26.123Z info message` (UTC, milliseconds); logEvent appends its
//          fields logfmt-style: `query_refused coordinator=alice reason=signature`
//          (values with spaces, quotes, '=' or control characters are JSON-quoted).
//   json:  one JSON object per line: {"ts":"2026-11-22T07:09:26.123Z","level":"info",
//          "msg":"..."} and, for logEvent, each field as a top-level key (a field named ts,
//          level or msg is written as ts_, level_, msg_). Bytes that are not UTF-8 become U+FFFD.
// Level names in both formats: trace, debug, info, warn, error, critical.
//
// Thread-safety: call setupLogging() once at startup, before other threads log (it replaces
// the default logger). logEvent() and flush() are thread-safe.
// Errors come back as Status; logging itself never throws.
#pragma once

#include <spdlog/common.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "node/ops/field.h"

namespace trialmesh::ops {

enum class LogFormat { kPlain, kJson };

struct LoggingOptions {
  // Default: plain.
  LogFormat format = LogFormat::kPlain;
  // Default: none, log to stderr. When set, lines are appended to this file (created if
  // missing, never truncated) and nothing goes to stderr.
  std::optional<std::string> file;
  // Default: info. Messages below this level are dropped.
  spdlog::level::level_enum level = spdlog::level::info;
};

// "plain" or "json"; anything else is InvalidArgument naming the accepted values.
Result<LogFormat> parseLogFormat(std::string_view text);
// "trace", "debug", "info", "warn" (or "warning"), "error", "critical", "off".
Result<spdlog::level::level_enum> parseLogLevel(std::string_view text);

// Makes a logger with these options the spdlog default. Lines at warn and above are flushed
// immediately; lower levels are buffered until flush(), a warn+ line, or exit.
// Errors: IOError naming the file when it cannot be opened for appending (missing directory,
// a directory, no permission); the previous default logger stays in place then.
Status setupLogging(const LoggingOptions& options);

// Logs a structured event: `event` is a short snake_case name ("query_refused"), `fields` its
// details, e.g. logEvent(spdlog::level::warn, "query_refused",
//                        {{"coordinator", name}, {"reason", "replay"}});
void logEvent(spdlog::level::level_enum level, std::string_view event,
              const std::vector<Field>& fields = {});

// Writes buffered lines of the default logger to its file or stderr.
void flush();

}  // namespace trialmesh::ops
