// Rate-limited audit of refusals before the ethics check (issue #12 item 6): the limiter's
// windows and summaries with exact counts, and the auditor writing real audit-log entries and
// counting every refusal in the metrics.
#include "node/refusal_audit.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "crypto/identity.h"

namespace trialmesh::node {
namespace {

ethics::RefusalEvent refusal(const std::string& cls, const std::string& peer,
                             const std::string& remote, const std::string& message = "denied") {
  return ethics::RefusalEvent{cls, peer, remote, message, 0};
}

TEST(RefusalRateLimiterTest, FirstNPerWindowAreWrittenTheRestSummarisedWhenItCloses) {
  RefusalRateLimiter limiter(3, 60'000);
  int64_t t = 1'000;
  int written = 0;
  for (int i = 0; i < 10; ++i) {
    auto out = limiter.admit(refusal("bad-signature", "coordinator", "127.0.0.1:5000"), t + i);
    for (const auto& e : out) {
      EXPECT_EQ(e.summarised, 0u);
      ++written;
    }
  }
  EXPECT_EQ(written, 3);
  // Nothing closes before the minute is up.
  EXPECT_TRUE(limiter.expire(t + 59'999).empty());
  auto summaries = limiter.expire(t + 60'000);
  ASSERT_EQ(summaries.size(), 1u);
  EXPECT_EQ(summaries[0].reasonClass, "bad-signature");
  EXPECT_EQ(summaries[0].summarised, 7u);
  EXPECT_EQ(summaries[0].peer, "coordinator");
  EXPECT_EQ(summaries[0].remote, "127.0.0.1:5000");
  EXPECT_NE(summaries[0].message.find("7 further refusals of class bad-signature"),
            std::string::npos)
      << summaries[0].message;
  EXPECT_NE(summaries[0].message.find("from coordinator (7)"), std::string::npos)
      << summaries[0].message;
  // The window ended: the next refusal is written again, and there is nothing more to drain.
  auto next = limiter.admit(refusal("bad-signature", "coordinator", "127.0.0.1:5000"), t + 61'000);
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(next[0].summarised, 0u);
  EXPECT_TRUE(limiter.drain().empty());
}

TEST(RefusalRateLimiterTest, NextRefusalAfterTheWindowBringsTheSummaryFirst) {
  RefusalRateLimiter limiter(1, 60'000);
  EXPECT_EQ(limiter.admit(refusal("replay", "coordinator", "a:1"), 0).size(), 1u);
  EXPECT_TRUE(limiter.admit(refusal("replay", "coordinator", "a:1"), 10).empty());
  EXPECT_TRUE(limiter.admit(refusal("replay", "coordinator", "a:1"), 20).empty());
  // No timer ran: the class's next refusal after the window writes the summary, then itself.
  auto out = limiter.admit(refusal("replay", "coordinator", "a:1", "the new one"), 70'000);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].summarised, 2u);
  EXPECT_EQ(out[1].summarised, 0u);
  EXPECT_EQ(out[1].message, "the new one");
}

TEST(RefusalRateLimiterTest, ClassesHaveTheirOwnWindowsAndSummariesNameTheSources) {
  RefusalRateLimiter limiter(2, 60'000);
  uint64_t writtenHandshake = 0, writtenStale = 0;
  for (int i = 0; i < 50; ++i) {
    // Many unauthenticated ports of one host count as one source; a member by its name.
    writtenHandshake +=
        limiter
            .admit(refusal("handshake", "unauthenticated", "127.0.0.2:" + std::to_string(1000 + i)),
                   i)
            .size();
    writtenStale +=
        limiter.admit(refusal("stale", "coord-" + std::to_string(i % 7), "x:1"), i).size();
  }
  EXPECT_EQ(writtenHandshake, 2u);
  EXPECT_EQ(writtenStale, 2u);
  auto summaries = limiter.drain();  // node stop: windows still open are summarised too
  ASSERT_EQ(summaries.size(), 2u);
  uint64_t total = 0;
  for (const auto& s : summaries) {
    total += s.summarised;
    if (s.reasonClass == "handshake") {
      EXPECT_EQ(s.summarised, 48u);
      EXPECT_NE(s.message.find("from unauthenticated 127.0.0.2 (48)"), std::string::npos)
          << s.message;
    } else {
      ASSERT_EQ(s.reasonClass, "stale");
      EXPECT_EQ(s.summarised, 48u);
      EXPECT_EQ(s.peer, "several");
      // Five sources named, the other two together.
      EXPECT_NE(s.message.find("other sources ("), std::string::npos) << s.message;
    }
  }
  EXPECT_EQ(total, 96u);
  EXPECT_TRUE(limiter.drain().empty());
}

TEST(RefusalRateLimiterTest, ZeroPerWindowSummarisesEverything) {
  RefusalRateLimiter limiter(0, 60'000);
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(limiter.admit(refusal("limit", "c", "a:1"), i).empty());
  auto s = limiter.expire(60'000);
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].summarised, 5u);
  EXPECT_NE(s[0].message.find("5 further refusals"), std::string::npos);
}

class RefusalAuditorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/refusal_audit_" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::remove_all(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::vector<ethics::Entry> entries(ethics::AuditLog& log) {
    std::vector<ethics::Entry> out;
    auto stored = log.readRange(0, log.size());
    EXPECT_TRUE(stored.isOk());
    for (const auto& s : *stored) {
      auto e =
          ethics::decodeEntry({reinterpret_cast<const uint8_t*>(s.bytes.data()), s.bytes.size()});
      EXPECT_TRUE(e.isOk());
      out.push_back(*e);
    }
    return out;
  }
  std::string dir_;
  crypto::Identity identity_ = crypto::generateIdentity();
};

TEST_F(RefusalAuditorTest, FloodGrowsTheLogByTheLimitPlusOneSummaryAndIsCountedExactly) {
  auto log = ethics::AuditLog::open(dir_, identity_);
  ASSERT_TRUE(log.isOk()) << log.status().toString();
  ops::Registry registry;
  ops::NodeMetrics metrics(registry);
  int64_t now = 0;
  RefusalAuditor auditor(log->get(), metrics, 5, [&now] { return now; });
  for (int i = 0; i < 500; ++i) {
    now = i;  // all within one minute
    auditor.record(ops::RefusalClass::kBadSignature, "coordinator", "127.0.0.1:4000",
                   "PermissionDenied: query signature does not verify");
  }
  auditor.record(ops::RefusalClass::kOversized, "", "127.0.0.9:1", "message of 2 GiB");
  EXPECT_EQ((*log)->size(), 6u);  // 5 bad signatures + 1 oversized; the rest only counted
  EXPECT_EQ(metrics.refusals(ops::RefusalClass::kBadSignature).value(), 500u);
  EXPECT_EQ(metrics.refusalsSummarised(ops::RefusalClass::kBadSignature).value(), 495u);
  EXPECT_EQ(metrics.refusals(ops::RefusalClass::kOversized).value(), 1u);
  now = 30'000;
  auditor.expire();  // the window is still open
  EXPECT_EQ((*log)->size(), 6u);
  now = 60'000;
  auditor.expire();
  ASSERT_EQ((*log)->size(), 7u);
  auto all = entries(**log);
  uint64_t represented = 0;
  for (const auto& e : all) {
    ASSERT_EQ(e.kind, ethics::EntryKind::kRefusal);
    const auto& r = std::get<ethics::RefusalEvent>(e.body);
    if (r.reasonClass == "bad-signature") represented += r.summarised == 0 ? 1 : r.summarised;
  }
  EXPECT_EQ(represented, 500u);
  const auto& oversized = std::get<ethics::RefusalEvent>(all[5].body);
  EXPECT_EQ(oversized.peer, "unauthenticated");
  EXPECT_EQ(oversized.message, "message of 2 GiB");
  const auto& summary = std::get<ethics::RefusalEvent>(all[6].body);
  EXPECT_EQ(summary.summarised, 495u);
  // The log still verifies end to end.
  auto stored = (*log)->readRange(0, (*log)->size());
  ASSERT_TRUE(stored.isOk());
  EXPECT_TRUE(ethics::verifyLog(*stored, (*log)->signedTreeHead(), identity_.pub).isOk());
  // Rendered for Prometheus with the class label.
  EXPECT_NE(registry.render().find("trialmesh_refusals_total{class=\"bad-signature\"} 500"),
            std::string::npos);
}

TEST_F(RefusalAuditorTest, WithoutALogOnlyCounts) {
  ops::Registry registry;
  ops::NodeMetrics metrics(registry);
  RefusalAuditor auditor(nullptr, metrics, 1, [] { return int64_t{0}; });
  auditor.record(ops::RefusalClass::kReplay, "c", "a:1", "nonce already used");
  auditor.record(ops::RefusalClass::kReplay, "c", "a:1", "nonce already used");
  auditor.drain();
  EXPECT_EQ(metrics.refusals(ops::RefusalClass::kReplay).value(), 2u);
  EXPECT_EQ(metrics.refusalsSummarised(ops::RefusalClass::kReplay).value(), 1u);
}

}  // namespace
}  // namespace trialmesh::node
