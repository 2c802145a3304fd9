// End-to-end ethics enforcement and audit: real trialmesh-node processes on 127.0.0.1 with the
// approval LocalFederation signs (committee.key, recognised by every site). Covers: queries
// pass under the approval and are logged; an expired amendment, a revocation and a forged
// approval are refused with the reason and the refusals are logged; only ethics boards read
// the log; tampering is caught; kill -9 after an answer never loses the query's entry.
//
// Tampering is checked offline: the test downloads a signed tree head while the node runs,
// stops it, flips a byte in the audit RocksDB, reads the entries with
// AuditLog::readAllUnchecked and runs ethics::verifyLog against the earlier head; it also
// checks that the node then refuses to start, naming the entry.
#include <gtest/gtest.h>
#include <rocksdb/db.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "crypto/hash.h"
#include "ethics/approval.h"
#include "ethics/audit_log.h"
#include "node/coordinator.h"
#include "node/local_federation.h"

namespace trialmesh::node {
namespace {

using namespace std::chrono_literals;

std::string readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

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
    std::filesystem::remove_all(dir_);
    LocalFederationOptions o;
    o.directory = dir_.string();
    o.sites = 2;
    o.rows = 400;
    o.nodeBinary = TRIALMESH_NODE_BINARY;
    auto fed = LocalFederation::create(o);
    ASSERT_TRUE(fed.isOk()) << fed.status().toString();
    fed_ = std::move(*fed);
    Status s = fed_->start(30s);
    ASSERT_TRUE(s.isOk()) << s.toString();
  }
  void TearDown() override {
    if (fed_) fed_->stop(5s);
    fed_.reset();
    std::filesystem::remove_all(dir_);
  }

  Result<FederatedResult> query(const std::string& text) {
    FederatedQueryOptions options;
    options.deadline = 10s;
    return runFederatedQuery(fed_->coordinator(), fed_->members(), LocalFederation::kStudy, text,
                             options);
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
    // The query entry is followed by the released result.
    bool released = false;
    for (const auto& e : entries) {
      if (e.kind == ethics::EntryKind::kResultReleased) {
        const auto& rr = std::get<ethics::ResultReleasedEvent>(e.body);
        released = rr.queryHash == crypto::sha256(std::string("count by arm")) && rr.cells >= 2;
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
  // The node itself refuses to start on a tampered log, naming the entry.
  Status restart = fed_->startSite(0, 10s);
  ASSERT_FALSE(restart.isOk());
  EXPECT_NE(restart.message().find("entry 3"), std::string::npos) << restart.toString();
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
  auto [ok, okText] = runCli(dir_, {"audit", "verify", "--node", fed_->siteName(0), "--members",
                                    fed_->membersPath(), "--identity", fed_->committeeKeyPath()});
  EXPECT_EQ(ok, 0) << okText;
  EXPECT_NE(okText.find("audit log of " + fed_->siteName(0) + " verified: 3 entries"),
            std::string::npos)
      << okText;
  auto [denied, deniedText] =
      runCli(dir_, {"audit", "verify", "--node", fed_->siteName(0), "--members",
                    fed_->membersPath(), "--identity", fed_->coordinatorKeyPath()});
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

}  // namespace
}  // namespace trialmesh::node
