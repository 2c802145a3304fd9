// The board's verifier remembers (issue #12 item 4), through the real `trialmesh audit verify`
// against real trialmesh-node processes on 127.0.0.1: the first run pins the site's tree head
// (trust on first use), later runs require a consistency proof from it, a restarted node
// still proves consistency, `--expect-head` checks against a head from an earlier report
// without trust on first use, and a log replaced while the node was stopped (so it is signed
// afresh, consistently, by the same key) fails both while it is shorter than the pinned head
// (truncated) and once it has grown past it (rewritten).
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "e2e_federation_fixture.h"
#include "ethics/head_pin.h"
#include "node/child_process.h"
#include "node/coordinator.h"
#include "node/local_federation.h"

namespace trialmesh::node {
namespace {

using namespace std::chrono_literals;

class AuditPinE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("trialmesh-pin-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    startLocalFederation(dir_, 2, 200, fed_);
  }
  void TearDown() override { stopLocalFederation(fed_, dir_); }

  void query() {
    FederatedQueryOptions options;
    options.deadline = 10s;
    auto r = runFederatedQuery(fed_->coordinator(), fed_->members(), LocalFederation::kStudy,
                               "count", options);
    ASSERT_TRUE(r.isOk()) << r.status().toString();
  }

  // Runs `trialmesh audit verify` for site 0; returns its exit status and combined output.
  std::pair<int, std::string> verify(const std::string& state,
                                     const std::vector<std::string>& extra = {}) {
    const std::string out = (dir_ / "cli-output.txt").string();
    std::filesystem::remove(out);
    // ChildProcess gives the child only stderr as an open output; send stdout there too.
    std::vector<std::string> args = {"-c",
                                     "exec \"$0\" \"$@\" 1>&2",
                                     TRIALMESH_CLI_BINARY,
                                     "audit",
                                     "verify",
                                     "--node",
                                     fed_->siteName(0),
                                     "--members",
                                     fed_->membersPath(),
                                     "--identity",
                                     fed_->committeeKeyPath(),
                                     "--state",
                                     (dir_ / state).string()};
    args.insert(args.end(), extra.begin(), extra.end());
    auto p = ChildProcess::spawn("/bin/sh", args, out);
    if (!p) return {-1, p.status().toString()};
    auto status = p->waitFor(60s);
    if (!status) p->stop(1s);
    return {status.value_or(-1), readFile(out)};
  }

  static std::string reportHead(const std::string& output) {
    const std::string marker = "pass as --expect-head next time): ";
    const size_t at = output.find(marker);
    if (at == std::string::npos) return {};
    return output.substr(at + marker.size(), output.find('\n', at) - at - marker.size());
  }

  uint64_t siteLogSize() {
    auto head = fetchAuditHead(fed_->committee(), fed_->members(), fed_->siteName(0), {});
    EXPECT_TRUE(head.isOk()) << head.status().toString();
    return head ? head->head.treeSize : 0;
  }

  std::filesystem::path dir_;
  std::unique_ptr<LocalFederation> fed_;
};

TEST_F(AuditPinE2eTest, PinsProvesAcrossRestartsAndCatchesAReplacedLog) {
  query();
  auto [first, firstText] = verify("pins");
  ASSERT_EQ(first, 0) << firstText;
  EXPECT_NE(firstText.find("trust on first use"), std::string::npos) << firstText;
  const std::string head = reportHead(firstText);
  ASSERT_EQ(head.find('@'), 64u) << firstText;

  query();
  auto [second, secondText] = verify("pins");
  ASSERT_EQ(second, 0) << secondText;
  EXPECT_NE(secondText.find("consistent with the head pinned before"), std::string::npos)
      << secondText;

  // A restarted node keeps its log, proves consistency and is accepted as before.
  ASSERT_EQ(fed_->siteProcess(0)->stop(5s), 0);
  ASSERT_TRUE(fed_->startSite(0, 10s).isOk());
  auto [restarted, restartedText] = verify("pins");
  ASSERT_EQ(restarted, 0) << restartedText;
  EXPECT_NE(restartedText.find("consistent with the head pinned before"), std::string::npos)
      << restartedText;

  // A board that never ran verify on this computer checks against the head of the first report.
  auto [expected, expectedText] = verify("fresh-pins", {"--expect-head", head});
  ASSERT_EQ(expected, 0) << expectedText;
  EXPECT_NE(expectedText.find("matches the expected head " + head), std::string::npos)
      << expectedText;
  auto [malformed, malformedText] = verify("other-pins", {"--expect-head", "abc@3"});
  EXPECT_EQ(malformed, 1) << malformedText;
  EXPECT_NE(malformedText.find("<tree size>"), std::string::npos) << malformedText;

  // The operator stops the site and replaces its log by a fresh one: same key, every head
  // signed consistently, only shorter than what the board pinned.
  const uint64_t pinnedSize = siteLogSize();
  auto [pinNow, pinNowText] = verify("pins");
  ASSERT_EQ(pinNow, 0) << pinNowText;
  ASSERT_EQ(fed_->siteProcess(0)->stop(5s), 0);
  std::filesystem::remove_all(fed_->siteAuditDir(0));
  ASSERT_TRUE(fed_->startSite(0, 10s).isOk());
  ASSERT_LT(siteLogSize(), pinnedSize);
  auto [truncated, truncatedText] = verify("pins");
  EXPECT_EQ(truncated, 1) << truncatedText;
  EXPECT_NE(truncatedText.find("FAILED verification"), std::string::npos) << truncatedText;
  EXPECT_NE(truncatedText.find("truncated or rolled back"), std::string::npos) << truncatedText;

  // Grown past the pinned size, the new history is still not an extension of the pinned one.
  for (int i = 0; i < 40 && siteLogSize() <= pinnedSize; ++i) query();
  ASSERT_GT(siteLogSize(), pinnedSize);
  auto [rewritten, rewrittenText] = verify("pins");
  EXPECT_EQ(rewritten, 1) << rewrittenText;
  EXPECT_NE(rewrittenText.find("the log was rewritten"), std::string::npos) << rewrittenText;
  // The failed runs left the pin alone, and the report head still catches the rewrite.
  auto [again, againText] = verify("pins");
  EXPECT_EQ(again, 1) << againText;
  auto [reported, reportedText] = verify("third-pins", {"--expect-head", head});
  EXPECT_EQ(reported, 1) << reportedText;
  EXPECT_NE(reportedText.find("the log was rewritten"), std::string::npos) << reportedText;
}

// [ethics.peer_heads]: a site told a peer's head out of band does not trust the peer's first
// head; a log that does not extend the configured head is an alert at first contact.
TEST_F(AuditPinE2eTest, PeerWithAConfiguredHeadMustExtendIt) {
  query();
  auto head = fetchAuditHead(fed_->committee(), fed_->members(), fed_->siteName(0), {});
  ASSERT_TRUE(head.isOk()) << head.status().toString();
  const std::string site0 = fed_->siteName(0);
  const std::string good = ethics::formatExpectedHead(head->head);
  ethics::SignedTreeHead forged = head->head;
  forged.root[0] ^= 1;
  const std::string bad = ethics::formatExpectedHead(forged);
  const std::string original = readFile(fed_->siteConfigPath(1));
  const std::string stored = fed_->siteDirectory(1) + "/store/ethics-peer-heads/" + site0 + ".sth";

  // Restarts site 1 checking peers every 150 ms with `configured` as site 0's head; returns
  // site 1's log once it has pinned site 0 or raised an alert (or after 20 s).
  auto runWith = [&](const std::string& configured) {
    fed_->stop(5s);
    std::filesystem::remove(stored);
    std::string config = original;
    const size_t at = config.find("[ethics]\n");
    EXPECT_NE(at, std::string::npos);
    config.insert(at + 9, "peer_check_interval_ms = 150\npeer_heads = { \"" + site0 + "\" = \"" +
                              configured + "\" }\n");
    std::ofstream(fed_->siteConfigPath(1), std::ios::trunc) << config;
    // The log file is appended to across restarts: only this run's lines count.
    const size_t earlier = readFile(fed_->siteLogPath(1)).size();
    Status started = fed_->start(30s);
    EXPECT_TRUE(started.isOk()) << started.toString();
    std::string log;
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    while (std::chrono::steady_clock::now() < deadline) {
      log = readFile(fed_->siteLogPath(1)).substr(earlier);
      if (log.find("peer_head_pinned") != std::string::npos ||
          log.find("peer_log_alert") != std::string::npos) {
        break;
      }
      std::this_thread::sleep_for(50ms);
    }
    return log;
  };

  const std::string accepted = runWith(good);
  EXPECT_NE(accepted.find("peer_head_pinned"), std::string::npos) << accepted;
  EXPECT_NE(accepted.find("configured head"), std::string::npos) << accepted;
  EXPECT_EQ(accepted.find("peer_log_alert"), std::string::npos) << accepted;

  const std::string refused = runWith(bad);
  EXPECT_NE(refused.find("peer_log_alert"), std::string::npos) << refused;
  EXPECT_NE(refused.find("not an extension of the head configured in [ethics.peer_heads]"),
            std::string::npos)
      << refused;
  EXPECT_FALSE(std::filesystem::exists(stored)) << "a refused head must not be pinned";

  // A name that is not a peer site stops the node at start, naming it.
  fed_->stop(5s);
  std::string config = original;
  config.insert(config.find("[ethics]\n") + 9, "peer_heads = { \"nobody\" = \"" + good + "\" }\n");
  std::ofstream(fed_->siteConfigPath(1), std::ios::trunc) << config;
  Status unknown = fed_->startSite(1, 10s);
  ASSERT_FALSE(unknown.isOk());
  EXPECT_NE(unknown.message().find("[ethics.peer_heads] nobody: not another site"),
            std::string::npos)
      << unknown.message();
  std::ofstream(fed_->siteConfigPath(1), std::ios::trunc) << original;
}

}  // namespace
}  // namespace trialmesh::node
