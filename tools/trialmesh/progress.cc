#include "tools/trialmesh/progress.h"

#include <unistd.h>

#include <cstdio>

namespace trialmesh::cli {

ProgressBar::ProgressBar(std::string label)
    : label_(std::move(label)),
      enabled_(isatty(STDERR_FILENO) == 1),
      start_(std::chrono::steady_clock::now()),
      lastDraw_(start_ - std::chrono::seconds(1)) {}

ProgressBar::~ProgressBar() { finish(); }

void ProgressBar::update(uint64_t done, uint64_t total) {
  if (!enabled_ || total == 0) return;
  auto now = std::chrono::steady_clock::now();
  if (now - lastDraw_ < std::chrono::milliseconds(100) && done < total) return;
  lastDraw_ = now;
  constexpr int kWidth = 30;
  double fraction = static_cast<double>(done) / static_cast<double>(total);
  if (fraction > 1) fraction = 1;
  int filled = static_cast<int>(fraction * kWidth);
  std::string bar(filled, '#');
  bar.append(kWidth - filled, '.');
  double seconds = std::chrono::duration<double>(now - start_).count();
  double mib = static_cast<double>(done) / (1024.0 * 1024.0);
  std::fprintf(stderr, "\r%s [%s] %3.0f%%  %.1f MiB  %.1f s ", label_.c_str(), bar.c_str(),
               fraction * 100, mib, seconds);
  std::fflush(stderr);
  drawn_ = true;
}

void ProgressBar::finish() {
  if (!drawn_) return;
  std::fprintf(stderr, "\r\033[K");
  std::fflush(stderr);
  drawn_ = false;
}

}  // namespace trialmesh::cli
