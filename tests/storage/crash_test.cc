// Kills a real importing process with SIGKILL at different moments and checks that the store
// always reopens with exactly one complete committed version and no leftover data.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <thread>

#include "store_test_util.h"

#ifndef TM_IMPORT_CHILD_PATH
#error "TM_IMPORT_CHILD_PATH must name the storage_import_child executable"
#endif

namespace trialmesh::storage {
namespace {

using testing::TempDir;
using Clock = std::chrono::steady_clock;

constexpr uint64_t kV1Rows = 20000;
constexpr uint64_t kBigRows = 300000;  // ~19 MB: several progress reports before it commits
constexpr auto kChildTimeLimit = std::chrono::seconds(60);

struct ChildRun {
  bool killed = false;  // we sent SIGKILL before it finished
  int exitStatus = -1;  // waitpid status
  int progressLines = 0;
  std::string output;
};

// Starts the child importer; reads its stdout until `killAfterProgress` progress lines were
// seen (or "opened" when 0), waits `delay`, then SIGKILLs it. Always reaps the child.
ChildRun runAndKill(const std::string& storeDir, const std::string& dictPath,
                    const std::string& csvPath, int killAfterProgress,
                    std::chrono::milliseconds delay) {
  ChildRun run;
  int pipefd[2];
  if (pipe(pipefd) != 0) {
    ADD_FAILURE() << "pipe failed";
    return run;
  }
  pid_t pid = fork();
  if (pid == 0) {
    dup2(pipefd[1], STDOUT_FILENO);
    close(pipefd[0]);
    close(pipefd[1]);
    execl(TM_IMPORT_CHILD_PATH, TM_IMPORT_CHILD_PATH, storeDir.c_str(), "trial", dictPath.c_str(),
          csvPath.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  close(pipefd[1]);
  const auto deadline = Clock::now() + kChildTimeLimit;
  bool trigger = false;
  bool eof = false;
  std::string pending;
  while (!trigger && !eof && Clock::now() < deadline) {
    pollfd p{pipefd[0], POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    char buf[4096];
    ssize_t n = read(pipefd[0], buf, sizeof buf);
    if (n <= 0) {
      eof = true;
      break;
    }
    run.output.append(buf, static_cast<size_t>(n));
    pending.append(buf, static_cast<size_t>(n));
    size_t nl;
    while ((nl = pending.find('\n')) != std::string::npos) {
      const std::string line = pending.substr(0, nl);
      pending.erase(0, nl + 1);
      if (line.rfind("progress ", 0) == 0) ++run.progressLines;
      if ((killAfterProgress == 0 && line == "opened") ||
          (killAfterProgress > 0 && run.progressLines >= killAfterProgress)) {
        trigger = true;
      }
    }
  }
  if (!eof) {
    std::this_thread::sleep_for(delay);
    // If the child finished meanwhile, the kill is a no-op on the zombie; waitpid tells.
    kill(pid, SIGKILL);
    run.killed = true;
  }
  close(pipefd[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  run.exitStatus = status;
  if (run.killed && WIFEXITED(status)) run.killed = false;  // it had already finished
  return run;
}

TEST(CrashTest, KilledImportLeavesPreviousVersionIntact) {
  TempDir tmp;
  const std::string storeDir = tmp / "store";
  const std::string dictPath = tmp / "trial.toml";
  {
    std::ofstream out(dictPath);
    out << testing::trialDictionaryToml();
  }
  ASSERT_TRUE(testing::writeTrialCsv(tmp / "v1.csv", kV1Rows, 0));
  ASSERT_TRUE(testing::writeTrialCsv(tmp / "big.csv", kBigRows, 7));
  uint64_t committedVersion = 0;
  uint64_t committedRows = kV1Rows;
  uint64_t committedSalt = 0;
  {
    auto store = Store::open(storeDir);
    ASSERT_TRUE(store.isOk()) << store.status().toString();
    auto r = (*store)->importCsv("trial", testing::trialDictionary(), tmp / "v1.csv");
    ASSERT_TRUE(r.isOk()) << r.status().toString();
    committedVersion = r->version;
  }

  struct Plan {
    int afterProgress;
    int delayMs;
  };
  const Plan plans[] = {{0, 0}, {1, 0}, {2, 0}, {1, 30}, {3, 5}, {2, 120}};
  int killedMidImport = 0;
  for (const Plan& plan : plans) {
    SCOPED_TRACE("kill after " + std::to_string(plan.afterProgress) + " progress lines + " +
                 std::to_string(plan.delayMs) + " ms");
    ChildRun run = runAndKill(storeDir, dictPath, tmp / "big.csv", plan.afterProgress,
                              std::chrono::milliseconds(plan.delayMs));
    if (run.killed) {
      ++killedMidImport;
      ASSERT_TRUE(WIFSIGNALED(run.exitStatus)) << run.output;
    } else {
      ASSERT_TRUE(WIFEXITED(run.exitStatus) && WEXITSTATUS(run.exitStatus) == 0) << run.output;
    }
    auto store = Store::open(storeDir, StoreOptions{.cacheBytes = 0, .createIfMissing = false});
    ASSERT_TRUE(store.isOk()) << store.status().toString();
    auto info = (*store)->datasetInfo("trial");
    ASSERT_TRUE(info.isOk()) << info.status().toString();
    if (info->version != committedVersion) {
      // The import committed before the kill landed: then it must be complete.
      EXPECT_EQ(info->rows, kBigRows);
      committedVersion = info->version;
      committedRows = kBigRows;
      committedSalt = 7;
    }
    auto ds = (*store)->openDataset("trial");
    ASSERT_TRUE(ds.isOk()) << ds.status().toString();
    testing::expectDatasetMatches(**ds, committedRows, committedSalt);
    ds.value().reset();
    store.value().reset();
    // No data of any other version is left after the open's cleanup.
    auto keys = testing::dataKeyCounts(storeDir);
    ASSERT_EQ(keys.size(), 1u);
    EXPECT_EQ(keys.begin()->first, std::make_pair(std::string("trial"), committedVersion));
  }
  // On this machine most kills land mid-import; at least one must, or the test tested nothing.
  EXPECT_GT(killedMidImport, 0);

  // The store still accepts a new import.
  auto store = Store::open(storeDir);
  ASSERT_TRUE(store.isOk());
  auto r = (*store)->importCsv("trial", testing::trialDictionary(), tmp / "v1.csv");
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  EXPECT_GT(r->version, committedVersion);
  auto ds = (*store)->openDataset("trial");
  ASSERT_TRUE(ds.isOk());
  testing::expectDatasetMatches(**ds, kV1Rows, 0);
}

}  // namespace
}  // namespace trialmesh::storage
