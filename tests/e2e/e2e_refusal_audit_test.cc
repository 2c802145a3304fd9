// Refusals before the ethics check are audited, rate-limited (issue #12 item 6), end to end
// against a real trialmesh-node on 127.0.0.1 (limits.audit_refusals_per_minute = 5): a forged
// and a replayed query appear in the site's audit log (read by the ethics board, and through
// `trialmesh audit verify` / `export`), which still verifies; a flood of 500 forged queries
// grows the log by the limit plus one summary while trialmesh_refusals_total counts all 500;
// an RPC message larger than limits.max_message_bytes (here 64 KiB) is logged, counted and
// audited.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <kj/async-io.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <sstream>
#include <thread>

#include "e2e_federation_fixture.h"
#include "ethics/audit_log.h"
#include "node/child_process.h"
#include "node/coordinator.h"
#include "node/local_federation.h"
#include "protocol/secure_stream.h"

namespace trialmesh::node {
namespace {

using namespace std::chrono_literals;

constexpr uint32_t kPerMinute = 5;

// The value of `series` (full name with labels) in a Prometheus text body; -1 if absent.
double metricValue(const std::string& body, const std::string& series) {
  std::istringstream in(body);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
  }
  return -1;
}

class RefusalAuditE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("trialmesh-refusals-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    LocalFederationOptions o;
    o.directory = dir_.string();
    o.sites = 1;
    o.rows = 100;
    o.nodeBinary = TRIALMESH_NODE_BINARY;
    o.extraLimits =
        "audit_refusals_per_minute = " + std::to_string(kPerMinute) + "\nmax_message_bytes = 65536";
    auto created = LocalFederation::create(o);
    ASSERT_TRUE(created.isOk()) << created.status().toString();
    fed_ = std::move(*created);
    Status s = fed_->start(30s);
    ASSERT_TRUE(s.isOk()) << s.toString();
  }
  void TearDown() override { stopLocalFederation(fed_, dir_); }

  double metric(const std::string& series) {
    return metricValue(httpGet(fed_->siteOpsPort(0), "/metrics"), series);
  }

  // The site's refusal entries, downloaded by the ethics board; the log must verify.
  std::vector<ethics::RefusalEvent> downloadRefusals() {
    std::vector<ethics::RefusalEvent> out;
    auto log = downloadAuditLog(fed_->committee(), fed_->members(), fed_->siteName(0));
    EXPECT_TRUE(log.isOk()) << log.status().toString();
    if (!log) return out;
    const Member* site = fed_->members().findByName(fed_->siteName(0));
    Status verified = ethics::verifyLog(log->entries, log->head, site->publicKey);
    EXPECT_TRUE(verified.isOk()) << verified.toString();
    return refusalsOf(log->entries);
  }
  static std::vector<ethics::RefusalEvent> refusalsOf(
      const std::vector<ethics::StoredEntry>& entries) {
    std::vector<ethics::RefusalEvent> out;
    for (const auto& s : entries) {
      auto e =
          ethics::decodeEntry({reinterpret_cast<const uint8_t*>(s.bytes.data()), s.bytes.size()});
      EXPECT_TRUE(e.isOk()) << e.status().toString();
      if (e && e->kind == ethics::EntryKind::kRefusal) {
        out.push_back(std::get<ethics::RefusalEvent>(e->body));
      }
    }
    return out;
  }

  // Runs the CLI with `args`; returns its exit status and combined output.
  std::pair<int, std::string> cli(const std::vector<std::string>& args) {
    const std::string out = (dir_ / "cli-output.txt").string();
    std::filesystem::remove(out);
    std::vector<std::string> shellArgs = {"-c", "exec \"$0\" \"$@\" 1>&2", TRIALMESH_CLI_BINARY};
    shellArgs.insert(shellArgs.end(), args.begin(), args.end());
    auto p = ChildProcess::spawn("/bin/sh", shellArgs, out);
    if (!p) return {-1, p.status().toString()};
    auto status = p->waitFor(60s);
    if (!status) p->stop(1s);
    return {status.value_or(-1), readFile(out)};
  }
  std::vector<std::string> boardArgs(const std::string& command) {
    return {"audit",      command,
            "--node",     fed_->siteName(0),
            "--members",  fed_->membersPath(),
            "--identity", fed_->committeeKeyPath(),
            "--state",    (dir_ / "pins").string()};
  }

  std::filesystem::path dir_;
  std::unique_ptr<LocalFederation> fed_;
};

TEST_F(RefusalAuditE2eTest, ForgedAndReplayedQueriesAreAuditedAndTheLogVerifies) {
  FederatedQueryOptions forged;
  forged.adjustSigned = [](const Member&, protocol::SignedQueryBytes& q) { q.signature[5] ^= 1; };
  auto r = runFederatedQuery(fed_->coordinator(), fed_->members(), LocalFederation::kStudy, "count",
                             forged);
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  ASSERT_EQ(r->sites.size(), 1u);
  EXPECT_EQ(r->sites[0].outcome, SiteOutcomeKind::kRefused) << r->sites[0].reason;

  const std::vector<uint8_t> nonce(16, 0x42);
  FederatedQueryOptions replay;
  replay.adjustRequest = [&](const Member&, protocol::QueryRequestFields& f) { f.nonce = nonce; };
  r = runFederatedQuery(fed_->coordinator(), fed_->members(), LocalFederation::kStudy, "count",
                        replay);
  ASSERT_TRUE(r.isOk());
  EXPECT_EQ(r->answered(), 1u);
  r = runFederatedQuery(fed_->coordinator(), fed_->members(), LocalFederation::kStudy, "count",
                        replay);
  ASSERT_TRUE(r.isOk());
  EXPECT_EQ(r->sites[0].outcome, SiteOutcomeKind::kRefused);

  auto refusals = downloadRefusals();
  ASSERT_EQ(refusals.size(), 2u);
  EXPECT_EQ(refusals[0].reasonClass, "bad-signature");
  EXPECT_EQ(refusals[0].peer, "coordinator");
  EXPECT_NE(refusals[0].remote.find("127.0.0.1:"), std::string::npos) << refusals[0].remote;
  EXPECT_NE(refusals[0].message.find("query signature does not verify"), std::string::npos)
      << refusals[0].message;
  EXPECT_EQ(refusals[0].summarised, 0u);
  EXPECT_EQ(refusals[1].reasonClass, "replay");
  EXPECT_NE(refusals[1].message.find("nonce already used"), std::string::npos)
      << refusals[1].message;
  // Never the request body: the query text is not in the entry.
  EXPECT_EQ(refusals[1].message.find("count"), std::string::npos) << refusals[1].message;

  // The board's tools: the log verifies, and the export shows the refusals.
  auto [verifyStatus, verifyText] = cli(boardArgs("verify"));
  EXPECT_EQ(verifyStatus, 0) << verifyText;
  auto exportArgs = boardArgs("export");
  exportArgs.resize(exportArgs.size() - 2);  // export takes no --state
  auto [exportStatus, exportText] = cli(exportArgs);
  EXPECT_EQ(exportStatus, 0) << exportText;
  EXPECT_NE(exportText.find("refusal"), std::string::npos) << exportText;
  EXPECT_NE(exportText.find("bad-signature from 127.0.0.1:"), std::string::npos) << exportText;
  EXPECT_NE(exportText.find("replay from 127.0.0.1:"), std::string::npos) << exportText;

  EXPECT_EQ(metric("trialmesh_refusals_total{class=\"bad-signature\"}"), 1);
  EXPECT_EQ(metric("trialmesh_refusals_total{class=\"replay\"}"), 1);
}

TEST_F(RefusalAuditE2eTest, FloodOfForgedQueriesGrowsTheLogByTheLimitButIsCountedExactly) {
  const uint64_t before =
      fetchAuditHead(fed_->committee(), fed_->members(), fed_->siteName(0), {})->head.treeSize;
  CoordinatorSession session(fed_->coordinator(), fed_->members());
  FederatedQueryOptions forged;
  forged.adjustSigned = [](const Member&, protocol::SignedQueryBytes& q) { q.signature[5] ^= 1; };
  const auto start = std::chrono::steady_clock::now();
  int refused = 0;
  for (int i = 0; i < 500 && std::chrono::steady_clock::now() - start < 50s; ++i) {
    auto r = session.query(LocalFederation::kStudy, "count", forged);
    ASSERT_TRUE(r.isOk()) << r.status().toString();
    if (r->sites[0].outcome == SiteOutcomeKind::kRefused) ++refused;
  }
  session.close();
  // The whole flood fits in one rate-limit window (a minute), so the count below is exact.
  ASSERT_EQ(refused, 500) << "the flood did not finish within 50 s";
  EXPECT_EQ(metric("trialmesh_refusals_total{class=\"bad-signature\"}"), 500);
  EXPECT_EQ(metric("trialmesh_refusals_summarised_total{class=\"bad-signature\"}"),
            500 - kPerMinute);
  const uint64_t during =
      fetchAuditHead(fed_->committee(), fed_->members(), fed_->siteName(0), {})->head.treeSize;
  EXPECT_EQ(during - before, kPerMinute);

  // At stop, the open window's summary is written before the node-stop entry.
  fed_->stop(10s);
  auto stored = ethics::AuditLog::readAllUnchecked(fed_->siteAuditDir(0));
  ASSERT_TRUE(stored.isOk()) << stored.status().toString();
  auto refusals = refusalsOf(*stored);
  ASSERT_EQ(refusals.size(), kPerMinute + 1);
  uint64_t represented = 0;
  for (const auto& e : refusals) {
    EXPECT_EQ(e.reasonClass, "bad-signature");
    represented += e.summarised == 0 ? 1 : e.summarised;
  }
  EXPECT_EQ(represented, 500u);
  EXPECT_EQ(refusals.back().summarised, 500u - kPerMinute);
  EXPECT_NE(refusals.back().message.find(std::to_string(500 - kPerMinute) +
                                         " further refusals of class bad-signature"),
            std::string::npos)
      << refusals.back().message;
  EXPECT_NE(
      refusals.back().message.find("from coordinator (" + std::to_string(500 - kPerMinute) + ")"),
      std::string::npos)
      << refusals.back().message;
}

// An authenticated coordinator sends the segment table of a 128 MiB message: the site logs one
// line with the peer and the limit, counts it, audits it, and closes the connection.
TEST_F(RefusalAuditE2eTest, OversizedMessageIsLoggedCountedAndAudited) {
  const Member* site = fed_->members().findByName(fed_->siteName(0));
  ASSERT_NE(site, nullptr);
  {
    auto io = kj::setupAsyncIo();
    auto address =
        io.provider->getNetwork().parseAddress("127.0.0.1", fed_->sitePort(0)).wait(io.waitScope);
    auto transport = address->connect().wait(io.waitScope);
    auto conn = protocol::secureConnect(kj::mv(transport), fed_->coordinator(), {site->publicKey})
                    .wait(io.waitScope);
    const kj::byte table[8] = {0, 0, 0, 0, 0, 0, 0, 1};  // one segment of 2^24 words
    conn.stream->write(table, sizeof table).wait(io.waitScope);
    // The site closes the connection: reads end (EOF or a disconnect), within a bounded time.
    kj::byte buf[4096];
    bool closed = false;
    for (int i = 0; i < 100 && !closed; ++i) {
      try {
        auto n =
            conn.stream->tryRead(buf, 1, sizeof buf)
                .exclusiveJoin(
                    io.provider->getTimer().afterDelay(100 * kj::MILLISECONDS).then([]() -> size_t {
                      return SIZE_MAX;
                    }))
                .wait(io.waitScope);
        if (n == 0) closed = true;
      } catch (const kj::Exception&) {
        closed = true;
      }
    }
    EXPECT_TRUE(closed) << "the site kept the connection open";
  }
  EXPECT_EQ(metric("trialmesh_refusals_total{class=\"oversized\"}"), 1);
  const std::string log = readFile(fed_->siteLogPath(0));
  EXPECT_NE(log.find("message_oversized"), std::string::npos) << log;
  EXPECT_NE(log.find("size=134217728"), std::string::npos) << log;
  EXPECT_NE(log.find("limit=65536"), std::string::npos) << log;
  EXPECT_NE(log.find("peer=coordinator"), std::string::npos) << log;
  auto refusals = downloadRefusals();
  ASSERT_EQ(refusals.size(), 1u);
  EXPECT_EQ(refusals[0].reasonClass, "oversized");
  EXPECT_EQ(refusals[0].peer, "coordinator");
  EXPECT_NE(refusals[0].message.find("message of 134217728 bytes, more than the 65536"),
            std::string::npos)
      << refusals[0].message;
  // The site still serves queries.
  auto r =
      runFederatedQuery(fed_->coordinator(), fed_->members(), LocalFederation::kStudy, "count", {});
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  EXPECT_EQ(r->answered(), 1u);
}

}  // namespace
}  // namespace trialmesh::node
