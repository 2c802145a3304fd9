// Same-day suspension and reinstatement across node restarts (issue #13 item 7), with real
// trialmesh-node processes on 127.0.0.1: the lead committee submits one statement, every site
// restarts, it submits the other (same effective day, issued later), and the sites decide the
// same before and after another restart. Each case runs in both RocksDB key orders of the two
// statements (the store's keys are hashes of the statement bytes, which the reason text varies).
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>

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

struct OrderCase {
  ethics::StatementKind earlier;
  ethics::StatementKind later;
  bool laterKeyFirst;  // the later statement's RocksDB key sorts first
};

std::string caseName(const ::testing::TestParamInfo<OrderCase>& info) {
  const OrderCase& c = info.param;
  return std::string(c.later == ethics::StatementKind::kReinstatement ? "SuspendThenReinstate"
                                                                      : "ReinstateThenSuspend") +
         (c.laterKeyFirst ? "_LaterKeyFirst" : "_EarlierKeyFirst");
}

class StatementOrderE2eTest : public ::testing::TestWithParam<OrderCase> {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("trialmesh-order-" + std::to_string(::getpid()) + "-" + caseName({GetParam(), 0}));
    startLocalFederation(dir_, 2, 200, fed_);
  }
  void TearDown() override { stopLocalFederation(fed_, dir_); }

  Result<FederatedResult> query(const std::string& text) {
    FederatedQueryOptions options;
    options.deadline = 10s;
    return runFederatedQuery(fed_->coordinator(), fed_->members(), LocalFederation::kStudy, text,
                             options);
  }
  void restart() {
    fed_->stop(5s);
    Status s = fed_->start(30s);
    ASSERT_TRUE(s.isOk()) << s.toString();
  }
  void submit(const ethics::SignedStatement& ss) {
    const std::string bytes = ethics::encodeSignedStatement(ss);
    for (size_t i = 0; i < fed_->siteCount(); ++i) {
      auto receipt =
          submitStatementToSite(fed_->committee(), fed_->members(), fed_->siteName(i), bytes);
      ASSERT_TRUE(receipt.isOk()) << receipt.status().toString();
    }
  }
  ethics::Hash approvalId() {
    std::ifstream in(fed_->approvalPath(), std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    const std::string bytes = s.str();
    auto sa = ethics::decodeSignedApproval(
        {reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()});
    EXPECT_TRUE(sa.isOk()) << sa.status().toString();
    return sa ? ethics::approvalId(sa->approval) : ethics::Hash{};
  }
  // Whether both sites answer; a refusal must be the suspension.
  bool answered(const std::string& text) {
    auto r = query(text);
    EXPECT_TRUE(r.isOk()) << r.status().toString();
    if (!r) return false;
    if (r->answered() == fed_->siteCount()) return true;
    EXPECT_EQ(r->answered(), 0u);
    for (const auto& s : r->sites) {
      EXPECT_NE(s.reason.find("approval LUNG-7 v1 is suspended since"), std::string::npos)
          << s.reason;
    }
    return false;
  }

  std::filesystem::path dir_;
  std::unique_ptr<LocalFederation> fed_;
};

TEST_P(StatementOrderE2eTest, DecisionSurvivesRestarts) {
  const OrderCase c = GetParam();
  // Yesterday, so a run across midnight UTC keeps both statements in force and on one day.
  const ethics::Date day = ethics::dateFromUnixMs(nowMs() - 86'400'000);
  const int64_t issued = nowMs() - 60'000;
  const ethics::Hash id = approvalId();
  ethics::SignedStatement first, second;
  bool found = false;
  for (int i = 0; i < 64 && !found; ++i) {
    auto make = [&](ethics::StatementKind kind, int64_t at) {
      ethics::Statement st;
      st.kind = kind;
      st.study = LocalFederation::kStudy;
      st.protocolVersion = 1;
      st.approvalId = id;
      st.effective = day;
      st.reason = "board decision " + std::to_string(i);
      st.issuedAtMs = at;
      return ethics::signStatement(st, fed_->committee());
    };
    first = make(c.earlier, issued);
    second = make(c.later, issued + 1000);
    const auto key = [](const ethics::SignedStatement& ss) {
      return crypto::sha256(ethics::encodeSignedStatement(ss));
    };
    found = (key(second) < key(first)) == c.laterKeyFirst;
  }
  ASSERT_TRUE(found) << "no reason text gave the wanted key order in 64 tries";
  const bool expectAllowed = c.later == ethics::StatementKind::kReinstatement;

  ASSERT_TRUE(answered("count"));
  submit(first);
  EXPECT_EQ(answered("count where age >= 40"), c.earlier != ethics::StatementKind::kSuspension);
  restart();
  submit(second);
  EXPECT_EQ(answered("count where age >= 41"), expectAllowed) << "before the restart";
  restart();
  EXPECT_EQ(answered("count where age >= 42"), expectAllowed) << "after the restart";
  restart();
  EXPECT_EQ(answered("count where age >= 43"), expectAllowed) << "after a second restart";
  // The audit log records each statement with its issue time, i.e. the order it applies in.
  auto log = downloadAuditLog(fed_->committee(), fed_->members(), fed_->siteName(0));
  ASSERT_TRUE(log.isOk()) << log.status().toString();
  int stamped = 0;
  for (const auto& stored : log->entries) {
    auto e = ethics::decodeEntry(
        {reinterpret_cast<const uint8_t*>(stored.bytes.data()), stored.bytes.size()});
    ASSERT_TRUE(e.isOk()) << e.status().toString();
    if (e->kind != ethics::EntryKind::kApprovalSuspended &&
        e->kind != ethics::EntryKind::kApprovalReinstated) {
      continue;
    }
    const std::string& detail = std::get<ethics::ApprovalEvent>(e->body).detail;
    EXPECT_NE(detail.find(", issued " + ethics::dateFromUnixMs(issued).toString() + "T"),
              std::string::npos)
        << detail;
    ++stamped;
  }
  EXPECT_EQ(stamped, 2);
}

INSTANTIATE_TEST_SUITE_P(
    SameDay, StatementOrderE2eTest,
    ::testing::Values(
        OrderCase{ethics::StatementKind::kSuspension, ethics::StatementKind::kReinstatement, false},
        OrderCase{ethics::StatementKind::kSuspension, ethics::StatementKind::kReinstatement, true},
        OrderCase{ethics::StatementKind::kReinstatement, ethics::StatementKind::kSuspension, false},
        OrderCase{ethics::StatementKind::kReinstatement, ethics::StatementKind::kSuspension, true}),
    caseName);

}  // namespace
}  // namespace trialmesh::node
