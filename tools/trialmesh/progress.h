// A progress bar for long CLI operations (imports). Draws on stderr only when stderr is a
// terminal; silent otherwise, so scripts and CI logs stay clean. Not thread-safe: call from
// one thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace trialmesh::cli {

class ProgressBar {
 public:
  explicit ProgressBar(std::string label);
  ~ProgressBar();
  // Redraws at most ~10 times a second.
  void update(uint64_t done, uint64_t total);
  // Clears the bar line (before printing a result or an error).
  void finish();
  bool enabled() const { return enabled_; }

 private:
  std::string label_;
  bool enabled_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point lastDraw_;
};

}  // namespace trialmesh::cli
