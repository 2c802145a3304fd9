// Same-day ethics statements (issue #13 item 7): a suspension and a reinstatement that take
// effect on the same day apply in the order they were issued, whatever order a site received
// them in and whatever order its RocksDB returns them after a restart (keys are hashes of the
// statement bytes). Stored format-1 statements, which carry no issue time, still load and
// decide deterministically (the fail-safe reading: suspended).
#include <gtest/gtest.h>

#include <filesystem>

#include "crypto/hash.h"
#include "ethics/approval.h"
#include "ethics/codec.h"

namespace trialmesh::ethics {
namespace {

constexpr std::string_view kStatementContext{"trialmesh/ethics-statement/v1\0", 30};
constexpr int64_t kIssued = 1'777'000'000'000;  // 2026-04-24, Unix ms

class StatementOrderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Approval a;
    a.study = "LUNG-7";
    a.protocolVersion = 1;
    a.leadCommittee = {"Regional REC North", lead_.pub};
    a.sites = {"site-a"};
    a.coordinators = {coordinator_.pub};
    a.dictionaryHash = crypto::sha256(std::string_view("dictionary v1"));
    a.variables = {"age"};
    a.analyses = {"count"};
    a.minCellSize = 5;
    a.validFrom = {2026, 1, 1};
    a.validUntil = {2026, 12, 1};
    approval_ = signApproval(a, lead_).value();
  }
  SitePolicy policy() const {
    SitePolicy p;
    p.site = "site-a";
    p.recognisedCommittees = {lead_.pub};
    return p;
  }
  QueryUse use() const {
    QueryUse u;
    u.site = "site-a";
    u.coordinator = coordinator_.pub;
    u.study = "LUNG-7";
    u.dictionaryHash = approval_.approval.dictionaryHash;
    u.variables = {"age"};
    u.analyses = {"count"};
    u.today = Date{2026, 5, 2};
    return u;
  }
  Statement base(StatementKind kind, std::string reason) const {
    Statement s;
    s.kind = kind;
    s.study = "LUNG-7";
    s.protocolVersion = 1;
    s.approvalId = approvalId(approval_.approval);
    s.effective = Date{2026, 5, 1};
    s.reason = std::move(reason);
    return s;
  }
  // A format-1 statement, signed the way builds before the issue time signed them.
  SignedStatement signV1(Statement s) const {
    s.signer = lead_.pub;
    s.issuedAtMs.reset();
    SignedStatement ss{s, {}};
    ss.signature = crypto::sign(
        lead_.secret, detail::bytesOf(std::string(kStatementContext) + statementBytes(s)));
    return ss;
  }
  static Hash storeKey(const SignedStatement& ss) {
    return crypto::sha256(encodeSignedStatement(ss));
  }
  // `first` then `second` as stored in a fresh ApprovalStore, reloaded; the decision.
  bool allowedAfterReload(const SignedStatement& first, const SignedStatement& second,
                          const std::string& name) {
    const std::string dir = ::testing::TempDir() + "/statement_order_" + name;
    std::filesystem::remove_all(dir);
    bool allowed = false;
    {
      auto store = ApprovalStore::open(dir);
      EXPECT_TRUE(store.isOk()) << store.status().toString();
      if (!store) return false;
      EXPECT_TRUE((*store)->putApproval(approval_).isOk());
      EXPECT_TRUE((*store)->putStatement(first).isOk());
      EXPECT_TRUE((*store)->putStatement(second).isOk());
      auto registry = (*store)->load(policy());
      EXPECT_TRUE(registry.isOk()) << registry.status().toString();
      if (registry) allowed = (*registry)->check(use()).isOk();
    }
    std::filesystem::remove_all(dir);
    return allowed;
  }
  // Signs the pair issued one second apart (earlier first), varying the reason until the later
  // one's RocksDB key sorts before (laterKeyFirst) or after the earlier one's: both key orders
  // are exercised, deterministically.
  std::pair<SignedStatement, SignedStatement> pair(StatementKind earlier, StatementKind later,
                                                   bool laterKeyFirst) const {
    for (int i = 0; i < 64; ++i) {
      Statement a = base(earlier, "board meeting " + std::to_string(i));
      a.issuedAtMs = kIssued;
      Statement b = base(later, "board meeting " + std::to_string(i));
      b.issuedAtMs = kIssued + 1000;
      SignedStatement sa = signStatement(a, lead_), sb = signStatement(b, lead_);
      if ((storeKey(sb) < storeKey(sa)) == laterKeyFirst) return {sa, sb};
    }
    ADD_FAILURE() << "no reason text gave the wanted key order in 64 tries";
    return {};
  }

  crypto::Identity lead_ = crypto::generateIdentity();
  crypto::Identity coordinator_ = crypto::generateIdentity();
  SignedApproval approval_;
};

TEST_F(StatementOrderTest, IssueTimeIsSignedAndRoundTrips) {
  Statement s = base(StatementKind::kSuspension, "safety signal");
  const SignedStatement unset = signStatement(s, lead_);
  ASSERT_TRUE(unset.statement.issuedAtMs.has_value());  // set from the clock when absent
  EXPECT_EQ(statementBytes(unset.statement)[0], 2);     // format version 2
  s.issuedAtMs = kIssued;
  const SignedStatement ss = signStatement(s, lead_);
  const std::string bytes = encodeSignedStatement(ss);
  auto back = decodeSignedStatement(detail::bytesOf(bytes));
  ASSERT_TRUE(back.isOk()) << back.status().toString();
  EXPECT_EQ(back->statement.issuedAtMs, kIssued);
  EXPECT_TRUE(verifyStatement(*back).isOk());
  // The issue time is covered by the signature.
  SignedStatement moved = *back;
  moved.statement.issuedAtMs = kIssued + 1;
  EXPECT_EQ(verifyStatement(moved).code(), StatusCode::kPermissionDenied);
  // A negative time is refused as corrupt, not read as a huge one.
  std::string negative = bytes;
  const size_t at = bytes.size() - 64 - 8;
  negative[at] = static_cast<char>(0xff);
  EXPECT_EQ(decodeSignedStatement(detail::bytesOf(negative)).status().code(),
            StatusCode::kCorruption);
  // Unknown format versions name the supported ones.
  std::string v3 = bytes;
  v3[0] = 3;
  auto bad = decodeSignedStatement(detail::bytesOf(v3));
  ASSERT_FALSE(bad.isOk());
  EXPECT_NE(bad.status().message().find("versions 1 and 2"), std::string::npos)
      << bad.status().message();
}

TEST_F(StatementOrderTest, SameDayStatementsDecideTheSameInEveryInsertionAndKeyOrder) {
  struct Case {
    StatementKind earlier, later;
    bool allowed;
  };
  const Case cases[] = {{StatementKind::kSuspension, StatementKind::kReinstatement, true},
                        {StatementKind::kReinstatement, StatementKind::kSuspension, false}};
  for (const Case& c : cases) {
    for (bool laterKeyFirst : {false, true}) {
      SCOPED_TRACE(std::string(statementKindName(c.earlier)) + " then " +
                   statementKindName(c.later) + (laterKeyFirst ? ", later key first" : ""));
      auto [first, second] = pair(c.earlier, c.later, laterKeyFirst);
      // In memory, received in issue order and in reverse.
      for (bool reversed : {false, true}) {
        ApprovalRegistry registry(policy());
        ASSERT_TRUE(registry.addApproval(approval_).isOk());
        ASSERT_TRUE(registry.addStatement(reversed ? second : first).isOk());
        ASSERT_TRUE(registry.addStatement(reversed ? first : second).isOk());
        auto r = registry.check(use());
        EXPECT_EQ(r.isOk(), c.allowed) << (r.isOk() ? "allowed" : r.status().message());
        if (!c.allowed && !r.isOk()) {
          EXPECT_EQ(r.status().message(),
                    "approval LUNG-7 v1 is suspended since 2026-05-01: board meeting " +
                        first.statement.reason.substr(14));
        }
      }
      // After a restart (ApprovalStore::load reads in key order).
      EXPECT_EQ(allowedAfterReload(first, second, "a"), c.allowed);
      EXPECT_EQ(allowedAfterReload(second, first, "b"), c.allowed);
    }
  }
}

TEST_F(StatementOrderTest, EarlierEffectiveDateStillComesFirstWhateverTheIssueTime) {
  // A suspension effective 2026-05-01 issued after a reinstatement effective 2026-04-30: the
  // effective dates order them (the reinstatement lifted an older suspension).
  Statement susp = base(StatementKind::kSuspension, "x");
  susp.issuedAtMs = kIssued;
  Statement rein = base(StatementKind::kReinstatement, "y");
  rein.effective = Date{2026, 4, 30};
  rein.issuedAtMs = kIssued + 5000;
  ApprovalRegistry registry(policy());
  ASSERT_TRUE(registry.addApproval(approval_).isOk());
  ASSERT_TRUE(registry.addStatement(signStatement(susp, lead_)).isOk());
  ASSERT_TRUE(registry.addStatement(signStatement(rein, lead_)).isOk());
  EXPECT_FALSE(registry.check(use()).isOk());
}

TEST_F(StatementOrderTest, StoredFormatOneStatementsLoadAndSameDayPairsFailSafe) {
  // Two format-1 statements of the same day have no issue time: whichever order they come in,
  // the approval is suspended (the fail-safe reading, docs/ethics.md) until the committee
  // signs a new (format 2) reinstatement, which orders after both.
  const SignedStatement susp = signV1(base(StatementKind::kSuspension, "legacy suspension"));
  const SignedStatement rein = signV1(base(StatementKind::kReinstatement, "legacy reinstatement"));
  ASSERT_EQ(statementBytes(susp.statement)[0], 1);
  ASSERT_TRUE(verifyStatement(susp).isOk());
  auto decoded = decodeSignedStatement(detail::bytesOf(encodeSignedStatement(susp)));
  ASSERT_TRUE(decoded.isOk()) << decoded.status().toString();
  EXPECT_FALSE(decoded->statement.issuedAtMs.has_value());
  EXPECT_FALSE(allowedAfterReload(susp, rein, "v1a"));
  EXPECT_FALSE(allowedAfterReload(rein, susp, "v1b"));
  Statement fresh = base(StatementKind::kReinstatement, "reviewed");
  fresh.issuedAtMs = kIssued;
  EXPECT_TRUE(allowedAfterReload(susp, signStatement(fresh, lead_), "v1c"));
  // A format-1 reinstatement on a later day still lifts a format-2 suspension.
  Statement later = base(StatementKind::kReinstatement, "later day");
  later.effective = Date{2026, 5, 2};
  Statement newSusp = base(StatementKind::kSuspension, "new");
  newSusp.issuedAtMs = kIssued;
  EXPECT_TRUE(allowedAfterReload(signStatement(newSusp, lead_), signV1(later), "v1d"));
}

}  // namespace
}  // namespace trialmesh::ethics
