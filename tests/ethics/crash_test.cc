// kill -9 right after append returns never loses the entry: a real child process appends and
// reports each sequence number once append() returned; the parent SIGKILLs it at varying
// moments, reopens the log and checks every reported entry is there (repeated).
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <random>
#include <string>

#include "ethics/audit_log.h"

#ifndef TM_AUDIT_CHILD_PATH
#error "TM_AUDIT_CHILD_PATH must name the ethics_audit_child executable"
#endif

namespace trialmesh::ethics {
namespace {

using Clock = std::chrono::steady_clock;

// Runs the child until it has reported `killAfter` appends, then SIGKILLs it. Returns the
// highest sequence number it reported (-1 if none). Always reaps the child.
long runAndKill(const std::string& dir, int killAfter) {
  int fds[2];
  if (pipe(fds) != 0) return -2;
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], STDOUT_FILENO);
    close(fds[0]);
    close(fds[1]);
    execl(TM_AUDIT_CHILD_PATH, TM_AUDIT_CHILD_PATH, dir.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  close(fds[1]);
  long last = -1;
  int seen = 0;
  std::string pending;
  const auto deadline = Clock::now() + std::chrono::seconds(30);
  while (seen < killAfter && Clock::now() < deadline) {
    pollfd p{fds[0], POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    char buf[4096];
    const ssize_t n = read(fds[0], buf, sizeof buf);
    if (n <= 0) break;
    pending.append(buf, static_cast<size_t>(n));
    size_t nl;
    while ((nl = pending.find('\n')) != std::string::npos) {
      const std::string line = pending.substr(0, nl);
      pending.erase(0, nl + 1);
      if (line.rfind("appended ", 0) == 0) {
        last = std::stol(line.substr(9));
        ++seen;
      }
    }
  }
  kill(pid, SIGKILL);
  // Lines already written before the kill were also acknowledged appends.
  char buf[4096];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof buf)) > 0) pending.append(buf, static_cast<size_t>(n));
  size_t nl;
  while ((nl = pending.find('\n')) != std::string::npos) {
    const std::string line = pending.substr(0, nl);
    pending.erase(0, nl + 1);
    if (line.rfind("appended ", 0) == 0) last = std::stol(line.substr(9));
  }
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  return last;
}

TEST(AuditCrashTest, KilledRightAfterAppendNeverLosesAnAcknowledgedEntry) {
  const std::string dir = ::testing::TempDir() + "/audit_crash";
  std::filesystem::remove_all(dir);
  std::mt19937 rng(7);
  long highest = -1;
  const crypto::Identity reader = crypto::generateIdentity();
  for (int round = 0; round < 6; ++round) {
    const long last = runAndKill(dir, 1 + static_cast<int>(rng() % 40));
    ASSERT_GE(last, highest) << "round " << round;
    highest = last;
    auto log = AuditLog::open(dir, reader);
    ASSERT_TRUE(log.isOk()) << "round " << round << ": " << log.status().toString();
    // Every acknowledged sequence number is present, and the store is intact.
    EXPECT_GT(static_cast<long>((*log)->size()), last) << "round " << round;
    auto entries = (*log)->readRange(0, (*log)->size());
    ASSERT_TRUE(entries.isOk());
    const SignedTreeHead sth = (*log)->signedTreeHead();
    log->reset();
    EXPECT_TRUE(verifyLog(*entries, sth, reader.pub).isOk());
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace trialmesh::ethics
