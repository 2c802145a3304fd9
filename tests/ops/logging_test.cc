#include "node/ops/logging.h"

#include <gtest/gtest.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <chrono>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

namespace trialmesh::ops {
namespace {

namespace fs = std::filesystem;

std::vector<std::string> readLines(const fs::path& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) lines.push_back(line);
  return lines;
}

// Milliseconds since the epoch for "YYYY-MM-DDTHH:MM:SS.mmmZ", computed with timegm, or -1.
long long parseTimestampMs(const std::string& ts) {
  std::tm tm{};
  int ms = 0;
  if (std::sscanf(ts.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                  &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms) != 7) {
    return -1;
  }
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return static_cast<long long>(timegm(&tm)) * 1000 + ms;
}

long long nowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

class LoggingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("tm_ops_logging_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    // Back to a plain stderr logger so later tests do not write into a deleted file.
    ASSERT_TRUE(setupLogging({}).isOk());
    fs::remove_all(dir_);
  }

  fs::path dir_;
};

TEST_F(LoggingTest, JsonLinesParseWithTheirFields) {
  fs::path file = dir_ / "node.log";
  LoggingOptions options;
  options.format = LogFormat::kJson;
  options.file = file.string();
  options.level = spdlog::level::debug;
  ASSERT_TRUE(setupLogging(options).isOk());

  long long before = nowMs();
  spdlog::info("scan finished in {} ms", 42);
  logEvent(spdlog::level::warn, "query_refused",
           {{"coordinator", "alice \"the\" coordinator\nline2\\"},
            {"reason", "replay"},
            {"rows", std::numeric_limits<std::uint64_t>::max()},
            {"delta", -5},
            {"ratio", 0.5},
            {"partial", true},
            {"msg", "a field called msg"}});
  spdlog::debug(std::string("bad utf-8: \xff\xfe end"));
  spdlog::trace("below the level");
  flush();
  long long after = nowMs();

  std::vector<std::string> lines = readLines(file);
  ASSERT_EQ(lines.size(), 3u);
  std::vector<nlohmann::json> parsed;
  for (const std::string& line : lines) {
    ASSERT_NO_THROW(parsed.push_back(nlohmann::json::parse(line))) << line;
  }
  std::regex rfc3339(R"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z)");
  for (const auto& j : parsed) {
    std::string ts = j["ts"];
    EXPECT_TRUE(std::regex_match(ts, rfc3339)) << ts;
    long long ms = parseTimestampMs(ts);
    // UTC: the stamp lies between the clock readings around the calls.
    EXPECT_GE(ms, before - 1);
    EXPECT_LE(ms, after);
  }
  // ts, level and msg come first, in that order.
  EXPECT_EQ(lines[0].rfind("{\"ts\":", 0), 0u) << lines[0];
  EXPECT_NE(lines[0].find("\",\"level\":\"info\",\"msg\":"), std::string::npos) << lines[0];

  EXPECT_EQ(parsed[0]["level"], "info");
  EXPECT_EQ(parsed[0]["msg"], "scan finished in 42 ms");
  EXPECT_EQ(parsed[0].size(), 3u);

  const nlohmann::json& event = parsed[1];
  EXPECT_EQ(event["level"], "warn");
  EXPECT_EQ(event["msg"], "query_refused");
  EXPECT_EQ(event["coordinator"], "alice \"the\" coordinator\nline2\\");
  EXPECT_EQ(event["reason"], "replay");
  EXPECT_EQ(event["rows"].get<std::uint64_t>(), std::numeric_limits<std::uint64_t>::max());
  EXPECT_EQ(event["delta"], -5);
  EXPECT_EQ(event["ratio"], 0.5);
  EXPECT_EQ(event["partial"], true);
  EXPECT_EQ(event["msg_"], "a field called msg");

  EXPECT_EQ(parsed[2]["level"], "debug");
  EXPECT_EQ(parsed[2]["msg"], "bad utf-8: \xEF\xBF\xBD\xEF\xBF\xBD end");  // U+FFFD twice
}

TEST_F(LoggingTest, PlainFormatHasTimestampLevelMessageAndLogfmtFields) {
  fs::path file = dir_ / "plain.log";
  LoggingOptions options;
  options.file = file.string();
  ASSERT_TRUE(setupLogging(options).isOk());
  spdlog::info("hello {}", 7);
  logEvent(spdlog::level::err, "peer_failed",
           {{"peer", "site-b"}, {"why", "bad frame: tag"}, {"count", 2}, {"empty", ""}});
  flush();
  std::vector<std::string> lines = readLines(file);
  ASSERT_EQ(lines.size(), 2u);
  std::regex first(R"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z info hello 7)");
  EXPECT_TRUE(std::regex_match(lines[0], first)) << lines[0];
  std::size_t afterTs = lines[1].find(' ');
  ASSERT_NE(afterTs, std::string::npos);
  EXPECT_EQ(lines[1].substr(afterTs + 1),
            "error peer_failed peer=site-b why=\"bad frame: tag\" count=2 empty=\"\"");
}

TEST_F(LoggingTest, FileIsAppendedNotTruncated) {
  fs::path file = dir_ / "append.log";
  {
    std::ofstream out(file);
    out << "line from an earlier run\n";
  }
  LoggingOptions options;
  options.format = LogFormat::kJson;
  options.file = file.string();
  ASSERT_TRUE(setupLogging(options).isOk());
  spdlog::info("first");
  flush();
  // A second setup (a restarted node) appends as well.
  ASSERT_TRUE(setupLogging(options).isOk());
  spdlog::info("second");
  flush();
  std::vector<std::string> lines = readLines(file);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0], "line from an earlier run");
  EXPECT_EQ(nlohmann::json::parse(lines[1])["msg"], "first");
  EXPECT_EQ(nlohmann::json::parse(lines[2])["msg"], "second");
}

TEST_F(LoggingTest, LevelFiltersAndWarningsFlushImmediately) {
  fs::path file = dir_ / "level.log";
  LoggingOptions options;
  options.format = LogFormat::kJson;
  options.file = file.string();
  options.level = spdlog::level::warn;
  ASSERT_TRUE(setupLogging(options).isOk());
  spdlog::info("dropped");
  logEvent(spdlog::level::info, "dropped_event", {{"k", "v"}});
  spdlog::warn("kept");
  // No flush() call: warn and above are written through at once.
  std::vector<std::string> lines = readLines(file);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(nlohmann::json::parse(lines[0])["msg"], "kept");
}

TEST_F(LoggingTest, UnopenableFileIsAnIOErrorAndKeepsThePreviousLogger) {
  fs::path good = dir_ / "good.log";
  LoggingOptions options;
  options.file = good.string();
  ASSERT_TRUE(setupLogging(options).isOk());

  LoggingOptions missingDir;
  missingDir.file = (dir_ / "no-such-dir" / "node.log").string();
  Status status = setupLogging(missingDir);
  ASSERT_FALSE(status.isOk());
  EXPECT_EQ(status.code(), StatusCode::kIOError);
  EXPECT_EQ(status.message(), "log file '" + *missingDir.file +
                                  "': cannot open for appending: No such file or directory");
  EXPECT_FALSE(fs::exists(dir_ / "no-such-dir"));  // not created behind the operator's back

  LoggingOptions directory;
  directory.file = dir_.string();
  Status dirStatus = setupLogging(directory);
  ASSERT_FALSE(dirStatus.isOk());
  EXPECT_NE(dirStatus.message().find("Is a directory"), std::string::npos) << dirStatus.message();

  spdlog::warn("still here");
  std::vector<std::string> lines = readLines(good);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find("warn still here"), std::string::npos) << lines[0];
}

TEST(LoggingParse, FormatsAndLevels) {
  EXPECT_EQ(*parseLogFormat("plain"), LogFormat::kPlain);
  EXPECT_EQ(*parseLogFormat("json"), LogFormat::kJson);
  auto badFormat = parseLogFormat("xml");
  ASSERT_FALSE(badFormat.isOk());
  EXPECT_EQ(badFormat.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(badFormat.status().message(),
            "log format 'xml' is not supported; use \"plain\" or \"json\"");

  EXPECT_EQ(*parseLogLevel("debug"), spdlog::level::debug);
  EXPECT_EQ(*parseLogLevel("warn"), spdlog::level::warn);
  EXPECT_EQ(*parseLogLevel("warning"), spdlog::level::warn);
  EXPECT_EQ(*parseLogLevel("error"), spdlog::level::err);
  EXPECT_EQ(*parseLogLevel("off"), spdlog::level::off);
  auto badLevel = parseLogLevel("verbose");
  ASSERT_FALSE(badLevel.isOk());
  EXPECT_NE(badLevel.status().message().find("'verbose'"), std::string::npos);
}

}  // namespace
}  // namespace trialmesh::ops
