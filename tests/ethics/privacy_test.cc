// Issue #5 policy: the aggregation fields of an approval (TOML, canonical bytes, signatures,
// grants) and the durable differential-privacy budget ledger.
#include <gtest/gtest.h>

#include <atomic>
#include <bit>
#include <cmath>
#include <filesystem>
#include <thread>

#include <rocksdb/db.h>

#include "ethics/approval.h"
#include "ethics/codec.h"
#include "ethics/privacy_budget.h"

namespace trialmesh::ethics {
namespace {

// ---- approval policy fields ----

class ApprovalPolicyTest : public ::testing::Test {
 protected:
  // 11 lines; `extra` starts on line 12.
  std::string toml(std::string_view extra = "") {
    return "study = \"LUNG-7\"\n"
           "protocol_version = 3\n"
           "lead_committee = { name = \"Regional REC North\", key = \"" +
           lead_.pub.toText() +
           "\" }\n"
           "sites = [\"site-a\", \"site-b\", \"site-c\"]\n"
           "coordinators = [\"" +
           coordinator_.pub.toText() +
           "\"]\n"
           "dictionary_hash = \"" +
           hashHex(dict_) +
           "\"\n"
           "variables = [\"age\", \"os_days\", \"death\"]\n"
           "analyses = [\"count\", \"km\"]\n"
           "min_cell_size = 5\n"
           "valid_from = 2026-01-01\n"
           "valid_until = 2026-10-01\n" +
           std::string(extra);
  }
  Approval parse(std::string_view extra) {
    auto a = parseApprovalToml(toml(extra), "lung7.toml");
    EXPECT_TRUE(a.isOk()) << a.status().toString();
    return a.isOk() ? *a : Approval{};
  }
  std::string error(std::string_view extra) {
    auto a = parseApprovalToml(toml(extra), "lung7.toml");
    EXPECT_FALSE(a.isOk());
    return a.isOk() ? "" : a.status().message();
  }

  crypto::Identity lead_ = crypto::generateIdentity();
  crypto::Identity coordinator_ = crypto::generateIdentity();
  Hash dict_ = crypto::sha256(std::string_view("dictionary v1"));
};

void appendU32(std::string& s, uint32_t v) {
  for (int i = 3; i >= 0; --i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void appendF64(std::string& s, double d) {
  const uint64_t v = std::bit_cast<uint64_t>(d);
  for (int i = 7; i >= 0; --i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

TEST_F(ApprovalPolicyTest, DefaultsAreSecureWithThreeSitesAndKeepVersion1Bytes) {
  const Approval a = parse("");
  EXPECT_EQ(a.aggregation, AggregationMode::kSecure);
  EXPECT_EQ(a.minSites, 3u);
  EXPECT_FALSE(a.timeBin.has_value());
  const std::string bytes = approvalBytes(a);
  EXPECT_EQ(bytes[0], 1);  // approvals signed before issue #5 keep their ids
  // Spelling the defaults out changes nothing.
  const Approval spelt = parse("aggregation = \"secure\"\nmin_sites = 3\n");
  EXPECT_EQ(approvalBytes(spelt), bytes);
  const std::string text = approvalToToml(a);
  EXPECT_NE(text.find("aggregation = \"secure\"\nmin_sites = 3\n"), std::string::npos) << text;
  EXPECT_EQ(text.find("dp_"), std::string::npos);
}

TEST_F(ApprovalPolicyTest, SecureDpRoundTripsThroughTomlAndSignedBytes) {
  const Approval a = parse(
      "aggregation = \"secure-dp\"\nmin_sites = 4\ndp_epsilon_per_query = 0.1\n"
      "dp_budget = 2\ntime_bin = 30\n");
  EXPECT_EQ(a.aggregation, AggregationMode::kSecureDp);
  EXPECT_EQ(a.minSites, 4u);
  EXPECT_EQ(a.dpEpsilonPerQuery, 0.1);
  EXPECT_EQ(a.dpBudget, 2.0);
  ASSERT_TRUE(a.timeBin.has_value());
  EXPECT_EQ(*a.timeBin, 30.0);

  const std::string text = approvalToToml(a);
  EXPECT_NE(text.find("aggregation = \"secure-dp\"\nmin_sites = 4\ndp_epsilon_per_query = 0.1\n"
                      "dp_budget = 2.0\ntime_bin = 30.0\n"),
            std::string::npos)
      << text;
  auto back = parseApprovalToml(text, "written.toml");
  ASSERT_TRUE(back.isOk()) << back.status().toString();
  EXPECT_EQ(approvalBytes(*back), approvalBytes(a));

  auto sa = signApproval(a, lead_);
  ASSERT_TRUE(sa.isOk());
  const std::string wire = encodeSignedApproval(*sa);
  auto decoded = decodeSignedApproval({reinterpret_cast<const uint8_t*>(wire.data()), wire.size()});
  ASSERT_TRUE(decoded.isOk()) << decoded.status().toString();
  EXPECT_TRUE(verifyApproval(*decoded).isOk());
  EXPECT_EQ(decoded->approval.aggregation, AggregationMode::kSecureDp);
  EXPECT_EQ(decoded->approval.dpEpsilonPerQuery, 0.1);
  EXPECT_EQ(decoded->approval.timeBin, std::optional<double>(30.0));
}

TEST_F(ApprovalPolicyTest, SmallAndFractionalNumbersRoundTrip) {
  const Approval a = parse(
      "aggregation = \"secure-dp\"\ndp_epsilon_per_query = 0.00001\ndp_budget = 0.3\n"
      "time_bin = 0.5\n");
  const std::string text = approvalToToml(a);
  EXPECT_NE(text.find("dp_epsilon_per_query = 1e-05\n"), std::string::npos) << text;
  auto back = parseApprovalToml(text, "written.toml");
  ASSERT_TRUE(back.isOk()) << back.status().toString();
  EXPECT_EQ(back->dpEpsilonPerQuery, 0.00001);
  EXPECT_EQ(back->dpBudget, 0.3);
  EXPECT_EQ(back->timeBin, std::optional<double>(0.5));
  EXPECT_EQ(approvalBytes(*back), approvalBytes(a));
}

TEST_F(ApprovalPolicyTest, Version2LayoutAppendsThePolicy) {
  const Approval a = parse(
      "aggregation = \"secure-dp\"\nmin_sites = 5\ndp_epsilon_per_query = 0.25\n"
      "dp_budget = 1.5\ntime_bin = 7\n");
  Approval defaults = a;
  defaults.aggregation = AggregationMode::kSecure;
  defaults.minSites = 3;
  defaults.dpEpsilonPerQuery = defaults.dpBudget = 0;
  defaults.timeBin.reset();
  std::string want = approvalBytes(defaults);
  ASSERT_EQ(want[0], 1);
  want[0] = 2;
  want.push_back(2);  // secure-dp
  appendU32(want, 5);
  appendF64(want, 0.25);
  appendF64(want, 1.5);
  want.push_back(1);
  appendF64(want, 7.0);
  EXPECT_EQ(approvalBytes(a), want);

  // Plain mode: no dp values, no time bin.
  const Approval plain = parse("aggregation = \"plain\"\n");
  std::string wantPlain = approvalBytes(defaults);
  wantPlain[0] = 2;
  wantPlain.push_back(0);
  appendU32(wantPlain, 3);
  wantPlain.push_back(0);
  EXPECT_EQ(approvalBytes(plain), wantPlain);
}

TEST_F(ApprovalPolicyTest, PolicyIsCoveredByTheSignature) {
  const Approval a = parse("min_sites = 4\n");
  auto sa = signApproval(a, lead_);
  ASSERT_TRUE(sa.isOk());
  SignedApproval tampered = *sa;
  tampered.approval.minSites = 2;
  EXPECT_NE(approvalId(tampered.approval), approvalId(a));
  EXPECT_EQ(verifyApproval(tampered).code(), StatusCode::kPermissionDenied);
  tampered = *sa;
  tampered.approval.aggregation = AggregationMode::kPlain;
  EXPECT_EQ(verifyApproval(tampered).code(), StatusCode::kPermissionDenied);
}

TEST_F(ApprovalPolicyTest, RefusesBadPolicyWithFileLineAndKey) {
  EXPECT_EQ(error("min_sites = 1\n"),
            "lung7.toml:12: key 'min_sites': must be between 2 and 4294967295, got 1");
  EXPECT_EQ(error("aggregation = \"secret\"\n"),
            "lung7.toml:12: key 'aggregation': unknown mode 'secret' (known: plain, secure, "
            "secure-dp)");
  EXPECT_EQ(error("dp_epsilon_per_query = 0.1\n"),
            "lung7.toml:12: key 'dp_epsilon_per_query': is only allowed with aggregation = "
            "\"secure-dp\" (this approval's mode is 'secure')");
  EXPECT_EQ(error("aggregation = \"secure-dp\"\ndp_epsilon_per_query = 0.1\n"),
            "lung7.toml: required key 'dp_budget' is missing (aggregation = \"secure-dp\" needs "
            "dp_epsilon_per_query and dp_budget)");
  EXPECT_EQ(error("aggregation = \"secure-dp\"\ndp_epsilon_per_query = 0.5\ndp_budget = 0.25\n"),
            "lung7.toml:14: key 'dp_budget': 0.25 is below dp_epsilon_per_query 0.5: not even "
            "one query would fit");
  EXPECT_EQ(error("aggregation = \"secure-dp\"\ndp_epsilon_per_query = -1\ndp_budget = 1\n"),
            "lung7.toml:13: key 'dp_epsilon_per_query': must be a number above 0");
  EXPECT_EQ(error("aggregation = \"secure-dp\"\ndp_epsilon_per_query = 0.1\ndp_budget = 2e6\n"),
            "lung7.toml:14: key 'dp_budget': must be between 1e-9 and 1e6, got 2e+06");
  EXPECT_EQ(error("time_bin = 0\n"), "lung7.toml:12: key 'time_bin': must be a number above 0");
  EXPECT_EQ(error("time_bin = nan\n"), "lung7.toml:12: key 'time_bin': must be a number above 0");
  EXPECT_NE(error("time_bin = \"week\"\n").find("key 'time_bin': expected a number"),
            std::string::npos);
  EXPECT_NE(error("min_site = 3\n").find("key 'min_site': unknown key"), std::string::npos);
}

TEST_F(ApprovalPolicyTest, DecodeRefusesNonCanonicalOrInvalidPolicy) {
  const Approval a = parse("");
  auto decode = [](const std::string& bytes) {
    const std::string wire = bytes + std::string(64, '\0');
    return decodeSignedApproval({reinterpret_cast<const uint8_t*>(wire.data()), wire.size()});
  };
  std::string v1 = approvalBytes(a);
  ASSERT_TRUE(decode(v1).isOk());
  // The default policy written as version 2 would give the same approval a second id.
  std::string v2 = v1;
  v2[0] = 2;
  v2.push_back(1);
  appendU32(v2, 3);
  v2.push_back(0);
  auto r = decode(v2);
  ASSERT_FALSE(r.isOk());
  EXPECT_EQ(r.status().code(), StatusCode::kCorruption);
  EXPECT_NE(r.status().message().find("not canonical"), std::string::npos) << r.status().message();

  std::string badMode = v1;
  badMode[0] = 2;
  badMode.push_back(3);
  appendU32(badMode, 3);
  badMode.push_back(0);
  r = decode(badMode);
  ASSERT_FALSE(r.isOk());
  EXPECT_NE(r.status().message().find("unknown aggregation mode 3"), std::string::npos);

  std::string badBin = v1;
  badBin[0] = 2;
  badBin.push_back(1);
  appendU32(badBin, 3);
  badBin.push_back(1);
  appendF64(badBin, -0.0);
  r = decode(badBin);
  ASSERT_FALSE(r.isOk());
  EXPECT_NE(r.status().message().find("time bin must be above 0"), std::string::npos);

  std::string oneSite = v1;
  oneSite[0] = 2;
  oneSite.push_back(1);
  appendU32(oneSite, 1);
  oneSite.push_back(0);
  r = decode(oneSite);
  ASSERT_FALSE(r.isOk());
  EXPECT_NE(r.status().message().find("min sites must be at least 2"), std::string::npos);
}

// Issue #11: model_min_site_rows is written only when set (version 3), so approvals without it
// keep their version 1 / 2 bytes and ids.
TEST_F(ApprovalPolicyTest, ModelMinSiteRowsRoundTripsAsVersion3AndOnlyWhenSet) {
  const Approval without = parse("");
  const Approval a = parse("model_min_site_rows = 5\n");
  EXPECT_EQ(a.modelMinSiteRows, 5u);
  EXPECT_EQ(without.modelMinSiteRows, 0u);
  const std::string bytes = approvalBytes(a);
  EXPECT_EQ(bytes[0], 3);
  EXPECT_EQ(approvalBytes(without)[0], 1);
  // Version 3 = the version 1 bytes, the policy tail (also for the default policy), the rows.
  std::string expected = approvalBytes(without);
  expected[0] = 3;
  expected.push_back(1);  // secure
  appendU32(expected, 3);
  expected.push_back(0);  // no time bin
  appendU32(expected, 5);
  EXPECT_EQ(bytes, expected);
  EXPECT_NE(approvalBytes(parse("min_sites = 4\n")),
            approvalBytes(parse("min_sites = 4\nmodel_min_site_rows = 1\n")));
  EXPECT_EQ(approvalBytes(parse("min_sites = 4\n"))[0], 2);

  const std::string text = approvalToToml(a);
  EXPECT_NE(text.find("model_min_site_rows = 5\n"), std::string::npos) << text;
  EXPECT_EQ(approvalToToml(without).find("model_min_site_rows"), std::string::npos);
  auto back = parseApprovalToml(text, "written.toml");
  ASSERT_TRUE(back.isOk()) << back.status().toString();
  EXPECT_EQ(approvalBytes(*back), bytes);

  auto sa = signApproval(a, lead_);
  ASSERT_TRUE(sa.isOk());
  const std::string wire = encodeSignedApproval(*sa);
  auto decoded = decodeSignedApproval({reinterpret_cast<const uint8_t*>(wire.data()), wire.size()});
  ASSERT_TRUE(decoded.isOk()) << decoded.status().toString();
  EXPECT_TRUE(verifyApproval(*decoded).isOk());
  EXPECT_EQ(decoded->approval.modelMinSiteRows, 5u);

  // Version 3 with a zero count would be a second encoding of the approval without it.
  std::string zero = expected.substr(0, expected.size() - 4);
  appendU32(zero, 0);
  zero += std::string(64, '\0');
  auto r = decodeSignedApproval({reinterpret_cast<const uint8_t*>(zero.data()), zero.size()});
  ASSERT_FALSE(r.isOk());
  EXPECT_NE(r.status().message().find("not canonical"), std::string::npos) << r.status().message();

  EXPECT_EQ(error("model_min_site_rows = 0\n"),
            "lung7.toml:12: key 'model_min_site_rows': must be between 1 and 4294967295, got 0");
}

// Issue #15 item 3: surveillance_min_interval_ms is written only when set (version 4, after
// the version 3 tail), so every approval without it keeps its bytes and id.
TEST_F(ApprovalPolicyTest, SurveillanceMinIntervalRoundTripsAsVersion4AndOnlyWhenSet) {
  const Approval without = parse("");
  const Approval a = parse("surveillance_min_interval_ms = 86400000\n");
  EXPECT_EQ(a.surveillanceMinIntervalMs, 86'400'000u);
  EXPECT_EQ(without.surveillanceMinIntervalMs, 0u);
  const std::string bytes = approvalBytes(a);
  EXPECT_EQ(bytes[0], 4);
  EXPECT_EQ(approvalBytes(without)[0], 1);
  EXPECT_EQ(approvalBytes(parse("model_min_site_rows = 5\n"))[0], 3);
  // Version 4 = the version 1 bytes, the policy tail, model_min_site_rows (0 here), the interval.
  std::string expected = approvalBytes(without);
  expected[0] = 4;
  expected.push_back(1);  // secure
  appendU32(expected, 3);
  expected.push_back(0);  // no time bin
  appendU32(expected, 0);
  appendU32(expected, 0);  // 86400000 as u64 big-endian
  appendU32(expected, 86'400'000);
  EXPECT_EQ(bytes, expected);

  const Approval both = parse("model_min_site_rows = 5\nsurveillance_min_interval_ms = 200\n");
  const std::string text = approvalToToml(both);
  EXPECT_NE(text.find("surveillance_min_interval_ms = 200\n"), std::string::npos) << text;
  EXPECT_EQ(approvalToToml(without).find("surveillance_min_interval_ms"), std::string::npos);
  auto back = parseApprovalToml(text, "written.toml");
  ASSERT_TRUE(back.isOk()) << back.status().toString();
  EXPECT_EQ(approvalBytes(*back), approvalBytes(both));

  auto sa = signApproval(both, lead_);
  ASSERT_TRUE(sa.isOk());
  const std::string wire = encodeSignedApproval(*sa);
  auto decoded = decodeSignedApproval({reinterpret_cast<const uint8_t*>(wire.data()), wire.size()});
  ASSERT_TRUE(decoded.isOk()) << decoded.status().toString();
  EXPECT_TRUE(verifyApproval(*decoded).isOk());
  EXPECT_EQ(decoded->approval.surveillanceMinIntervalMs, 200u);
  EXPECT_EQ(decoded->approval.modelMinSiteRows, 5u);

  // Version 4 with a zero interval would be a second encoding of an approval without it.
  std::string zero = expected.substr(0, expected.size() - 8);
  appendU32(zero, 0);
  appendU32(zero, 0);
  zero += std::string(64, '\0');
  auto r = decodeSignedApproval({reinterpret_cast<const uint8_t*>(zero.data()), zero.size()});
  ASSERT_FALSE(r.isOk());
  EXPECT_NE(r.status().message().find("not canonical"), std::string::npos) << r.status().message();

  EXPECT_EQ(error("surveillance_min_interval_ms = 0\n"),
            "lung7.toml:12: key 'surveillance_min_interval_ms': must be between 1 and "
            "31622400000, got 0");

  // The grant carries it, for the site to enforce.
  SitePolicy policy;
  policy.site = "site-a";
  policy.recognisedCommittees = {lead_.pub};
  ApprovalRegistry registry(policy);
  ASSERT_TRUE(registry.addApproval(signApproval(a, lead_).value()).isOk());
  QueryUse use;
  use.site = "site-a";
  use.coordinator = coordinator_.pub;
  use.study = "LUNG-7";
  use.dictionaryHash = dict_;
  use.variables = {"os_days"};
  use.analyses = {"count"};
  use.today = Date{2026, 5, 1};
  auto g = registry.check(use);
  ASSERT_TRUE(g.isOk()) << g.status().toString();
  EXPECT_EQ(g->surveillanceMinIntervalMs, 86'400'000u);
}

TEST_F(ApprovalPolicyTest, GrantCarriesThePolicy) {
  SitePolicy policy;
  policy.site = "site-a";
  policy.recognisedCommittees = {lead_.pub};
  ApprovalRegistry registry(policy);
  const Approval a = parse(
      "aggregation = \"secure-dp\"\nmin_sites = 4\ndp_epsilon_per_query = 0.1\n"
      "dp_budget = 1\ntime_bin = 14\n");
  ASSERT_TRUE(registry.addApproval(signApproval(a, lead_).value()).isOk());
  QueryUse use;
  use.site = "site-a";
  use.coordinator = coordinator_.pub;
  use.study = "LUNG-7";
  use.dictionaryHash = dict_;
  use.variables = {"os_days", "death"};
  use.analyses = {"km"};
  use.today = Date{2026, 5, 1};
  auto g = registry.check(use);
  ASSERT_TRUE(g.isOk()) << g.status().toString();
  EXPECT_EQ(g->modelMinSiteRows, 0u);
  EXPECT_EQ(g->aggregation, AggregationMode::kSecureDp);
  EXPECT_EQ(g->minSites, 4u);
  EXPECT_EQ(g->dpEpsilonPerQuery, 0.1);
  EXPECT_EQ(g->dpBudget, 1.0);
  EXPECT_EQ(g->timeBin, std::optional<double>(14.0));
  EXPECT_STREQ(aggregationModeName(g->aggregation), "secure-dp");
}

// ---- budget ledger ----

class LedgerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("tm_privacy_ledger_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::unique_ptr<PrivacyBudgetLedger> open() {
    auto l = PrivacyBudgetLedger::open(dir_.string());
    EXPECT_TRUE(l.isOk()) << l.status().toString();
    return l.isOk() ? std::move(*l) : nullptr;
  }
  BudgetAccount alice(double budget = 1.0) {
    return BudgetAccount{"LUNG-7", 3, alice_.pub, "alice", budget};
  }

  std::filesystem::path dir_;
  crypto::Identity alice_ = crypto::generateIdentity();
  crypto::Identity bob_ = crypto::generateIdentity();
};

TEST_F(LedgerTest, ChargesAccumulateAndTheOneOverTheLimitIsRefused) {
  auto ledger = open();
  ASSERT_TRUE(ledger);
  for (int i = 1; i <= 3; ++i) {
    auto c = ledger->charge(alice(), 0.3);
    ASSERT_TRUE(c.isOk()) << c.status().toString();
    EXPECT_NEAR(c->spent, 0.3 * i, 1e-12);
    EXPECT_NEAR(c->remaining, 1.0 - 0.3 * i, 1e-12);
  }
  auto refused = ledger->charge(alice(), 0.2);
  ASSERT_FALSE(refused.isOk());
  EXPECT_EQ(refused.status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(refused.status().message(),
            "privacy budget of LUNG-7 for coordinator 'alice' exhausted: spent 0.9 of 1.0 (the "
            "dp_budget of v3; what was spent under earlier versions counts), this query needs "
            "0.2");
  EXPECT_NEAR(ledger->spent(alice()).value(), 0.9, 1e-12);  // a refusal spends nothing
  // Exactly reaching the budget is allowed; anything after it is not.
  auto last = ledger->charge(alice(), 0.1);
  ASSERT_TRUE(last.isOk()) << last.status().toString();
  EXPECT_EQ(last->spent, 1.0);
  EXPECT_EQ(last->remaining, 0.0);
  EXPECT_EQ(ledger->charge(alice(), kMinEpsilonCharge).status().code(),
            StatusCode::kResourceExhausted);
}

TEST_F(LedgerTest, TenTenthsFitExactlyInOne) {
  // 0.1 + ... + 0.1 in doubles is 0.9999999999999999; the ledger counts in 1e-9 units.
  auto ledger = open();
  ASSERT_TRUE(ledger);
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(ledger->charge(alice(), 0.1).isOk()) << i;
  EXPECT_EQ(ledger->spent(alice()).value(), 1.0);
  EXPECT_FALSE(ledger->charge(alice(), 0.1).isOk());
}

TEST_F(LedgerTest, AccountsAreSeparatePerStudyAndCoordinator) {
  auto ledger = open();
  ASSERT_TRUE(ledger);
  ASSERT_TRUE(ledger->charge(alice(), 1.0).isOk());
  BudgetAccount bob = alice();
  bob.coordinator = bob_.pub;
  bob.coordinatorName = "bob";
  BudgetAccount other = alice();
  other.study = "LUNG-8";
  for (const BudgetAccount& a : {bob, other}) {
    auto c = ledger->charge(a, 0.5);
    ASSERT_TRUE(c.isOk()) << a.study << " v" << a.protocolVersion << ": " << c.status().toString();
    EXPECT_EQ(c->spent, 0.5);
  }
  EXPECT_EQ(ledger->spent(alice()).value(), 1.0);
  EXPECT_EQ(ledger->spent(bob).value(), 0.5);
  // The name is only for messages: the account is the key.
  BudgetAccount renamed = alice();
  renamed.coordinatorName = "alice-2";
  EXPECT_EQ(ledger->spent(renamed).value(), 1.0);
}

TEST_F(LedgerTest, AnAmendmentDoesNotResetTheBudget) {
  // The attack of issue #12: spend v3's budget, have v4 approved with the same dp_budget, and
  // spend it again. The account is the study's and the coordinator's: v4 is refused.
  auto ledger = open();
  ASSERT_TRUE(ledger);
  ASSERT_TRUE(ledger->charge(alice(), 1.0).isOk());
  BudgetAccount amended = alice();
  amended.protocolVersion = 4;
  auto refused = ledger->charge(amended, 0.5);
  ASSERT_FALSE(refused.isOk());
  EXPECT_EQ(refused.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(refused.status().message().find("spent 1.0 of 1.0 (the dp_budget of v4"),
            std::string::npos)
      << refused.status().message();
  // A board that raises the budget in the amendment allows what it adds, no more.
  amended.budget = 1.5;
  auto c = ledger->charge(amended, 0.5);
  ASSERT_TRUE(c.isOk()) << c.status().toString();
  EXPECT_EQ(c->spent, 1.5);
  EXPECT_EQ(c->remaining, 0.0);
  EXPECT_EQ(ledger->spent(alice()).value(), 1.5);
  EXPECT_FALSE(ledger->charge(amended, 0.1).isOk());
}

TEST_F(LedgerTest, PerVersionRecordsOfAnOlderLedgerAddUp) {
  // A ledger written when each protocol version had its own account: the study's account
  // starts from their sum (alice: v1 0.4 + v2 0.3), not from zero.
  {
    rocksdb::DBOptions options;
    options.create_if_missing = true;
    options.create_missing_column_families = true;
    std::vector<rocksdb::ColumnFamilyDescriptor> families = {
        {rocksdb::kDefaultColumnFamilyName, {}}, {"privacy_budget", {}}};
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(options, dir_.string(), families, &handles, &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    auto put = [&](const std::string& study, uint32_t version, const crypto::PublicKey& who,
                   double epsilon) {
      detail::Writer key;
      key.str(study);
      key.u32(version);
      key.fixed(who.bytes());
      detail::Writer value;
      value.u64(static_cast<uint64_t>(std::llround(epsilon * 1e9)));
      ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), handles[1], key.take(), value.take()).ok());
    };
    put("LUNG-7", 1, alice_.pub, 0.4);
    put("LUNG-7", 2, alice_.pub, 0.3);
    put("LUNG-7", 1, bob_.pub, 0.9);   // another coordinator
    put("LUNG-70", 1, alice_.pub, 5);  // another study whose name starts alike
    for (auto* h : handles) ASSERT_TRUE(db->DestroyColumnFamilyHandle(h).ok());
  }
  auto ledger = open();
  ASSERT_TRUE(ledger);
  EXPECT_NEAR(ledger->spent(alice()).value(), 0.7, 1e-12);
  auto c = ledger->charge(alice(), 0.3);
  ASSERT_TRUE(c.isOk()) << c.status().toString();
  EXPECT_EQ(c->spent, 1.0);
  EXPECT_FALSE(ledger->charge(alice(), 0.1).isOk());
  BudgetAccount bob = alice();
  bob.coordinator = bob_.pub;
  EXPECT_NEAR(ledger->spent(bob).value(), 0.9, 1e-12);
}

TEST_F(LedgerTest, SurvivesReopen) {
  {
    auto ledger = open();
    ASSERT_TRUE(ledger);
    ASSERT_TRUE(ledger->charge(alice(), 0.75).isOk());
  }
  auto ledger = open();
  ASSERT_TRUE(ledger);
  EXPECT_EQ(ledger->spent(alice()).value(), 0.75);
  auto refused = ledger->charge(alice(), 0.5);
  ASSERT_FALSE(refused.isOk());
  EXPECT_NE(refused.status().message().find("spent 0.75 of 1.0 (the dp_budget of v3"),
            std::string::npos)
      << refused.status().message();
  // A second open of the same ledger (another process, or a second node) is refused.
  auto second = PrivacyBudgetLedger::open(dir_.string());
  ASSERT_FALSE(second.isOk());
  EXPECT_EQ(second.status().code(), StatusCode::kIOError);
}

TEST_F(LedgerTest, ConcurrentChargesNeverOverspend) {
  auto ledger = open();
  ASSERT_TRUE(ledger);
  std::atomic<int> granted{0}, refused{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 25; ++i) {
        auto c = ledger->charge(alice(0.6), 0.01);
        (c.isOk() ? granted : refused)++;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(granted.load(), 60);
  EXPECT_EQ(refused.load(), 40);
  EXPECT_NEAR(ledger->spent(alice()).value(), 0.6, 1e-12);
}

TEST_F(LedgerTest, RefusesBadAmounts) {
  auto ledger = open();
  ASSERT_TRUE(ledger);
  for (double eps : {0.0, -0.1, std::nan(""), 1e-12, 2e6}) {
    auto c = ledger->charge(alice(), eps);
    ASSERT_FALSE(c.isOk()) << eps;
    EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(c.status().message().find("a query's epsilon must be between 1e-9 and 1e6"),
              std::string::npos)
        << c.status().message();
  }
  auto noBudget = ledger->charge(alice(0.0), 0.1);
  ASSERT_FALSE(noBudget.isOk());
  EXPECT_NE(noBudget.status().message().find("budget 0.0 must be a number above 0"),
            std::string::npos)
      << noBudget.status().message();
  EXPECT_EQ(ledger->spent(alice()).value(), 0.0);
}

}  // namespace
}  // namespace trialmesh::ethics
