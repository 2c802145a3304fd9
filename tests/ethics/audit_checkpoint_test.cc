// AuditLog::checkpoint (backups, node/backup.h): while appenders keep writing from other
// threads, the copy holds exactly the entries the returned signed head covers, and the
// `alongside` callback runs while no append can land.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <thread>
#include <utility>
#include <vector>

#include "ethics/audit_log.h"

namespace trialmesh::ethics {
namespace {

TEST(AuditCheckpointTest, CopyMatchesTheSignedHeadUnderConcurrentAppends) {
  const std::string dir = ::testing::TempDir() + "/audit_checkpoint";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const crypto::Identity node = crypto::generateIdentity();
  auto log = AuditLog::open(dir + "/log", node);
  ASSERT_TRUE(log.isOk()) << log.status().toString();
  using Clock = std::chrono::steady_clock;
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> appended{0};
  // When each append started and the sequence number it got, per appender (read after the
  // threads joined).
  std::vector<std::vector<std::pair<Clock::time_point, uint64_t>>> spans(2);
  std::vector<std::thread> appenders;
  for (int t = 0; t < 2; ++t) {
    appenders.emplace_back([&, t] {
      for (int i = 0; !stop.load(); ++i) {
        const auto start = Clock::now();
        auto e = (*log)->append(EntryKind::kNodeStart, NodeEvent{std::to_string(t * 100000 + i)},
                                i % 2 ? Durability::kDeferred : Durability::kSynced);
        ASSERT_TRUE(e.isOk()) << e.status().toString();
        spans[t].emplace_back(start, e->sequence);
        ++appended;
      }
    });
  }
  while ((*log)->size() < 20) std::this_thread::yield();
  // While `alongside` runs no append can land (each needs the log's lock), so an append that
  // started after it began is not in the copy: its sequence number is at least the head's
  // size. (Counting appends that return during the window would race: one that finished just
  // before it may only return inside it.)
  Clock::time_point windowStart;
  auto head = (*log)->checkpoint(dir + "/copy", [&]() -> Status {
    windowStart = Clock::now();
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    return Status::ok();
  });
  // The appenders go on after the checkpoint.
  const uint64_t atCheckpoint = appended.load();
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (appended.load() < atCheckpoint + 4 && std::chrono::steady_clock::now() < until) {
    std::this_thread::yield();
  }
  stop = true;
  for (auto& t : appenders) t.join();
  ASSERT_TRUE(head.isOk()) << head.status().toString();
  size_t startedAfter = 0, inTheCopy = 0;
  for (const auto& list : spans)
    for (const auto& [start, sequence] : list) {
      if (start <= windowStart) continue;
      ++startedAfter;
      if (sequence < head->treeSize) ++inTheCopy;
    }
  EXPECT_GT(startedAfter, 0u) << "no append started after the checkpoint: nothing was tested";
  EXPECT_EQ(inTheCopy, 0u) << "appends landed while `alongside` ran";
  ASSERT_TRUE((*log)->flush().isOk());
  EXPECT_LT(head->treeSize, (*log)->size());  // not in the copy

  auto entries = AuditLog::readAllUnchecked(dir + "/copy");
  ASSERT_TRUE(entries.isOk()) << entries.status().toString();
  ASSERT_EQ(entries->size(), head->treeSize);
  EXPECT_TRUE(verifyLog(*entries, *head, node.pub).isOk());

  // An error from `alongside` is returned as is and nothing is copied.
  auto failed =
      (*log)->checkpoint(dir + "/copy2", [] { return Status::ioError("disk full (test)"); });
  ASSERT_FALSE(failed.isOk());
  EXPECT_EQ(failed.status().message(), "disk full (test)");
  EXPECT_FALSE(std::filesystem::exists(dir + "/copy2"));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace trialmesh::ethics
