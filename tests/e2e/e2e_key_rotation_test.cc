// Issue #13 item 3, a key rotation end to end on 127.0.0.1 with two real trialmesh-node
// processes checking each other every 100 ms: the organiser publishes the new key with the old
// one under previous_keys (retiring a few seconds later) and the nodes reload; site 0 keeps
// answering on its old key, then is stopped, `trialmesh rotate-key` records the change in its
// log signed by both keys and installs the new identity, and it starts again. Queries before,
// during and after are all answered; site 1 follows site 0's log across the change with no
// peer_log_alert anywhere, and so does a board's `trialmesh audit verify` pin; after the
// retirement time the old key is refused, naming its state; and a real rewrite of site 0's
// log still raises the alert.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "e2e_federation_fixture.h"
#include "node/child_process.h"
#include "node/coordinator.h"
#include "node/local_federation.h"

namespace trialmesh::node {
namespace {

using namespace std::chrono_literals;

class KeyRotationE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ =
        std::filesystem::temp_directory_path() / ("trialmesh-keyrot-" + std::to_string(::getpid()));
    startLocalFederation(dir_, 2, 200, fed_);
    // Peers check each other every 100 ms.
    fed_->stop(5s);
    for (size_t i = 0; i < fed_->siteCount(); ++i) {
      std::string config = readFile(fed_->siteConfigPath(i));
      const size_t at = config.find("[ethics]\n");
      ASSERT_NE(at, std::string::npos);
      config.insert(at + 9, "peer_check_interval_ms = 100\n");
      std::ofstream(fed_->siteConfigPath(i), std::ios::trunc) << config;
    }
    ASSERT_TRUE(fed_->start(30s).isOk());
  }
  void TearDown() override { stopLocalFederation(fed_, dir_); }

  // A federated count with the members file as it is now; the number of sites that answered.
  size_t query() {
    auto members = loadMembers(fed_->membersPath());
    EXPECT_TRUE(members.isOk()) << members.status().toString();
    if (!members) return 0;
    FederatedQueryOptions options;
    options.deadline = 10s;
    auto r =
        runFederatedQuery(fed_->coordinator(), *members, LocalFederation::kStudy, "count", options);
    EXPECT_TRUE(r.isOk()) << r.status().toString();
    if (!r) return 0;
    for (const auto& s : r->sites) {
      EXPECT_EQ(s.outcome, SiteOutcomeKind::kAnswered) << s.site << ": " << s.reason;
    }
    return r->answered();
  }

  // Runs the trialmesh CLI; returns its exit status and combined output.
  std::pair<int, std::string> cli(std::vector<std::string> args) {
    const std::string out = (dir_ / "cli-output.txt").string();
    std::filesystem::remove(out);
    args.insert(args.begin(), {"-c", "exec \"$0\" \"$@\" 1>&2", TRIALMESH_CLI_BINARY});
    auto p = ChildProcess::spawn("/bin/sh", args, out);
    if (!p) return {-1, p.status().toString()};
    auto status = p->waitFor(60s);
    if (!status) p->stop(1s);
    return {status.value_or(-1), readFile(out)};
  }

  std::pair<int, std::string> boardVerify() {
    return cli({"audit", "verify", "--node", fed_->siteName(0), "--members", fed_->membersPath(),
                "--identity", fed_->committeeKeyPath(), "--state", (dir_ / "pins").string()});
  }

  // Waits (bounded) until site `i`'s log contains `text`; returns whether it did.
  bool waitForLog(size_t i, const std::string& text, std::chrono::milliseconds limit = 20s) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      if (readFile(fed_->siteLogPath(i)).find(text) != std::string::npos) return true;
      std::this_thread::sleep_for(50ms);
    }
    return false;
  }

  size_t count(size_t i, const std::string& text) {
    const std::string log = readFile(fed_->siteLogPath(i));
    size_t n = 0;
    for (size_t at = log.find(text); at != std::string::npos; at = log.find(text, at + 1)) ++n;
    return n;
  }

  std::filesystem::path dir_;
  std::unique_ptr<LocalFederation> fed_;
};

TEST_F(KeyRotationE2eTest, QueriesBeforeDuringAndAfterWithNoAlertThenTheOldKeyIsRefused) {
  const std::string site0 = fed_->siteName(0);
  const std::string site0Dir = fed_->siteDirectory(0);
  const std::string config0 = fed_->siteConfigPath(0);
  const std::string oldKeyPath = site0Dir + "/" + site0 + ".key";
  auto oldIdentity = crypto::loadIdentity(oldKeyPath, {});
  ASSERT_TRUE(oldIdentity.isOk()) << oldIdentity.status().toString();

  // Before: answered, and site 1 and the board pin site 0's head under the old key.
  ASSERT_EQ(query(), 2u);
  ASSERT_TRUE(waitForLog(1, "peer_head_pinned")) << readFile(fed_->siteLogPath(1));
  auto [pinned, pinnedText] = boardVerify();
  ASSERT_EQ(pinned, 0) << pinnedText;

  // 1. Site IT generates the new identity; the organiser publishes it, the old key retiring
  // in 5 s (the grace period), and every node reloads.
  const std::string newKeyPath = site0Dir + "/new.key";
  auto [generated, generatedText] =
      cli({"rotate-key", "--config", config0, "--new-identity", newKeyPath, "--generate"});
  ASSERT_EQ(generated, 0) << generatedText;
  auto newIdentity = crypto::loadIdentity(newKeyPath, {});
  ASSERT_TRUE(newIdentity.isOk()) << newIdentity.status().toString();
  EXPECT_NE(generatedText.find(newIdentity->pub.toText()), std::string::npos) << generatedText;
  // Switching before the organiser published the new key is refused, with what to do.
  auto [early, earlyText] = cli({"rotate-key", "--config", config0, "--new-identity", newKeyPath});
  EXPECT_EQ(early, 1) << earlyText;
  EXPECT_NE(earlyText.find("the organiser must publish the new key first"), std::string::npos)
      << earlyText;
  const int64_t retiredMs = (nowUnixMs() / 1000 + 5) * 1000;
  std::string members = readFile(fed_->membersPath());
  const std::string oldLine = "public_key = \"" + oldIdentity->pub.toText() + "\"";
  const size_t at = members.find(oldLine);
  ASSERT_NE(at, std::string::npos);
  members.replace(at, oldLine.size(),
                  "public_key = \"" + newIdentity->pub.toText() +
                      "\"\nprevious_keys = [{ key = \"" + oldIdentity->pub.toText() +
                      "\", retired = \"" + formatUtcTime(retiredMs) + "\" }]");
  std::ofstream(fed_->membersPath(), std::ios::trunc) << members;
  ASSERT_TRUE(fed_->reloadMembers().isOk());
  for (size_t i = 0; i < fed_->siteCount(); ++i) fed_->siteProcess(i)->signal(SIGHUP);
  for (size_t i = 0; i < fed_->siteCount(); ++i) {
    ASSERT_TRUE(waitForLog(i, "reload_done")) << readFile(fed_->siteLogPath(i));
  }

  // During: site 0 still runs on its previous key, which everyone accepts until retirement.
  EXPECT_EQ(query(), 2u);
  ASSERT_LT(nowUnixMs(), retiredMs) << "the machine is too slow for this test's grace period";

  // 2. Not while the node runs (it holds the audit log) ...
  auto [running, runningText] =
      cli({"rotate-key", "--config", config0, "--new-identity", newKeyPath});
  EXPECT_EQ(running, 1) << runningText;
  EXPECT_NE(runningText.find("stop the node before rotating its key"), std::string::npos)
      << runningText;
  // ... but with site 0 stopped, rotate-key records the change and installs the new identity.
  ASSERT_EQ(fed_->siteProcess(0)->stop(5s), 0);
  auto [rotated, rotatedText] =
      cli({"rotate-key", "--config", config0, "--new-identity", newKeyPath});
  ASSERT_EQ(rotated, 0) << rotatedText;
  EXPECT_NE(rotatedText.find("key-rotation member=" + site0 + " " + oldIdentity->pub.toText() +
                             " -> " + newIdentity->pub.toText()),
            std::string::npos)
      << rotatedText;
  EXPECT_NE(rotatedText.find("signed by both keys (verified)"), std::string::npos) << rotatedText;
  EXPECT_TRUE(std::filesystem::exists(oldKeyPath + ".pub"));
  auto installed = crypto::loadIdentity(oldKeyPath, {});
  ASSERT_TRUE(installed.isOk()) << installed.status().toString();
  EXPECT_EQ(installed->pub, newIdentity->pub);
  ASSERT_TRUE(fed_->startSite(0, 10s).isOk());

  // After: answered; site 1 follows site 0's log across the change; so does the board's pin.
  EXPECT_EQ(query(), 2u);
  ASSERT_TRUE(waitForLog(1, "peer_key_rotated")) << readFile(fed_->siteLogPath(1));
  auto [followed, followedText] = boardVerify();
  ASSERT_EQ(followed, 0) << followedText;
  EXPECT_NE(followedText.find("records the key rotation to " + newIdentity->pub.toText()),
            std::string::npos)
      << followedText;
  for (size_t i = 0; i < fed_->siteCount(); ++i) {
    EXPECT_EQ(count(i, "peer_log_alert"), 0u) << readFile(fed_->siteLogPath(i));
  }

  // After retirement the old key is refused, and the refusal says why.
  while (nowUnixMs() < retiredMs + 100) std::this_thread::sleep_for(50ms);
  auto old = fetchAuditHead(*oldIdentity, fed_->members(), fed_->siteName(1), {}, 5s);
  EXPECT_FALSE(old.isOk());
  ASSERT_TRUE(waitForLog(1, "was retired at " + formatUtcTime(retiredMs)))
      << readFile(fed_->siteLogPath(1));
  EXPECT_EQ(query(), 2u);
  EXPECT_EQ(count(1, "peer_log_alert"), 0u) << readFile(fed_->siteLogPath(1));

  // A real rewrite still alerts: site 0's log replaced by a fresh one while it was stopped.
  ASSERT_EQ(fed_->siteProcess(0)->stop(5s), 0);
  std::filesystem::remove_all(fed_->siteAuditDir(0));
  ASSERT_TRUE(fed_->startSite(0, 10s).isOk());
  ASSERT_TRUE(waitForLog(1, "peer_log_alert")) << readFile(fed_->siteLogPath(1));
  EXPECT_NE(readFile(fed_->siteLogPath(1)).find("fork detected"), std::string::npos);
}

}  // namespace
}  // namespace trialmesh::node
