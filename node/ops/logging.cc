#include "node/ops/logging.h"

#include <spdlog/formatter.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <memory>

#include "node/ops/field_json.h"

namespace trialmesh::ops {

namespace {

// Set by setupLogging: whether the default logger writes JSON lines.
std::atomic<bool> gJsonFormat{false};

// The fields of the logEvent() call being formatted on this thread. spdlog's synchronous
// loggers format in the calling thread, so the formatter sees exactly the caller's fields.
thread_local const std::vector<Field>* tEventFields = nullptr;

const char* levelName(spdlog::level::level_enum level) {
  switch (level) {
    case spdlog::level::trace:
      return "trace";
    case spdlog::level::debug:
      return "debug";
    case spdlog::level::info:
      return "info";
    case spdlog::level::warn:
      return "warn";
    case spdlog::level::err:
      return "error";
    case spdlog::level::critical:
      return "critical";
    case spdlog::level::off:
    case spdlog::level::n_levels:
      break;
  }
  return "off";
}

// RFC 3339, UTC, milliseconds: 2026-11-22T07:09:26.123Z.
void appendTimestamp(std::chrono::system_clock::time_point time, spdlog::memory_buf_t& dest) {
  auto ms = std::chrono::floor<std::chrono::milliseconds>(time.time_since_epoch()).count();
  std::time_t seconds = static_cast<std::time_t>(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
  int millis = static_cast<int>(ms - static_cast<long long>(seconds) * 1000);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char buf[40];
  int n = std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                        tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, millis);
  dest.append(buf, buf + n);
}

void append(spdlog::memory_buf_t& dest, std::string_view text) {
  dest.append(text.data(), text.data() + text.size());
}

class PlainFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    appendTimestamp(msg.time, dest);
    dest.push_back(' ');
    append(dest, levelName(msg.level));
    dest.push_back(' ');
    append(dest, std::string_view(msg.payload.data(), msg.payload.size()));
    dest.push_back('\n');
  }
  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<PlainFormatter>();
  }
};

class JsonFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    spdlog::memory_buf_t ts;
    appendTimestamp(msg.time, ts);
    // ordered_json keeps ts, level, msg first, in that order, for people reading raw lines.
    nlohmann::ordered_json line;
    line["ts"] = std::string(ts.data(), ts.size());
    line["level"] = levelName(msg.level);
    line["msg"] = std::string(msg.payload.data(), msg.payload.size());
    if (tEventFields != nullptr) {
      for (const Field& field : *tEventFields) {
        const std::string& key = field.key();
        bool reserved = key == "ts" || key == "level" || key == "msg";
        line[reserved ? key + "_" : key] = internal::fieldValueToJson(field.value());
      }
    }
    append(dest, internal::dumpJsonLine(line));
    dest.push_back('\n');
  }
  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonFormatter>();
  }
};

// logfmt value: bare when it is a simple token, JSON-quoted otherwise.
std::string plainValue(const Field::Value& value) {
  if (const auto* text = std::get_if<std::string>(&value)) {
    bool bare = !text->empty();
    for (unsigned char c : *text) {
      if (c <= ' ' || c == '=' || c == '"' || c == '\\' || c == 0x7f) {
        bare = false;
        break;
      }
    }
    if (bare) return *text;
  }
  return internal::dumpJsonLine(internal::fieldValueToJson(value));
}

// Clears tEventFields even if a sink throws (spdlog reports sink errors through its handler,
// but be safe).
struct EventFieldsScope {
  explicit EventFieldsScope(const std::vector<Field>* fields) { tEventFields = fields; }
  ~EventFieldsScope() { tEventFields = nullptr; }
  EventFieldsScope(const EventFieldsScope&) = delete;
  EventFieldsScope& operator=(const EventFieldsScope&) = delete;
};

}  // namespace

Result<LogFormat> parseLogFormat(std::string_view text) {
  if (text == "plain") return LogFormat::kPlain;
  if (text == "json") return LogFormat::kJson;
  return Status::invalidArgument("log format '" + std::string(text) +
                                 "' is not supported; use \"plain\" or \"json\"");
}

Result<spdlog::level::level_enum> parseLogLevel(std::string_view text) {
  if (text == "trace") return spdlog::level::trace;
  if (text == "debug") return spdlog::level::debug;
  if (text == "info") return spdlog::level::info;
  if (text == "warn" || text == "warning") return spdlog::level::warn;
  if (text == "error") return spdlog::level::err;
  if (text == "critical") return spdlog::level::critical;
  if (text == "off") return spdlog::level::off;
  return Status::invalidArgument("log level '" + std::string(text) +
                                 "' is not supported; use trace, debug, info, warn, error, "
                                 "critical or off");
}

Status setupLogging(const LoggingOptions& options) {
  spdlog::sink_ptr sink;
  if (options.file) {
    const std::string& path = *options.file;
    // Open once ourselves: spdlog's exception text lacks the reason, and it would silently
    // create missing directories, which hides a mistyped path.
    std::FILE* probe = std::fopen(path.c_str(), "ab");
    if (probe == nullptr) {
      int err = errno;
      return Status::ioError("log file '" + path +
                             "': cannot open for appending: " + std::strerror(err));
    }
    std::fclose(probe);
    try {
      sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(path, /*truncate=*/false);
    } catch (const spdlog::spdlog_ex& e) {
      return Status::ioError("log file '" + path + "': cannot open for appending: " + e.what());
    }
  } else {
    sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  }
  if (options.format == LogFormat::kJson) {
    sink->set_formatter(std::make_unique<JsonFormatter>());
  } else {
    sink->set_formatter(std::make_unique<PlainFormatter>());
  }
  auto logger = std::make_shared<spdlog::logger>("trialmesh", std::move(sink));
  logger->set_level(options.level);
  logger->flush_on(spdlog::level::warn);
  gJsonFormat.store(options.format == LogFormat::kJson, std::memory_order_relaxed);
  spdlog::set_default_logger(std::move(logger));
  return Status::ok();
}

void logEvent(spdlog::level::level_enum level, std::string_view event,
              const std::vector<Field>& fields) {
  auto logger = spdlog::default_logger();
  if (!logger->should_log(level)) return;
  if (gJsonFormat.load(std::memory_order_relaxed)) {
    EventFieldsScope scope(&fields);
    logger->log(level, spdlog::string_view_t(event.data(), event.size()));
    return;
  }
  std::string line(event);
  for (const Field& field : fields) {
    line += ' ';
    line += field.key();
    line += '=';
    line += plainValue(field.value());
  }
  logger->log(level, spdlog::string_view_t(line.data(), line.size()));
}

void flush() { spdlog::default_logger()->flush(); }

}  // namespace trialmesh::ops
