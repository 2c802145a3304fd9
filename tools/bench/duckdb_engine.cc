// DuckDB side of trialmesh-bench: runs duckdb/bench.mjs with Node.js and reads its JSON.
// DuckDB is optional: without node or the npm package the report says how to install it.
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "tools/bench/engines.h"

namespace trialmesh::bench {
namespace {

std::string shellQuote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

// Reads a command's stdout; the exit status goes to `exitCode`.
std::string runCommand(const std::string& command, int& exitCode) {
  std::string out;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) {
    exitCode = -1;
    return out;
  }
  char buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0) out.append(buf, n);
  const int status = ::pclose(pipe);
  exitCode = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return out;
}

double number(const nlohmann::json& v) {
  if (v.is_string()) return std::stod(v.get<std::string>());  // BIGINT arrives as text
  if (v.is_number()) return v.get<double>();
  return 0;
}

}  // namespace

DuckDbResult runDuckDb(const std::string& scriptDir, const std::string& csvPath, int runs,
                       unsigned threads) {
  DuckDbResult r;
  namespace fs = std::filesystem;
  int rc = 0;
  runCommand("command -v node >/dev/null 2>&1", rc);
  if (rc != 0) {
    r.unavailableReason = "not installed (node not found; run tools/bench/duckdb/setup.sh)";
    return r;
  }
  if (!fs::exists(fs::path(scriptDir) / "node_modules" / "@duckdb" / "node-api")) {
    r.unavailableReason = "not installed (run tools/bench/duckdb/setup.sh)";
    return r;
  }
  const std::string command = "cd " + shellQuote(scriptDir) + " && node bench.mjs --csv " +
                              shellQuote(fs::absolute(csvPath).string()) + " --runs " +
                              std::to_string(runs) + " --threads " + std::to_string(threads) +
                              " 2>&1";
  const std::string out = runCommand(command, rc);
  const size_t brace = out.rfind("\n{") == std::string::npos ? out.find('{') : out.rfind("\n{");
  nlohmann::json j = nlohmann::json::parse(
      brace == std::string::npos ? std::string() : out.substr(brace), nullptr, false);
  if (rc != 0 || j.is_discarded()) {
    r.unavailableReason = "failed (exit " + std::to_string(rc) + "): " + out.substr(0, 400);
    return r;
  }
  r.available = true;
  r.version = j.value("version", "");
  r.loadMs = j.value("load_ms", 0.0);
  r.rows = j.value("rows", uint64_t{0});
  for (int q = 0; q < kQueryCount; ++q) {
    const auto& jq = j["queries"][benchQueries()[q].id];
    r.varcharMs[q] = jq.value("varchar", -1.0);
    r.enumMs[q] = jq.value("enum", -1.0);
    Answer a(q == 0 ? 1 : q == 1 ? 6 : 12, 0.0);
    for (const auto& row : jq["rows"]) {
      switch (q) {
        case 0:
          a[0] = number(row[0]);
          break;
        case 1: {
          const int g = row[0] == "TRT" ? 1 : 0;
          for (int k = 0; k < 3; ++k) a[g * 3 + k] = number(row[k + 1]);
          break;
        }
        case 2: {
          const int bin = static_cast<int>(number(row[0]));
          if (bin >= 0 && bin < 12) a[bin] = number(row[1]);
          break;
        }
        default: {
          const int g = row[0] == "TRT" ? 1 : 0;
          const int e = row[1].is_null() ? 5 : static_cast<int>(number(row[1]));
          if (e >= 0 && e <= 5) a[g * 6 + e] = number(row[2]);
          break;
        }
      }
    }
    r.answers[q] = a;
  }
  return r;
}

}  // namespace trialmesh::bench
