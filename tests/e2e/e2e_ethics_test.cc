// End-to-end ethics enforcement and audit: real trialmesh-node processes on 127.0.0.1 with the
// approval LocalFederation signs (committee.key, recognised by every site). Covers: queries
// pass under the approval and are logged; an expired amendment, a revocation and a forged
// approval are refused with the reason and the refusals are logged; only ethics boards read
// the log; tampering is caught; kill -9 after an answer never loses the query's entry.
//
// Tampering is checked offline: the test downloads a signed tree head while the node runs,
// stops it, flips a byte in the audit RocksDB, reads the entries with
// AuditLog::readAllUnchecked and runs ethics::verifyLog against the earlier head; it also
// checks that the node then refuses to start, naming the entry (its start-up integrity check).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <rocksdb/db.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "crypto/hash.h"
#include "e2e_federation_fixture.h"
#include "ethics/approval.h"
#include "ethics/audit_log.h"
#include "node/coordinator.h"
#include "node/local_federation.h"

namespace trialmesh::node {
namespace {

using namespace std::chrono_literals;

int64_t nowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}
constexpr int64_t kDayMs = 86'400'000;

std::vector<ethics::Entry> decodeAll(const std::vector<ethics::StoredEntry>& stored) {
  std::vector<ethics::Entry> out;
  for (const auto& s : stored) {
    auto e =
        ethics::decodeEntry({reinterpret_cast<const uint8_t*>(s.bytes.data()), s.bytes.size()});
    EXPECT_TRUE(e.isOk()) << e.status().toString();
    if (e) out.push_back(*e);
  }
  return out;
}

// The query entries for `queryText` (hash of its canonical text), in log order.
std::vector<ethics::QueryEvent> queryEntries(const std::vector<ethics::Entry>& entries,
                                             const std::string& canonicalText) {
  const ethics::Hash h = crypto::sha256(canonicalText);
  std::vector<ethics::QueryEvent> out;
  for (const auto& e : entries) {
    if (e.kind != ethics::EntryKind::kQuery) continue;
    const auto& q = std::get<ethics::QueryEvent>(e.body);
    if (q.queryHash == h) out.push_back(q);
  }
  return out;
}

class EthicsE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("trialmesh-ethics-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    startLocalFederation(dir_, 2, 400, fed_);
  }
  void TearDown() override { stopLocalFederation(fed_, dir_); }

  Result<FederatedResult> query(const std::string& text) {
    FederatedQueryOptions options;
    options.deadline = 10s;
    return runFederatedQuery(fed_->coordinator(), fed_->members(), LocalFederation::kStudy, text,
                             options);
  }

  std::string coordinatorMemberName() {
    const Member* m = fed_->members().findByKey(fed_->coordinator().pub);
    return m != nullptr ? m->name : "(not in the members file)";
  }

  Result<AuditDownload> download(size_t site) {
    return downloadAuditLog(fed_->committee(), fed_->members(), fed_->siteName(site));
  }

  ethics::SignedApproval currentApproval() {
    std::string bytes = readFile(fed_->approvalPath());
    auto sa = ethics::decodeSignedApproval(
        {reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()});
    EXPECT_TRUE(sa.isOk()) << sa.status().toString();
    return *sa;
  }

  std::filesystem::path dir_;
  std::unique_ptr<LocalFederation> fed_;
};

TEST_F(EthicsE2eTest, ApprovedQueryIsAnsweredLoggedAndVerifies) {
  auto r = query("count by arm");
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  ASSERT_EQ(r->answered(), 2u) << (r->sites.empty() ? "" : r->sites[0].reason);
  for (size_t i = 0; i < fed_->siteCount(); ++i) {
    auto log = download(i);
    ASSERT_TRUE(log.isOk()) << log.status().toString();
    const Member* site = fed_->members().findByName(fed_->siteName(i));
    ASSERT_NE(site, nullptr);
    Status v = ethics::verifyLog(log->entries, log->head, site->publicKey);
    EXPECT_TRUE(v.isOk()) << v.toString();
    auto entries = decodeAll(log->entries);
    ASSERT_GE(entries.size(), 3u);
    EXPECT_EQ(entries[0].kind, ethics::EntryKind::kNodeStart);
    auto q = queryEntries(entries, "count by arm");
    ASSERT_EQ(q.size(), 1u);
    EXPECT_TRUE(q[0].allowed);
    EXPECT_EQ(q[0].coordinator, fed_->coordinator().pub);
    EXPECT_EQ(q[0].study, LocalFederation::kStudy);
    EXPECT_NE(q[0].reason.find("approval LUNG-7 v1"), std::string::npos) << q[0].reason;
    // Issue 14: the entry names the request, the coordinator and the approval itself.
    EXPECT_EQ(q[0].audit.queryText, "count by arm");
    EXPECT_EQ(q[0].audit.coordinatorName, coordinatorMemberName());
    EXPECT_EQ(q[0].audit.approvalStudy, LocalFederation::kStudy);
    EXPECT_EQ(q[0].audit.approvalVersion, 1u);
    EXPECT_EQ(q[0].audit.queryId.size(), 2 * protocol::kMinNonceBytes);
    // The query entry is followed by the masked share the site sent (the federation's
    // approval asks for secure aggregation): a share, not a result (docs/ethics.md).
    bool released = false;
    for (const auto& e : entries) {
      EXPECT_NE(e.kind, ethics::EntryKind::kResultReleased);
      if (e.kind == ethics::EntryKind::kShareReleased) {
        const auto& rr = std::get<ethics::ResultReleasedEvent>(e.body);
        released = rr.queryHash == crypto::sha256(std::string("count by arm")) && rr.cells >= 2 &&
                   rr.audit.queryId == q[0].audit.queryId && rr.audit.approvalVersion == 1u;
      }
    }
    EXPECT_TRUE(released);
  }
}

TEST_F(EthicsE2eTest, ExpiredAmendmentIsRefusedWithReasonAndLogged) {
  ethics::Approval a = currentApproval().approval;
  a.protocolVersion = 2;
  a.validFrom = ethics::dateFromUnixMs(nowMs() - 30 * kDayMs);
  a.validUntil = ethics::dateFromUnixMs(nowMs() - 2 * kDayMs);
  auto sa = ethics::signApproval(a, fed_->committee());
  ASSERT_TRUE(sa.isOk()) << sa.status().toString();
  for (size_t i = 0; i < fed_->siteCount(); ++i) {
    auto receipt = submitApprovalToSite(fed_->committee(), fed_->members(), fed_->siteName(i),
                                        ethics::encodeSignedApproval(*sa));
    ASSERT_TRUE(receipt.isOk()) << receipt.status().toString();
    EXPECT_NE(receipt->find("LUNG-7 v2"), std::string::npos) << *receipt;
  }
  auto r = query("count");
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  EXPECT_EQ(r->answered(), 0u);
  const std::string expected = "approval LUNG-7 v2 expired on " + a.validUntil.toString();
  for (const auto& s : r->sites) {
    EXPECT_EQ(s.outcome, SiteOutcomeKind::kRefused);
    EXPECT_NE(s.reason.find(expected), std::string::npos) << s.reason;
  }
  // Logged (before the refusal is sent) and counted under its own reason, not `membership`.
  const std::string siteLog = readFile(fed_->siteLogPath(0));
  EXPECT_NE(siteLog.find("query_refused"), std::string::npos) << siteLog;
  EXPECT_NE(siteLog.find("reason=ethics"), std::string::npos) << siteLog;
  auto log = download(0);
  ASSERT_TRUE(log.isOk()) << log.status().toString();
  auto entries = decodeAll(log->entries);
  auto q = queryEntries(entries, "count");
  ASSERT_EQ(q.size(), 1u);
  EXPECT_FALSE(q[0].allowed);
  EXPECT_EQ(q[0].reason, expected);
  bool amended = false;
  for (const auto& e : entries) amended = amended || e.kind == ethics::EntryKind::kApprovalAmended;
  EXPECT_TRUE(amended);
}

TEST_F(EthicsE2eTest, RevokedApprovalIsRefused) {
  ASSERT_EQ(query("count")->answered(), 2u);
  ethics::Statement st;
  st.kind = ethics::StatementKind::kRevocation;
  st.study = LocalFederation::kStudy;
  st.protocolVersion = 1;
  st.approvalId = ethics::approvalId(currentApproval().approval);
  st.effective = ethics::dateFromUnixMs(nowMs());
  st.reason = "protocol deviation";
  const std::string bytes =
      ethics::encodeSignedStatement(ethics::signStatement(st, fed_->committee()));
  for (size_t i = 0; i < fed_->siteCount(); ++i) {
    auto receipt =
        submitStatementToSite(fed_->committee(), fed_->members(), fed_->siteName(i), bytes);
    ASSERT_TRUE(receipt.isOk()) << receipt.status().toString();
  }
  auto r = query("count where age >= 50");
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  EXPECT_EQ(r->answered(), 0u);
  for (const auto& s : r->sites) {
    EXPECT_NE(s.reason.find("approval LUNG-7 v1 was revoked on " + st.effective.toString() +
                            ": protocol deviation"),
              std::string::npos)
        << s.reason;
  }
  auto log = download(1);
  ASSERT_TRUE(log.isOk());
  auto q = queryEntries(decodeAll(log->entries), "count where age >= 50");
  ASSERT_EQ(q.size(), 1u);
  EXPECT_FALSE(q[0].allowed);
  EXPECT_NE(q[0].reason.find("revoked"), std::string::npos);
}

TEST_F(EthicsE2eTest, ForgedApprovalIsRefusedAtSubmit) {
  ethics::Approval a = currentApproval().approval;
  a.protocolVersion = 3;
  auto sa = ethics::signApproval(a, fed_->committee());
  ASSERT_TRUE(sa.isOk());
  sa->approval.minCellSize = 1000;  // changed after signing
  auto receipt = submitApprovalToSite(fed_->committee(), fed_->members(), fed_->siteName(0),
                                      ethics::encodeSignedApproval(*sa));
  ASSERT_FALSE(receipt.isOk());
  EXPECT_EQ(receipt.status().code(), StatusCode::kPermissionDenied) << receipt.status().toString();
  // Nothing was stored: the approval list still holds v1 only, and queries still pass.
  auto list = listSiteApprovals(fed_->committee(), fed_->members(), fed_->siteName(0));
  ASSERT_TRUE(list.isOk()) << list.status().toString();
  EXPECT_EQ(list->size(), 1u);
  EXPECT_EQ(query("count")->answered(), 2u);
}

// Issue #12 item 3: an ethics-board member signs a higher version with a committee key the sites
// do not recognise, to halt the study. Every site refuses it at submission with the reason and
// queries keep running under v1 (also after a restart, so nothing was stored).
TEST_F(EthicsE2eTest, UnrecognisedCommitteesHigherVersionIsRefusedAndCannotHaltTheStudy) {
  const crypto::Identity rogue = crypto::generateIdentity();
  ethics::Approval a = currentApproval().approval;
  a.protocolVersion = 2;
  a.leadCommittee = ethics::Committee{"Rogue Board", rogue.pub};
  a.coordinators.clear();  // would refuse every coordinator if it governed
  a.coordinators.push_back(rogue.pub);
  auto sa = ethics::signApproval(a, rogue);
  ASSERT_TRUE(sa.isOk()) << sa.status().toString();
  for (size_t i = 0; i < fed_->siteCount(); ++i) {
    auto receipt = submitApprovalToSite(fed_->committee(), fed_->members(), fed_->siteName(i),
                                        ethics::encodeSignedApproval(*sa));
    ASSERT_FALSE(receipt.isOk()) << *receipt;
    EXPECT_EQ(receipt.status().code(), StatusCode::kPermissionDenied);
    EXPECT_NE(receipt.status().message().find("approval LUNG-7 v2 is signed by committee 'Rogue "
                                              "Board'"),
              std::string::npos)
        << receipt.status().toString();
    EXPECT_NE(receipt.status().message().find("which this site does not recognise"),
              std::string::npos)
        << receipt.status().toString();
  }
  auto r = query("count");
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  EXPECT_EQ(r->answered(), 2u) << (r->sites.empty() ? "" : r->sites[0].reason);
  fed_->stop(5s);
  ASSERT_TRUE(fed_->start(30s).isOk());
  auto list = listSiteApprovals(fed_->committee(), fed_->members(), fed_->siteName(0));
  ASSERT_TRUE(list.isOk()) << list.status().toString();
  EXPECT_EQ(list->size(), 1u);
  EXPECT_EQ(query("count where age >= 40")->answered(), 2u);
}

TEST_F(EthicsE2eTest, CoordinatorCannotReadTheLogEthicsBoardCan) {
  auto denied = downloadAuditLog(fed_->coordinator(), fed_->members(), fed_->siteName(0));
  ASSERT_FALSE(denied.isOk());
  EXPECT_EQ(denied.status().code(), StatusCode::kPermissionDenied) << denied.status().toString();
  EXPECT_NE(denied.status().message().find("ethics-board"), std::string::npos);
  auto submitDenied = submitApprovalToSite(fed_->coordinator(), fed_->members(), fed_->siteName(0),
                                           readFile(fed_->approvalPath()));
  EXPECT_EQ(submitDenied.status().code(), StatusCode::kPermissionDenied);
  auto allowed = download(0);
  ASSERT_TRUE(allowed.isOk()) << allowed.status().toString();
  EXPECT_GE(allowed->head.treeSize, 1u);
}

TEST_F(EthicsE2eTest, FlippedByteInStoreFailsVerifyAtThatEntry) {
  for (int i = 0; i < 3; ++i)
    ASSERT_EQ(query("count where age >= " + std::to_string(40 + i))->answered(), 2u);
  auto before = download(0);
  ASSERT_TRUE(before.isOk()) << before.status().toString();
  ASSERT_GE(before->head.treeSize, 5u);
  fed_->stop(5s);
  const std::string path = fed_->siteAuditDir(0);
  const Member* site = fed_->members().findByName(fed_->siteName(0));
  {
    auto untouched = ethics::AuditLog::readAllUnchecked(path);
    ASSERT_TRUE(untouched.isOk()) << untouched.status().toString();
    std::vector<ethics::StoredEntry> prefix(
        untouched->begin(), untouched->begin() + static_cast<long>(before->head.treeSize));
    EXPECT_TRUE(ethics::verifyLog(prefix, before->head, site->publicKey).isOk());
  }
  // Flip the last byte of entry 3's stored value (inside the entry bytes).
  {
    rocksdb::Options options;
    std::vector<rocksdb::ColumnFamilyDescriptor> families = {
        {rocksdb::kDefaultColumnFamilyName, {}}, {"audit_entries", {}}};
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(options, path, families, &handles, &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    std::string key(8, '\0');
    key[7] = 3;
    std::string value;
    ASSERT_TRUE(db->Get({}, handles[1], key, &value).ok());
    value.back() = static_cast<char>(value.back() ^ 0x01);
    rocksdb::WriteOptions wo;
    wo.sync = true;
    ASSERT_TRUE(db->Put(wo, handles[1], key, value).ok());
    for (auto* h : handles) db->DestroyColumnFamilyHandle(h);
    ASSERT_TRUE(db->Close().ok());
  }
  auto tampered = ethics::AuditLog::readAllUnchecked(path);
  ASSERT_TRUE(tampered.isOk()) << tampered.status().toString();
  std::vector<ethics::StoredEntry> prefix(
      tampered->begin(), tampered->begin() + static_cast<long>(before->head.treeSize));
  Status v = ethics::verifyLog(prefix, before->head, site->publicKey);
  ASSERT_FALSE(v.isOk());
  EXPECT_EQ(v.message().rfind("entry 3: ", 0), 0u) << v.toString();
  // The node checks every stored entry at start (issue #12): it refuses to start, so it never
  // signs a tree head over the modified entry, and says which entry and what to do.
  Status refused = fed_->startSite(0, 10s);  // its message has the tail of the node's output
  ASSERT_FALSE(refused.isOk());
  EXPECT_NE(refused.message().find("exited with status"), std::string::npos) << refused.message();
  EXPECT_NE(refused.message().find("entry 3: its content does not match the leaf hash"),
            std::string::npos)
      << refused.message();
  EXPECT_NE(refused.message().find("restore the directory from a backup"), std::string::npos)
      << refused.message();
}

TEST_F(EthicsE2eTest, KillNineAfterAnswerNeverLosesTheQueryEntry) {
  for (int round = 0; round < 4; ++round) {
    const std::string text = "count where age >= " + std::to_string(30 + round);
    auto r = query(text);
    ASSERT_TRUE(r.isOk()) << r.status().toString();
    ASSERT_EQ(r->answered(), 2u);
    ChildProcess* p = fed_->siteProcess(0);
    ASSERT_NE(p, nullptr);
    p->signal(SIGKILL);
    ASSERT_TRUE(p->waitFor(5s).has_value());
    fed_->stop(5s);  // reaps site 0, stops site 1 so its log can be read too
    for (size_t i = 0; i < fed_->siteCount(); ++i) {
      auto stored = ethics::AuditLog::readAllUnchecked(fed_->siteAuditDir(i));
      ASSERT_TRUE(stored.isOk()) << stored.status().toString();
      auto q = queryEntries(decodeAll(*stored), text);
      ASSERT_EQ(q.size(), 1u) << "site " << i << " round " << round;
      EXPECT_TRUE(q[0].allowed);
    }
    Status s = fed_->start(30s);
    ASSERT_TRUE(s.isOk()) << s.toString();
  }
}

// Runs the trialmesh CLI; returns its exit status and combined output.
std::pair<int, std::string> runCli(const std::filesystem::path& dir,
                                   const std::vector<std::string>& args) {
  const std::string out = (dir / "cli-output.txt").string();
  std::filesystem::remove(out);
  // ChildProcess opens the output file for fd 1 with O_CLOEXEC, so only stderr (its dup)
  // survives exec; a shell sends the CLI's stdout there too.
  std::vector<std::string> shellArgs = {"-c", "exec \"$0\" \"$@\" 1>&2", TRIALMESH_CLI_BINARY};
  shellArgs.insert(shellArgs.end(), args.begin(), args.end());
  auto p = ChildProcess::spawn("/bin/sh", shellArgs, out);
  if (!p) return {-1, p.status().toString()};
  auto status = p->waitFor(60s);
  if (!status) p->stop(1s);
  return {status.value_or(-1), readFile(out)};
}

TEST_F(EthicsE2eTest, CliAuditVerifyAndRevoke) {
  ASSERT_EQ(query("count")->answered(), 2u);
  auto [ok, okText] = runCli(
      dir_, {"audit", "verify", "--node", fed_->siteName(0), "--members", fed_->membersPath(),
             "--identity", fed_->committeeKeyPath(), "--state", (dir_ / "pins").string()});
  EXPECT_EQ(ok, 0) << okText;
  EXPECT_NE(okText.find("audit log of " + fed_->siteName(0) + " verified: 3 entries"),
            std::string::npos)
      << okText;
  auto [denied, deniedText] = runCli(
      dir_, {"audit", "verify", "--node", fed_->siteName(0), "--members", fed_->membersPath(),
             "--identity", fed_->coordinatorKeyPath(), "--state", (dir_ / "pins").string()});
  EXPECT_EQ(denied, 1) << deniedText;
  EXPECT_NE(deniedText.find("is for ethics-board members"), std::string::npos) << deniedText;
  auto [revoked, revokedText] =
      runCli(dir_, {"ethics", "revoke", "--members", fed_->membersPath(), "--identity",
                    fed_->committeeKeyPath(), "--study", LocalFederation::kStudy, "--version", "1",
                    "--reason", "consent withdrawn"});
  EXPECT_EQ(revoked, 0) << revokedText;
  auto r = query("count");
  ASSERT_TRUE(r.isOk());
  EXPECT_EQ(r->answered(), 0u);
  for (const auto& s : r->sites) {
    EXPECT_NE(s.reason.find("consent withdrawn"), std::string::npos) << s.reason;
  }
}

TEST_F(EthicsE2eTest, CliSuspendsReinstatesAndRecognises) {
  const std::vector<std::string> common = {
      "--members", fed_->membersPath(),     "--identity", fed_->committeeKeyPath(),
      "--study",   LocalFederation::kStudy, "--version",  "1"};
  auto with = [&common](std::vector<std::string> head, std::vector<std::string> tail) {
    head.insert(head.end(), common.begin(), common.end());
    head.insert(head.end(), tail.begin(), tail.end());
    return head;
  };
  auto [suspended, suspendedText] =
      runCli(dir_, with({"ethics", "suspend"}, {"--reason", "safety review"}));
  ASSERT_EQ(suspended, 0) << suspendedText;
  EXPECT_NE(suspendedText.find("stored suspension of approval LUNG-7 v1"), std::string::npos)
      << suspendedText;
  // Every site refuses with the reason (the coordinator reports it per site, or, when too few
  // sites answered for the approval's aggregation, in the error that lists them).
  auto r = query("count");
  std::string reasons = r.isOk() ? "" : r.status().message();
  if (r.isOk()) {
    EXPECT_EQ(r->answered(), 0u);
    for (const auto& s : r->sites) reasons += s.site + ": " + s.reason + "\n";
  }
  for (size_t i = 0; i < fed_->siteCount(); ++i) {
    EXPECT_NE(reasons.find(fed_->siteName(i)), std::string::npos) << reasons;
  }
  size_t suspendedCount = 0;
  for (size_t at = 0;
       (at = reasons.find("approval LUNG-7 v1 is suspended since", at)) != std::string::npos;
       ++at) {
    ++suspendedCount;
  }
  EXPECT_EQ(suspendedCount, fed_->siteCount()) << reasons;
  EXPECT_NE(reasons.find("safety review"), std::string::npos) << reasons;

  // `ethics list --study`: every site of the study says the approval is suspended, who
  // recognised it and the statement's history, by member name (issue #14 item 4).
  const std::vector<std::string> listArgs = {"ethics",     "list",
                                             "--members",  fed_->membersPath(),
                                             "--identity", fed_->committeeKeyPath(),
                                             "--study",    LocalFederation::kStudy};
  const node::Member* committee = fed_->members().findByKey(fed_->committee().pub);
  ASSERT_NE(committee, nullptr);
  auto listed = [&](const std::string& state) {
    std::vector<std::string> args = listArgs;
    args.push_back("--json");
    auto [status, text] = runCli(dir_, args);
    ASSERT_EQ(status, 0) << text;
    auto j = nlohmann::json::parse(text, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << text;
    ASSERT_EQ(j["sites"].size(), fed_->siteCount()) << text;
    for (const auto& site : j["sites"]) {
      SCOPED_TRACE(site.dump());
      EXPECT_TRUE(site["reachable"].get<bool>());
      ASSERT_EQ(site["approvals"].size(), 1u);
      const auto& a = site["approvals"][0];
      EXPECT_EQ(a["study"], LocalFederation::kStudy);
      EXPECT_EQ(a["version"], 1);
      EXPECT_EQ(a["state"], state);
      EXPECT_EQ(a["recognised_by"], committee->name);
      ASSERT_FALSE(a["statements"].empty());
      const auto& last = a["statements"].back();
      EXPECT_EQ(last["kind"], state == "suspended" ? "suspension" : "reinstatement");
      EXPECT_EQ(last["signer"], committee->name);  // a name, not a key
      if (state == "suspended") {
        EXPECT_EQ(last["reason"], "safety review");
      }
    }
  };
  listed("suspended");
  {
    auto [status, text] = runCli(dir_, listArgs);
    ASSERT_EQ(status, 0) << text;
    size_t shown = 0;
    for (size_t at = 0; (at = text.find("state: suspended", at)) != std::string::npos; ++at)
      ++shown;
    EXPECT_EQ(shown, fed_->siteCount()) << text;
    EXPECT_NE(text.find("suspension    by " + committee->name + ", issued "), std::string::npos)
        << text;
    EXPECT_NE(text.find(": safety review"), std::string::npos) << text;
  }

  auto [reinstated, reinstatedText] = runCli(dir_, with({"ethics", "reinstate"}, {}));
  ASSERT_EQ(reinstated, 0) << reinstatedText;
  EXPECT_EQ(query("count")->answered(), 2u);
  listed("active");

  // A recognition goes to the named site only and is logged there.
  auto [recognised, recognisedText] =
      runCli(dir_, with({"ethics", "recognise"}, {"--site", fed_->siteName(1)}));
  ASSERT_EQ(recognised, 0) << recognisedText;
  EXPECT_NE(recognisedText.find("site " + fed_->siteName(1) + " stored recognition"),
            std::string::npos)
      << recognisedText;
  EXPECT_EQ(recognisedText.find(fed_->siteName(0) + " "), std::string::npos) << recognisedText;
  auto log1 = download(1);
  ASSERT_TRUE(log1.isOk()) << log1.status().toString();
  std::vector<ethics::EntryKind> kinds;
  for (const auto& e : decodeAll(log1->entries)) kinds.push_back(e.kind);
  auto has = [&kinds](ethics::EntryKind k) {
    return std::find(kinds.begin(), kinds.end(), k) != kinds.end();
  };
  EXPECT_TRUE(has(ethics::EntryKind::kApprovalSuspended));
  EXPECT_TRUE(has(ethics::EntryKind::kApprovalReinstated));
  EXPECT_TRUE(has(ethics::EntryKind::kApprovalRecognised));
  auto log0 = download(0);
  ASSERT_TRUE(log0.isOk());
  for (const auto& e : decodeAll(log0->entries))
    EXPECT_NE(e.kind, ethics::EntryKind::kApprovalRecognised);

  // Missing --reason for a suspension is a usage error.
  auto [usage, usageText] = runCli(dir_, with({"ethics", "suspend"}, {}));
  EXPECT_NE(usage, 0) << usageText;
  EXPECT_NE(usageText.find("--reason"), std::string::npos) << usageText;

  // A site that is down is listed as unreachable; the others still answer.
  fed_->siteProcess(0)->stop(std::chrono::seconds(5));
  auto [partial, partialText] = runCli(dir_, listArgs);
  EXPECT_EQ(partial, 0) << partialText;
  EXPECT_NE(partialText.find("Site " + fed_->siteName(0) + ": unreachable"), std::string::npos)
      << partialText;
  EXPECT_NE(partialText.find("Site " + fed_->siteName(1) + ": 1 approval"), std::string::npos)
      << partialText;
}

// ---- Peer fork detection (node/peer_audit.h) ----

// The value of `series` (full name with labels) in a Prometheus text body; -1 if absent.
double metricValue(const std::string& body, const std::string& series) {
  std::istringstream in(body);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
  }
  return -1;
}

TEST_F(EthicsE2eTest, PeerDetectsALogRewrittenWhileStopped) {
  // Restart both sites with a short peer check interval.
  fed_->stop(5s);
  for (size_t i = 0; i < fed_->siteCount(); ++i) {
    std::string config = readFile(fed_->siteConfigPath(i));
    const size_t at = config.find("[ethics]\n");
    ASSERT_NE(at, std::string::npos);
    config.insert(at + 9, "peer_check_interval_ms = 150\n");
    std::ofstream(fed_->siteConfigPath(i), std::ios::trunc) << config;
  }
  ASSERT_TRUE(fed_->start(30s).isOk());
  ASSERT_EQ(query("count")->answered(), 2u);

  // Site 1 verifies and remembers site 0's head, covering the query's entries.
  const std::string site0 = fed_->siteName(0);
  const std::string remembered =
      fed_->siteDirectory(1) + "/store/ethics-peer-heads/" + site0 + ".sth";
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  uint64_t rememberedSize = 0;
  while (std::chrono::steady_clock::now() < deadline && rememberedSize < 3) {
    std::string bytes = readFile(remembered);
    auto head =
        ethics::decodeTreeHead({reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()});
    if (head) rememberedSize = head->treeSize;
    std::this_thread::sleep_for(50ms);
  }
  ASSERT_GE(rememberedSize, 3u) << "site 1 never stored a verified head of " << site0;
  const std::string series = "trialmesh_peer_log_alerts_total{peer=\"" + site0 + "\"}";
  EXPECT_EQ(metricValue(httpGet(fed_->siteOpsPort(1), "/metrics"), series), 0);

  // Site 0 is stopped and its log replaced by a fresh one with a different history (what an
  // operator erasing the record of the query would do); it then starts again.
  ASSERT_EQ(fed_->siteProcess(0)->stop(5s), 0);
  std::filesystem::remove_all(fed_->siteAuditDir(0));
  ASSERT_TRUE(fed_->startSite(0, 10s).isOk());

  double alerts = 0;
  const auto deadline2 = std::chrono::steady_clock::now() + 20s;
  while (std::chrono::steady_clock::now() < deadline2 && alerts <= 0) {
    alerts = metricValue(httpGet(fed_->siteOpsPort(1), "/metrics"), series);
    if (alerts <= 0) std::this_thread::sleep_for(50ms);
  }
  EXPECT_GT(alerts, 0) << "site 1 did not raise an alert about " << site0;
  fed_->stop(5s);
  // Exactly one alert entry (a persisting fork is reported once), naming the peer.
  auto stored = ethics::AuditLog::readAllUnchecked(fed_->siteAuditDir(1));
  ASSERT_TRUE(stored.isOk()) << stored.status().toString();
  int alertEntries = 0;
  for (const auto& e : decodeAll(*stored)) {
    if (e.kind != ethics::EntryKind::kAlert) continue;
    ++alertEntries;
    const auto& a = std::get<ethics::AlertEvent>(e.body);
    EXPECT_EQ(a.peer, fed_->members().findByName(site0)->publicKey);
    EXPECT_NE(a.message.find("fork detected"), std::string::npos) << a.message;
  }
  EXPECT_EQ(alertEntries, 1);
  const std::string log = readFile(fed_->siteLogPath(1));
  EXPECT_NE(log.find("peer_log_alert"), std::string::npos);
  // The other direction stayed quiet: site 0's fresh log has no alert about site 1.
  auto stored0 = ethics::AuditLog::readAllUnchecked(fed_->siteAuditDir(0));
  ASSERT_TRUE(stored0.isOk());
  for (const auto& e : decodeAll(*stored0)) EXPECT_NE(e.kind, ethics::EntryKind::kAlert);
}

TEST_F(EthicsE2eTest, SitesMayReadTreeHeadsButNotEntries) {
  auto site1 = crypto::loadIdentity(fed_->siteDirectory(1) + "/" + fed_->siteName(1) + ".key");
  ASSERT_TRUE(site1.isOk()) << site1.status().toString();
  auto head = fetchAuditHead(*site1, fed_->members(), fed_->siteName(0), 1);
  ASSERT_TRUE(head.isOk()) << head.status().toString();
  EXPECT_GE(head->head.treeSize, 1u);
  EXPECT_EQ(head->head.logKey, fed_->members().findByName(fed_->siteName(0))->publicKey);
  // The proof from size 1 really links the first entry (node start) to the current head:
  // checked against an ethics board's full download, an independent path.
  auto full = download(0);
  ASSERT_TRUE(full.isOk()) << full.status().toString();
  ethics::MerkleTree tree;
  for (const auto& e : full->entries) {
    tree.append(
        ethics::leafHash({reinterpret_cast<const uint8_t*>(e.bytes.data()), e.bytes.size()}));
  }
  ASSERT_GE(tree.size(), head->head.treeSize);
  EXPECT_TRUE(ethics::verifyConsistency(1, head->head.treeSize, tree.rootAt(1).value(),
                                        head->head.root, head->consistency)
                  .isOk());
  // Entries stay closed to sites, and everything stays closed to coordinators.
  auto entries = downloadAuditLog(*site1, fed_->members(), fed_->siteName(0));
  ASSERT_FALSE(entries.isOk());
  EXPECT_NE(entries.status().message().find(
                "auditEntries is for ethics-board members and the site itself"),
            std::string::npos)
      << entries.status().toString();
  auto denied = fetchAuditHead(fed_->coordinator(), fed_->members(), fed_->siteName(0), 0);
  ASSERT_FALSE(denied.isOk());
  EXPECT_NE(denied.status().message().find("auditTreeHead is for ethics-board members, sites"),
            std::string::npos)
      << denied.status().toString();
}

// Issue 14: what a board reads. The export names the coordinator and gives the query text and
// the approval; two runs of the same query have different ids; a query that failed for quorum
// (a site down) left no released entry at the site that stayed up.
TEST_F(EthicsE2eTest, ExportNamesCoordinatorAndQueryAndQuorumFailureReleasesNothing) {
  ASSERT_EQ(query("count by arm")->answered(), 2u);
  ASSERT_EQ(query("count by arm")->answered(), 2u);
  fed_->siteProcess(1)->stop(5s);
  auto failed = query("count");
  ASSERT_TRUE(failed.isOk()) << failed.status().toString();
  EXPECT_FALSE(failed->refusal.empty());
  EXPECT_NE(failed->refusal.find("min_sites"), std::string::npos) << failed->refusal;

  auto [rc, csv] = runCli(dir_, {"audit", "export", "--node", fed_->siteName(0), "--members",
                                 fed_->membersPath(), "--identity", fed_->committeeKeyPath()});
  ASSERT_EQ(rc, 0) << csv;
  EXPECT_NE(csv.find("coordinator,query_id,query,approval"), std::string::npos) << csv;
  EXPECT_EQ(csv.find(fed_->coordinator().pub.toText()), std::string::npos) << csv;
  std::vector<std::string> queryLines, releasedLines;
  std::istringstream lines(csv);
  std::string header;
  std::getline(lines, header);
  for (std::string line; std::getline(lines, line);) {
    if (line.find(",query,") != std::string::npos) queryLines.push_back(line);
    if (line.find("-released,") != std::string::npos) releasedLines.push_back(line);
    EXPECT_EQ(line.find(",count,"), std::string::npos) << "no entry for the failed query: " << line;
  }
  ASSERT_EQ(queryLines.size(), 2u) << csv;
  ASSERT_EQ(releasedLines.size(), 2u) << csv;
  std::vector<std::string> ids;
  for (const auto& line : queryLines) {
    EXPECT_NE(line.find("," + coordinatorMemberName() + ","), std::string::npos) << line;
    EXPECT_NE(line.find(",count by arm,LUNG-7 v1,"), std::string::npos) << line;
    ids.push_back(line.substr(0, line.find(",count by arm,")));
  }
  EXPECT_NE(ids[0].substr(ids[0].rfind(',')), ids[1].substr(ids[1].rfind(','))) << csv;
  for (const auto& line : releasedLines) {
    EXPECT_NE(line.find("share-released"), std::string::npos) << line;
    EXPECT_NE(line.find(",count by arm,LUNG-7 v1,"), std::string::npos) << line;
  }
}

// Issue 14: `ethics sign --members` refuses a misspelt site name (with the close name it
// probably meant) and shows what the names and keys resolve to.
TEST_F(EthicsE2eTest, CliSignRefusesAMisspeltSiteName) {
  ethics::Approval a = currentApproval().approval;
  ASSERT_FALSE(a.sites.empty());
  const std::string right = a.sites[0];
  a.sites[0] = right.substr(0, right.size() - 1) + "#";
  const std::string toml = (dir_ / "misspelt.toml").string();
  std::ofstream(toml) << ethics::approvalToToml(a);
  const std::vector<std::string> sign = {"ethics",     "sign",
                                         "--approval", toml,
                                         "--identity", fed_->committeeKeyPath(),
                                         "--out",      (dir_ / "misspelt.signed").string(),
                                         "--members",  fed_->membersPath()};
  auto [rc, text] = runCli(dir_, sign);
  EXPECT_EQ(rc, 1) << text;
  EXPECT_NE(text.find("approval names site '" + a.sites[0] + "', which is not a member"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("did you mean '" + right + "'?"), std::string::npos) << text;
  EXPECT_FALSE(std::filesystem::exists(dir_ / "misspelt.signed"));

  a.sites[0] = right;
  std::ofstream(toml, std::ios::trunc) << ethics::approvalToToml(a);
  auto [ok, okText] = runCli(dir_, sign);
  EXPECT_EQ(ok, 0) << okText;
  EXPECT_NE(okText.find("site        " + right), std::string::npos) << okText;
  EXPECT_NE(okText.find("coordinator " + coordinatorMemberName()), std::string::npos) << okText;
}

// Issue 14: a statement sent over a connection no site accepts says which key to use instead
// of "no site of study 'LUNG-7' holds approval LUNG-7 v1"; without --as the committee's own
// key (a board member here) connects.
TEST_F(EthicsE2eTest, CliSuspendExplainsWhoMayConnect) {
  auto [rc, text] =
      runCli(dir_, {"ethics", "suspend", "--members", fed_->membersPath(), "--identity",
                    fed_->committeeKeyPath(), "--as", fed_->coordinatorKeyPath(), "--study",
                    LocalFederation::kStudy, "--version", "1", "--reason", "safety review"});
  EXPECT_EQ(rc, 1) << text;
  EXPECT_NE(text.find("is not an ethics-board member"), std::string::npos) << text;
  EXPECT_EQ(text.find("holds approval"), std::string::npos) << text;
  auto [ok, okText] =
      runCli(dir_, {"ethics", "suspend", "--members", fed_->membersPath(), "--identity",
                    fed_->committeeKeyPath(), "--study", LocalFederation::kStudy, "--version", "1",
                    "--reason", "safety review"});
  EXPECT_EQ(ok, 0) << okText;
}

}  // namespace
}  // namespace trialmesh::node
