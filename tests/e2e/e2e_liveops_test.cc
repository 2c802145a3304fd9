// Live operations on a running node (issue #13 items 2 and 5), with a real trialmesh-node on
// 127.0.0.1 and the real CLI: an import through the node's admin socket while a coordinator
// queries continuously (no failed query, every answer exactly the old or the new version's),
// an import error naming the file and line, kill -9 mid-import (the old version survives the
// restart), `datasets` and `query --local` beside the running node, and backup -> wipe ->
// restore -> the node starts (its audit log verified) and answers the same.
//
// The new CSV reaches the CLI through a FIFO the test writes in steps, so the import is
// reliably in progress while queries run and when the node is killed.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "e2e_federation_fixture.h"
#include "ethics/audit_log.h"
#include "node/child_process.h"
#include "node/coordinator.h"
#include "node/local_federation.h"
#include "query/format.h"

namespace trialmesh::node {
namespace {

using namespace std::chrono_literals;

constexpr const char* kQuery = "count, mean(age), var(bmi) by arm";

class LiveOpsE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("trialmesh-liveops-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    startLocalFederation(dir_, 1, 3000, fed_);
    std::ifstream in(fed_->siteCsvPath(0));
    for (std::string line; std::getline(in, line);) lines_.push_back(line);
    ASSERT_GT(lines_.size(), 2501u);
  }
  void TearDown() override { stopLocalFederation(fed_, dir_); }

  std::string store() const { return fed_->siteDirectory(0) + "/store"; }

  // The federated answer as text; an error when the site did not answer.
  Result<std::string> answer() {
    FederatedQueryOptions options;
    options.deadline = 10s;
    TM_ASSIGN_OR_RETURN(FederatedResult r,
                        runFederatedQuery(fed_->coordinator(), fed_->members(),
                                          LocalFederation::kStudy, kQuery, options));
    if (r.answered() != 1 || !r.table) {
      return Status::unavailable("site did not answer: " +
                                 (r.sites.empty() ? std::string("?") : r.sites[0].reason));
    }
    return query::formatTable(*r.table);
  }

  // Starts the CLI with `args`; stdout and stderr into dir_/<name>.out.
  ChildProcess startCli(const std::vector<std::string>& args, const std::string& name) {
    std::vector<std::string> shellArgs = {"-c", "exec \"$0\" \"$@\" 1>&2", TRIALMESH_CLI_BINARY};
    shellArgs.insert(shellArgs.end(), args.begin(), args.end());
    auto p = ChildProcess::spawn("/bin/sh", shellArgs, (dir_ / (name + ".out")).string());
    EXPECT_TRUE(p.isOk()) << p.status().toString();
    return std::move(*p);
  }
  std::pair<int, std::string> runCli(const std::vector<std::string>& args,
                                     const std::string& name = "cli") {
    std::filesystem::remove(dir_ / (name + ".out"));
    ChildProcess p = startCli(args, name);
    auto status = p.waitFor(60s);
    if (!status) p.stop(1s);
    return {status.value_or(-1), readFile((dir_ / (name + ".out")).string())};
  }
  std::vector<std::string> importArgs(const std::string& csv) const {
    return {"import",
            "--store",
            store(),
            "--dataset",
            LocalFederation::kDataset,
            "--dictionary",
            fed_->dictionaryPath(),
            csv};
  }
  // Header and the first `rows` subjects of the site's CSV.
  std::string firstRows(size_t rows) const {
    std::string out;
    for (size_t i = 0; i <= rows; ++i) out += lines_[i] + "\n";
    return out;
  }

  std::filesystem::path dir_;
  std::unique_ptr<LocalFederation> fed_;
  std::vector<std::string> lines_;
};

TEST_F(LiveOpsE2eTest, ImportUnderQueryLoadAnswersFromExactlyOneVersion) {
  auto before = answer();
  ASSERT_TRUE(before.isOk()) << before.status().toString();
  const std::string fifo = (dir_ / "refresh.csv").string();
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  // No --via-node: the CLI finds the node holding the store through <store>/admin-socket.
  std::filesystem::remove(dir_ / "import.out");
  ChildProcess cli = startCli(importArgs(fifo), "import");

  std::atomic<bool> stop{false};
  std::vector<Result<std::string>> answers;  // written by `load` only until it is joined
  std::atomic<size_t> answered{0};
  std::thread load([&] {
    while (!stop.load()) {
      answers.push_back(answer());
      ++answered;
    }
  });
  // The new version: the first 2000 subjects, fed in steps while the queries run.
  const std::string text = firstRows(2000);
  {
    std::ofstream out(fifo, std::ios::binary);  // opens once the CLI has the FIFO open
    const size_t step = text.size() / 4 + 1;
    for (size_t pos = 0; pos < text.size(); pos += step) {
      out << text.substr(pos, step) << std::flush;
      std::this_thread::sleep_for(150ms);
    }
  }
  auto exited = cli.waitFor(30s);
  const size_t duringImport = answered.load();
  const auto until = std::chrono::steady_clock::now() + 10s;
  while (answered.load() < duringImport + 3 && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(10ms);
  }
  stop = true;
  load.join();
  const std::string cliOut = readFile((dir_ / "import.out").string());
  ASSERT_EQ(exited.value_or(-1), 0) << cliOut;
  EXPECT_NE(cliOut.find("importing through the running node"), std::string::npos) << cliOut;
  EXPECT_NE(cliOut.find("imported 2000 rows into dataset 'lung7' (version 2)"), std::string::npos)
      << cliOut;

  auto after = answer();
  ASSERT_TRUE(after.isOk()) << after.status().toString();
  ASSERT_NE(*after, *before);
  size_t old = 0, fresh = 0;
  for (size_t i = 0; i < answers.size(); ++i) {
    ASSERT_TRUE(answers[i].isOk()) << "query " << i << ": " << answers[i].status().toString();
    const bool isOld = *answers[i] == *before, isNew = *answers[i] == *after;
    ASSERT_TRUE(isOld || isNew) << "query " << i << " answered neither version:\n" << *answers[i];
    // Versions only move forward: once the new one answered, the old one never again.
    if (isNew) ++fresh;
    if (isOld) {
      ASSERT_EQ(fresh, 0u) << "query " << i << " went back to the old version";
      ++old;
    }
  }
  EXPECT_GT(old, 0u) << "no query ran while the import was in progress";
  EXPECT_GE(fresh, 3u);

  // Reads beside the running node: datasets and query --local open the store read-only.
  auto [dsStatus, ds] = runCli({"datasets", "--store", store(), "--json"});
  ASSERT_EQ(dsStatus, 0) << ds;
  auto list = nlohmann::json::parse(ds);
  ASSERT_EQ(list.size(), 1u) << ds;
  EXPECT_EQ(list[0]["version"], 2u);
  EXPECT_EQ(list[0]["rows"], 2000u);
  auto [qStatus, q] = runCli(
      {"query", "--local", "--store", store(), "--dataset", LocalFederation::kDataset, "count"});
  ASSERT_EQ(qStatus, 0) << q;
  EXPECT_NE(q.find("2000"), std::string::npos) << q;
}

TEST_F(LiveOpsE2eTest, ImportErrorThroughTheNodeNamesFileAndLine) {
  auto before = answer();
  ASSERT_TRUE(before.isOk()) << before.status().toString();
  // Subject 2's age made impossible: the same message as an offline import, and no change.
  std::vector<std::string> header;
  std::stringstream hs(lines_[0]);
  for (std::string f; std::getline(hs, f, ',');) header.push_back(f);
  size_t ageColumn = 0;
  while (ageColumn < header.size() && header[ageColumn] != "AGE") ++ageColumn;
  ASSERT_LT(ageColumn, header.size());
  std::vector<std::string> fields;
  std::stringstream rs(lines_[2]);
  for (std::string f; std::getline(rs, f, ',');) fields.push_back(f);
  ASSERT_EQ(fields.size(), header.size());
  fields[ageColumn] = "999";
  std::string bad = lines_[0] + "\n" + lines_[1] + "\n";
  for (size_t i = 0; i < fields.size(); ++i) bad += (i ? "," : "") + fields[i];
  const std::string path = (dir_ / "bad.csv").string();
  std::ofstream(path) << bad << "\n";

  auto [status, out] = runCli(importArgs(path));
  EXPECT_EQ(status, 1) << out;
  EXPECT_NE(out.find("bad.csv:3: column 'AGE'"), std::string::npos) << out;
  auto after = answer();
  ASSERT_TRUE(after.isOk()) << after.status().toString();
  EXPECT_EQ(*after, *before);
}

TEST_F(LiveOpsE2eTest, KillNineMidImportLeavesTheOldVersion) {
  auto before = answer();
  ASSERT_TRUE(before.isOk()) << before.status().toString();
  const std::string fifo = (dir_ / "refresh.csv").string();
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  ChildProcess cli =
      startCli({"import", "--via-node", store() + "/admin.sock", "--store", store(), "--dataset",
                LocalFederation::kDataset, "--dictionary", fed_->dictionaryPath(), fifo},
               "import");
  {
    std::ofstream out(fifo, std::ios::binary);
    // More than a pipe buffer (64 KiB): the write returns only once the node has read most of
    // it, so the import is under way when the node is killed.
    const std::string half = firstRows(2500);
    ASSERT_GT(half.size(), size_t{128} << 10);
    out << half << std::flush;
    fed_->siteProcess(0)->signal(SIGKILL);
    ASSERT_TRUE(fed_->siteProcess(0)->waitFor(10s).has_value());
  }
  auto exited = cli.waitFor(30s);
  const std::string cliOut = readFile((dir_ / "import.out").string());
  EXPECT_EQ(exited.value_or(-1), 1) << cliOut;
  EXPECT_NE(cliOut.find("before answering"), std::string::npos) << cliOut;

  // The restart replaces the stale socket of the killed node; the old version answers.
  Status restarted = fed_->startSite(0, 30s);
  ASSERT_TRUE(restarted.isOk()) << restarted.toString();
  auto after = answer();
  ASSERT_TRUE(after.isOk()) << after.status().toString();
  EXPECT_EQ(*after, *before);
  auto [dsStatus, ds] = runCli({"datasets", "--store", store(), "--json"});
  ASSERT_EQ(dsStatus, 0) << ds;
  EXPECT_EQ(nlohmann::json::parse(ds)[0]["version"], 1u) << ds;
}

TEST_F(LiveOpsE2eTest, BackupWipeRestoreAnswersTheSame) {
  auto before = answer();
  ASSERT_TRUE(before.isOk()) << before.status().toString();
  const std::string backup = (dir_ / "backup").string();
  auto [bStatus, bOut] = runCli({"backup", "--config", fed_->siteConfigPath(0), "--to", backup});
  ASSERT_EQ(bStatus, 0) << bOut;
  auto manifest = nlohmann::json::parse(readFile(backup + "/MANIFEST.json"));
  const uint64_t backedUpEntries = manifest["audit_size"];
  ASSERT_GT(backedUpEntries, 0u);
  EXPECT_EQ(manifest["datasets"][0]["rows"], 3000u);

  // A manifest whose signed head was altered is refused before anything is copied.
  const std::string tampered = (dir_ / "tampered").string();
  std::filesystem::copy(backup, tampered, std::filesystem::copy_options::recursive);
  std::string head = manifest["audit_tree_head"];
  head[90] = head[90] == '0' ? '1' : '0';  // inside the root
  nlohmann::json bad = manifest;
  bad["audit_tree_head"] = head;
  std::ofstream(tampered + "/MANIFEST.json") << bad.dump();

  fed_->stop(5s);
  std::filesystem::remove_all(store());
  auto [tStatus, tOut] =
      runCli({"restore", "--from", tampered, "--data-dir", store()}, "restore-tampered");
  EXPECT_EQ(tStatus, 1) << tOut;
  EXPECT_NE(tOut.find("does not verify"), std::string::npos) << tOut;
  EXPECT_FALSE(std::filesystem::exists(store() + "/CURRENT"));

  auto [rStatus, rOut] = runCli({"restore", "--from", backup, "--data-dir", store()});
  ASSERT_EQ(rStatus, 0) << rOut;
  EXPECT_NE(rOut.find("the audit log verifies"), std::string::npos) << rOut;
  auto [again, againOut] = runCli({"restore", "--from", backup, "--data-dir", store()});
  EXPECT_EQ(again, 1) << againOut;
  EXPECT_NE(againOut.find("--force"), std::string::npos) << againOut;
  auto [forced, forcedOut] =
      runCli({"restore", "--from", backup, "--data-dir", store(), "--force"});
  EXPECT_EQ(forced, 0) << forcedOut;
  const std::string other = (dir_ / "not-a-data-dir").string();
  std::filesystem::create_directories(other);
  std::ofstream(other + "/notes.txt") << "keep me\n";
  auto [refused, refusedOut] =
      runCli({"restore", "--from", backup, "--data-dir", other, "--force"});
  EXPECT_EQ(refused, 1) << refusedOut;
  EXPECT_TRUE(std::filesystem::exists(other + "/notes.txt"));

  // The node starts (opening the log runs its full check) and answers as before.
  Status started = fed_->start(30s);
  ASSERT_TRUE(started.isOk()) << started.toString();
  auto after = answer();
  ASSERT_TRUE(after.isOk()) << after.status().toString();
  EXPECT_EQ(*after, *before);
  fed_->stop(5s);
  auto entries = ethics::AuditLog::readAllUnchecked(fed_->siteAuditDir(0));
  ASSERT_TRUE(entries.isOk()) << entries.status().toString();
  EXPECT_GT(entries->size(), backedUpEntries);  // continued after the restored prefix

  // With the node stopped, a backup is taken directly (same layout, the log as it is now).
  auto [oStatus, oOut] =
      runCli({"backup", "--config", fed_->siteConfigPath(0), "--to", (dir_ / "offline").string()});
  ASSERT_EQ(oStatus, 0) << oOut;
  auto offline = nlohmann::json::parse(readFile((dir_ / "offline/MANIFEST.json").string()));
  EXPECT_EQ(offline["audit_size"], entries->size());
}

// A restored log is a prefix of what a peer verified: the peer raises a fork alert (fork
// detection cannot tell a restore from a rollback), and once its operator accepts the head
// reported from the backup's manifest ([ethics.peer_heads], docs/deployment.md section 11),
// the restored log is pinned against that head with no alert.
TEST(LiveOpsPeersE2eTest, PeersAlertOnARestoredLogUntilTheReportedHeadIsConfigured) {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("trialmesh-liveops-peers-" + std::to_string(::getpid()));
  std::unique_ptr<LocalFederation> fed;
  startLocalFederation(dir, 2, 200, fed);
  auto cli = [&dir](const std::vector<std::string>& args) {
    std::vector<std::string> shellArgs = {"-c", "exec \"$0\" \"$@\" 1>&2", TRIALMESH_CLI_BINARY};
    shellArgs.insert(shellArgs.end(), args.begin(), args.end());
    const std::string out = (dir / "cli.out").string();
    std::filesystem::remove(out);
    auto p = ChildProcess::spawn("/bin/sh", shellArgs, out);
    std::optional<int> status = p.isOk() ? p->waitFor(60s) : std::nullopt;
    return std::make_pair(status.value_or(-1), readFile(out));
  };
  auto query = [&fed]() {
    FederatedQueryOptions options;
    options.deadline = 10s;
    auto r = runFederatedQuery(fed->coordinator(), fed->members(), LocalFederation::kStudy, "count",
                               options);
    return r.isOk() && r->answered() == 2;
  };
  // Bounded polling for a condition (the peer checks run every 200 ms).
  auto waitFor = [](const std::function<bool()>& done) {
    const auto until = std::chrono::steady_clock::now() + 20s;
    while (!done() && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(20ms);
    return done();
  };
  fed->stop(5s);
  for (size_t i = 0; i < 2; ++i) {
    std::string text = readFile(fed->siteConfigPath(i));
    const size_t at = text.find("[ethics]\n");
    ASSERT_NE(at, std::string::npos);
    text.insert(at + 9, "peer_check_interval_ms = 200\n");
    std::ofstream(fed->siteConfigPath(i), std::ios::trunc) << text;
  }
  ASSERT_TRUE(fed->start(30s).isOk());
  ASSERT_TRUE(query());
  // site-s02's record of site-s01's log.
  const std::string pinned = fed->siteDirectory(1) + "/store/ethics-peer-heads/site-s01.sth";
  auto pinnedSize = [&pinned]() -> uint64_t {
    const std::string bytes = readFile(pinned);
    auto head =
        ethics::decodeTreeHead({reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()});
    return head.isOk() ? head->treeSize : 0;
  };
  ASSERT_TRUE(waitFor([&] { return pinnedSize() > 0; }));

  const std::string backup = (dir / "backup").string();
  auto [bStatus, bOut] = cli({"backup", "--config", fed->siteConfigPath(0), "--to", backup});
  ASSERT_EQ(bStatus, 0) << bOut;
  auto manifest = nlohmann::json::parse(readFile(backup + "/MANIFEST.json"));
  const uint64_t backedUp = manifest["audit_size"];
  // The log grows after the backup and site-s02 verifies the longer log.
  ASSERT_TRUE(query());
  ASSERT_TRUE(waitFor([&] { return pinnedSize() > backedUp; }));

  fed->siteProcess(0)->stop(5s);
  const std::string store = fed->siteDirectory(0) + "/store";
  std::filesystem::remove_all(store);
  auto [rStatus, rOut] = cli({"restore", "--from", backup, "--data-dir", store});
  ASSERT_EQ(rStatus, 0) << rOut;
  const std::string peerLog = fed->siteLogPath(1);
  ASSERT_EQ(readFile(peerLog).find("peer_log_alert"), std::string::npos);
  ASSERT_TRUE(fed->startSite(0, 30s).isOk());
  EXPECT_TRUE(waitFor([&] {
    return readFile(peerLog).find("peer_log_alert") != std::string::npos;
  })) << "site-s02 did not notice that site-s01's log went back";

  // site-s02's operator accepts the head reported from the manifest.
  fed->siteProcess(1)->stop(5s);
  std::filesystem::remove(pinned);
  std::ofstream(fed->siteConfigPath(1), std::ios::app)
      << "\n[ethics.peer_heads]\n\"site-s01\" = \"" << manifest["audit_root"].get<std::string>()
      << "@" << backedUp << "\"\n";
  const size_t logBefore = readFile(peerLog).size();
  ASSERT_TRUE(fed->startSite(1, 30s).isOk());
  EXPECT_TRUE(waitFor([&] {
    return readFile(peerLog).find("configured head", logBefore) != std::string::npos;
  })) << readFile(peerLog).substr(logBefore);
  EXPECT_TRUE(query());
  EXPECT_EQ(readFile(peerLog).find("peer_log_alert", logBefore), std::string::npos)
      << readFile(peerLog).substr(logBefore);
  stopLocalFederation(fed, dir);
}

}  // namespace
}  // namespace trialmesh::node
