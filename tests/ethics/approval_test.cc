// Approvals: TOML parsing with precise errors, canonical bytes, signatures, and every refusal
// of the registry with the reason a coordinator sees.
#include "ethics/approval.h"

#include <gtest/gtest.h>

#include <filesystem>

namespace trialmesh::ethics {
namespace {

class ApprovalTest : public ::testing::Test {
 protected:
  std::string toml(std::string_view extra = "", int version = 3,
                   std::string_view analyses = "[\"count\", \"mean\"]") {
    return "study = \"LUNG-7\"\n"
           "protocol_version = " +
           std::to_string(version) +
           "\n"
           "lead_committee = { name = \"Regional REC North\", key = \"" +
           lead_.pub.toText() +
           "\" }\n"
           "sites = [\"site-a\", \"site-b\"]\n"
           "coordinators = [\"" +
           coordinator_.pub.toText() +
           "\"]\n"
           "dictionary_hash = \"" +
           hashHex(dict_) +
           "\"\n"
           "variables = [\"age\", \"sex\", \"stage\"]\n"
           "analyses = " +
           std::string(analyses) +
           "\n"
           "min_cell_size = 5\n"
           "valid_from = 2026-01-01\n"
           "valid_until = 2026-10-01\n" +
           std::string(extra);
  }
  SignedApproval signedApproval(std::string_view extra = "", int version = 3,
                                std::string_view analyses = "[\"count\", \"mean\"]") {
    auto a = parseApprovalToml(toml(extra, version, analyses), "lung7.toml");
    EXPECT_TRUE(a.isOk()) << a.status().toString();
    return signApproval(*a, lead_).value();
  }
  QueryUse use() {
    QueryUse u;
    u.site = "site-a";
    u.coordinator = coordinator_.pub;
    u.study = "LUNG-7";
    u.dictionaryHash = dict_;
    u.variables = {"age", "stage"};
    u.analyses = {"count"};
    u.today = Date{2026, 5, 1};
    return u;
  }
  SitePolicy standing() {
    SitePolicy p;
    p.site = "site-a";
    p.recognisedCommittees = {lead_.pub};
    return p;
  }
  SignedStatement statement(StatementKind kind, const SignedApproval& sa, Date effective,
                            const crypto::Identity& signer, std::string site = "") {
    Statement s;
    s.kind = kind;
    s.study = sa.approval.study;
    s.protocolVersion = sa.approval.protocolVersion;
    s.approvalId = approvalId(sa.approval);
    s.site = std::move(site);
    s.effective = effective;
    s.reason = kind == StatementKind::kRecognition ? "" : "safety signal";
    return signStatement(s, signer);
  }
  static std::string refusal(const Result<Grant>& r) {
    EXPECT_FALSE(r.isOk());
    return r.isOk() ? "" : r.status().message();
  }

  crypto::Identity lead_ = crypto::generateIdentity();
  crypto::Identity siteCommittee_ = crypto::generateIdentity();
  crypto::Identity coordinator_ = crypto::generateIdentity();
  Hash dict_ = crypto::sha256(std::string_view("dictionary v1"));
};

TEST_F(ApprovalTest, TomlParsesAndRoundTrips) {
  auto a = parseApprovalToml(toml("query_budget = 2\ndisclosive_analyses = [\"max\"]\n"), "x");
  ASSERT_TRUE(a.isOk()) << a.status().toString();
  EXPECT_EQ(a->label(), "LUNG-7 v3");
  EXPECT_EQ(a->leadCommittee.key, lead_.pub);
  EXPECT_EQ(a->variables, (std::vector<std::string>{"age", "sex", "stage"}));
  EXPECT_EQ(a->validUntil, (Date{2026, 10, 1}));
  EXPECT_EQ(a->queryBudget, 2u);
  auto back = parseApprovalToml(approvalToToml(*a), "y");
  ASSERT_TRUE(back.isOk()) << back.status().toString();
  EXPECT_EQ(approvalBytes(*back), approvalBytes(*a));
  // Order in the TOML does not change the id.
  auto reordered = parseApprovalToml(toml("", 3, "[\"mean\", \"count\", \"count\"]"), "z");
  EXPECT_EQ(approvalId(*reordered), approvalId(*parseApprovalToml(toml(), "w")));
}

// A name holding a control character (an escaped "\b" in the TOML) is written back escaped: the
// written TOML is valid and reads back to the same approval (a fuzzer find).
TEST_F(ApprovalTest, ControlCharactersInNamesRoundTrip) {
  auto a = parseApprovalToml(toml(), "x");
  ASSERT_TRUE(a.isOk()) << a.status().toString();
  a->sites = {"site\bone", "site\x7ftwo", "tab\tok"};
  const std::string text = approvalToToml(*a);
  EXPECT_NE(text.find("site\\u0008one"), std::string::npos) << text;
  auto back = parseApprovalToml(text, "y");
  ASSERT_TRUE(back.isOk()) << back.status().toString() << "\n" << text;
  EXPECT_EQ(approvalBytes(*back), approvalBytes(*a));
  EXPECT_EQ(approvalToToml(*back), text);
}

TEST_F(ApprovalTest, TomlErrorsNameFileLineAndKey) {
  auto expectError = [&](const std::string& text, const std::string& fragment) {
    auto a = parseApprovalToml(text, "lung7.toml");
    ASSERT_FALSE(a.isOk()) << "accepted: " << fragment;
    EXPECT_NE(a.status().message().find(fragment), std::string::npos) << a.status().message();
  };
  std::string t = toml();
  expectError(std::string(t).replace(t.find("min_cell_size = 5"), 17, "min_cell_size = 0"),
              "lung7.toml:9: key 'min_cell_size': must be between 1 and");
  expectError(toml("", 3, "[\"count\", \"max\"]"),
              "'max' is disclosive; list it in disclosive_analyses");
  expectError(toml("", 3, "[\"count\", \"median\"]"), "unknown analysis 'median'");
  expectError(toml("colour = 1\n"), "key 'colour': unknown key");
  expectError(
      std::string(t).replace(t.find("valid_until = 2026-10-01"), 24, "valid_until = 2025-10-01"),
      "key 'valid_until': 2025-10-01 must be after valid_from 2026-01-01");
  expectError(std::string(t).replace(t.find("tmpk1"), 6, "tmpk2x"),
              "lung7.toml:3: key 'lead_committee.key'");
  expectError("study = \n", "lung7.toml:1:");
  expectError(std::string(t).replace(t.find("dictionary_hash"), 15, "dictionary_hush"),
              "key 'dictionary_hush': unknown key");
}

TEST_F(ApprovalTest, SignedApprovalRoundTripsAndForgeryIsRefused) {
  SignedApproval sa = signedApproval();
  EXPECT_TRUE(verifyApproval(sa).isOk());
  const std::string wire = encodeSignedApproval(sa);
  auto back = decodeSignedApproval({reinterpret_cast<const uint8_t*>(wire.data()), wire.size()});
  ASSERT_TRUE(back.isOk()) << back.status().toString();
  EXPECT_TRUE(verifyApproval(*back).isOk());
  // Widening the scope after signing breaks the signature.
  SignedApproval widened = sa;
  widened.approval.variables.push_back("biomarker");
  canonicalise(widened.approval);
  EXPECT_EQ(verifyApproval(widened).code(), StatusCode::kPermissionDenied);
  ApprovalRegistry registry(standing());
  Status s = registry.addApproval(widened);
  EXPECT_NE(s.message().find("signature does not verify"), std::string::npos) << s.message();
  EXPECT_FALSE(registry.check(use()).isOk());
  // A non-lead key cannot sign it.
  auto a = parseApprovalToml(toml(), "x").value();
  EXPECT_EQ(signApproval(a, coordinator_).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(ApprovalTest, HappyPathIsAllowedWithMinCellSize) {
  ApprovalRegistry registry(standing());
  const SignedApproval sa = signedApproval();
  ASSERT_TRUE(registry.addApproval(sa).isOk());
  auto g = registry.authorize(use());
  ASSERT_TRUE(g.isOk()) << g.status().toString();
  EXPECT_EQ(g->protocolVersion, 3u);
  EXPECT_EQ(g->minCellSize, 5u);
  EXPECT_EQ(g->approvalId, approvalId(sa.approval));
}

TEST_F(ApprovalTest, EachOutOfScopeUseIsRefusedWithItsReason) {
  ApprovalRegistry registry(standing());
  ASSERT_TRUE(registry.addApproval(signedApproval()).isOk());
  QueryUse u = use();
  u.today = Date{2026, 10, 1};
  EXPECT_EQ(refusal(registry.check(u)), "approval LUNG-7 v3 expired on 2026-10-01");
  u = use();
  u.today = Date{2025, 12, 31};
  EXPECT_EQ(refusal(registry.check(u)), "approval LUNG-7 v3 is not valid before 2026-01-01");
  u = use();
  u.site = "site-c";
  EXPECT_EQ(refusal(registry.check(u)), "approval LUNG-7 v3 does not include site 'site-c'");
  u = use();
  u.coordinator = lead_.pub;
  EXPECT_EQ(refusal(registry.check(u)),
            "coordinator " + lead_.pub.toText() + " is not authorised by approval LUNG-7 v3");
  u = use();
  u.variables.push_back("biomarker");
  EXPECT_EQ(refusal(registry.check(u)), "approval LUNG-7 v3 does not cover variable 'biomarker'");
  u = use();
  u.analyses = {"km"};
  EXPECT_EQ(refusal(registry.check(u)), "approval LUNG-7 v3 does not allow analysis 'km'");
  u = use();
  u.analyses = {"count", "max"};
  EXPECT_EQ(refusal(registry.check(u)),
            "approval LUNG-7 v3 does not allow disclosive analysis 'max'");
  u = use();
  u.dictionaryHash[0] ^= 1;
  EXPECT_NE(refusal(registry.check(u)).find("covers data dictionary"), std::string::npos);
  u = use();
  u.study = "HEART-2";
  EXPECT_EQ(refusal(registry.check(u)),
            "no approval recognised by this site's committee for study HEART-2");
  EXPECT_EQ(registry.check(u).status().code(), StatusCode::kPermissionDenied);
}

TEST_F(ApprovalTest, DisclosiveAnalysisAllowedOnlyWhenListed) {
  ApprovalRegistry registry(standing());
  ASSERT_TRUE(registry.addApproval(signedApproval("disclosive_analyses = [\"max\"]\n")).isOk());
  QueryUse u = use();
  u.analyses = {"max"};
  EXPECT_TRUE(registry.check(u).isOk());
  u.analyses = {"min"};
  EXPECT_EQ(refusal(registry.check(u)),
            "approval LUNG-7 v3 does not allow disclosive analysis 'min'");
}

TEST_F(ApprovalTest, UnrecognisedCommitteeIsRefused) {
  SitePolicy p = standing();
  p.recognisedCommittees = {siteCommittee_.pub};
  ApprovalRegistry registry(p);
  ASSERT_TRUE(registry.addApproval(signedApproval()).isOk());
  const std::string r = refusal(registry.check(use()));
  EXPECT_EQ(r.rfind("no approval recognised by this site's committee for study LUNG-7", 0), 0u)
      << r;
  EXPECT_NE(r.find("'Regional REC North'"), std::string::npos) << r;
}

TEST_F(ApprovalTest, CountersignaturePolicyNeedsTheSiteCommitteesRecognition) {
  SitePolicy p;
  p.site = "site-a";
  p.mode = SitePolicy::Mode::kCountersignature;
  p.siteCommittee = siteCommittee_.pub;
  ApprovalRegistry registry(p);
  const SignedApproval sa = signedApproval();
  ASSERT_TRUE(registry.addApproval(sa).isOk());
  EXPECT_NE(refusal(registry.check(use())).find("awaits the site committee's recognition"),
            std::string::npos);
  // Someone else's recognition (another site's committee) does not count.
  const crypto::Identity other = crypto::generateIdentity();
  ASSERT_TRUE(
      registry
          .addStatement(statement(StatementKind::kRecognition, sa, {2026, 1, 1}, other, "site-a"))
          .isOk());
  EXPECT_FALSE(registry.check(use()).isOk());
  // Nor does our committee's recognition for another site.
  ASSERT_TRUE(registry
                  .addStatement(statement(StatementKind::kRecognition, sa, {2026, 1, 1},
                                          siteCommittee_, "site-b"))
                  .isOk());
  EXPECT_FALSE(registry.check(use()).isOk());
  ASSERT_TRUE(registry
                  .addStatement(statement(StatementKind::kRecognition, sa, {2026, 1, 1},
                                          siteCommittee_, "site-a"))
                  .isOk());
  EXPECT_TRUE(registry.check(use()).isOk());
  // A forged recognition is refused on receipt.
  SignedStatement forged =
      statement(StatementKind::kRecognition, sa, {2026, 1, 1}, other, "site-a");
  forged.statement.signer = siteCommittee_.pub;
  EXPECT_EQ(registry.addStatement(forged).code(), StatusCode::kPermissionDenied);
}

// standings(): what `trialmesh ethics list` shows per site, decided as check() decides.
TEST_F(ApprovalTest, StandingsFollowStatementsAndRecognition) {
  SitePolicy p;
  p.site = "site-a";
  p.mode = SitePolicy::Mode::kCountersignature;
  p.siteCommittee = siteCommittee_.pub;
  ApprovalRegistry registry(p);
  const SignedApproval sa = signedApproval();
  ASSERT_TRUE(registry.addApproval(sa).isOk());
  auto state = [&](Date day) {
    auto all = registry.standings(day);
    EXPECT_EQ(all.size(), 1u);
    return all.empty() ? ApprovalStanding{} : all[0];
  };
  EXPECT_EQ(state({2026, 5, 1}).state, "awaiting recognition");
  EXPECT_FALSE(state({2026, 5, 1}).recognisedBy.has_value());
  ASSERT_TRUE(registry
                  .addStatement(statement(StatementKind::kRecognition, sa, {2026, 1, 1},
                                          siteCommittee_, "site-a"))
                  .isOk());
  EXPECT_EQ(state({2026, 5, 1}).state, "active");
  EXPECT_EQ(state({2026, 5, 1}).recognisedBy, siteCommittee_.pub);
  EXPECT_EQ(state({2025, 12, 1}).state, "not yet valid");
  EXPECT_EQ(state({2026, 10, 1}).state, "expired");
  ASSERT_TRUE(
      registry.addStatement(statement(StatementKind::kSuspension, sa, {2026, 4, 1}, lead_)).isOk());
  EXPECT_EQ(state({2026, 3, 31}).state, "active");  // not yet in effect
  EXPECT_EQ(state({2026, 5, 1}).state, "suspended");
  EXPECT_EQ(registry.check(use()).isOk(), false);
  ASSERT_TRUE(
      registry.addStatement(statement(StatementKind::kReinstatement, sa, {2026, 4, 20}, lead_))
          .isOk());
  EXPECT_EQ(state({2026, 5, 1}).state, "active");
  EXPECT_TRUE(registry.check(use()).isOk());
  ASSERT_TRUE(
      registry.addStatement(statement(StatementKind::kRevocation, sa, {2026, 6, 1}, lead_)).isOk());
  const ApprovalStanding revoked = state({2026, 6, 1});
  EXPECT_EQ(revoked.state, "revoked");
  // The history, in the order statements apply.
  ASSERT_EQ(revoked.statements.size(), 4u);
  EXPECT_EQ(revoked.statements[0].kind, StatementKind::kRecognition);
  EXPECT_EQ(revoked.statements[1].kind, StatementKind::kSuspension);
  EXPECT_EQ(revoked.statements[2].kind, StatementKind::kReinstatement);
  EXPECT_EQ(revoked.statements[3].kind, StatementKind::kRevocation);
  EXPECT_EQ(revoked.statements[1].reason, "safety signal");

  // A standing-list site recognises by its list: the lead committee, or nobody.
  ApprovalRegistry listed(standing());
  ASSERT_TRUE(listed.addApproval(sa).isOk());
  EXPECT_EQ(listed.standings({2026, 5, 1})[0].state, "active");
  EXPECT_EQ(listed.standings({2026, 5, 1})[0].recognisedBy, lead_.pub);
  SitePolicy other = standing();
  other.recognisedCommittees = {siteCommittee_.pub};
  other.mode = SitePolicy::Mode::kStandingList;
  ApprovalRegistry unlisted(other);
  // (The node would refuse to store it there, admissible(); the registry itself stores it.)
  ASSERT_TRUE(unlisted.addApproval(sa).isOk());
  EXPECT_EQ(unlisted.standings({2026, 5, 1})[0].state, "not recognised");
}

TEST_F(ApprovalTest, RevokedAndSuspendedApprovalsAreRefused) {
  ApprovalRegistry registry(standing());
  const SignedApproval sa = signedApproval();
  ASSERT_TRUE(registry.addApproval(sa).isOk());
  ASSERT_TRUE(
      registry.addStatement(statement(StatementKind::kSuspension, sa, {2026, 4, 1}, lead_)).isOk());
  EXPECT_EQ(refusal(registry.check(use())),
            "approval LUNG-7 v3 is suspended since 2026-04-01: safety signal");
  ASSERT_TRUE(
      registry.addStatement(statement(StatementKind::kReinstatement, sa, {2026, 4, 20}, lead_))
          .isOk());
  EXPECT_TRUE(registry.check(use()).isOk());
  // Only the lead committee may revoke.
  EXPECT_EQ(
      registry
          .addStatement(statement(StatementKind::kRevocation, sa, {2026, 4, 25}, siteCommittee_))
          .code(),
      StatusCode::kPermissionDenied);
  EXPECT_TRUE(registry.check(use()).isOk());
  ASSERT_TRUE(registry.addStatement(statement(StatementKind::kRevocation, sa, {2026, 9, 12}, lead_))
                  .isOk());
  EXPECT_TRUE(registry.check(use()).isOk());  // not yet effective on 2026-05-01
  QueryUse u = use();
  u.today = Date{2026, 9, 12};
  EXPECT_EQ(refusal(registry.check(u)),
            "approval LUNG-7 v3 was revoked on 2026-09-12: safety signal");
}

TEST_F(ApprovalTest, NewerVersionSupersedesOlder) {
  ApprovalRegistry registry(standing());
  ASSERT_TRUE(registry.addApproval(signedApproval()).isOk());
  // v4 drops 'stage' from the variables.
  std::string v4 = toml("", 4);
  v4.replace(v4.find("\"sex\", \"stage\""), 14, "\"sex\"");
  auto a4 = parseApprovalToml(v4, "v4.toml");
  ASSERT_TRUE(a4.isOk()) << a4.status().toString();
  ASSERT_TRUE(registry.addApproval(signApproval(*a4, lead_).value()).isOk());
  EXPECT_EQ(refusal(registry.check(use())), "approval LUNG-7 v4 does not cover variable 'stage'");
  QueryUse u = use();
  u.variables = {"age"};
  EXPECT_EQ(registry.check(u)->protocolVersion, 4u);
  // The same version with other content is refused.
  EXPECT_EQ(registry.addApproval(signedApproval("query_budget = 9\n", 4)).code(),
            StatusCode::kAlreadyExists);
}

TEST_F(ApprovalTest, UnrecognisedAmendmentDoesNotSupersedeUntilRecognised) {
  SitePolicy p;
  p.site = "site-a";
  p.mode = SitePolicy::Mode::kCountersignature;
  p.siteCommittee = siteCommittee_.pub;
  ApprovalRegistry registry(p);
  const SignedApproval v3 = signedApproval();
  ASSERT_TRUE(registry.addApproval(v3).isOk());
  ASSERT_TRUE(registry
                  .addStatement(statement(StatementKind::kRecognition, v3, {2026, 1, 1},
                                          siteCommittee_, "site-a"))
                  .isOk());
  ASSERT_TRUE(registry.check(use()).isOk());
  // Countersignature sites store every approval, but the newest RECOGNISED one governs.
  const SignedApproval v4 = signedApproval("", 4);
  ASSERT_TRUE(registry.admissible(v4.approval).isOk());
  ASSERT_TRUE(registry.addApproval(v4).isOk());
  auto g = registry.check(use());
  ASSERT_TRUE(g.isOk()) << g.status().toString();
  EXPECT_EQ(g->protocolVersion, 3u);
  ASSERT_EQ(registry.governingApprovals().size(), 1u);
  EXPECT_EQ(registry.governingApprovals()[0].approval.protocolVersion, 3u);
  ASSERT_TRUE(registry
                  .addStatement(statement(StatementKind::kRecognition, v4, {2026, 1, 1},
                                          siteCommittee_, "site-a"))
                  .isOk());
  EXPECT_EQ(registry.check(use())->protocolVersion, 4u);
  EXPECT_EQ(registry.governingApprovals()[0].approval.protocolVersion, 4u);
}

// Issue #12 item 3: an ethics-board member holding some committee key submits a higher version
// signed by a committee the site does not recognise, to halt the study. Queries keep running
// under the recognised version, also after the rogue revokes its own version; a revocation by
// the real lead committee is what refuses them, with its own reason.
TEST_F(ApprovalTest, RogueCommitteesHigherVersionCannotHaltAStudy) {
  const crypto::Identity rogue = crypto::generateIdentity();
  auto rogueApproval = [&](int version) {
    auto a = parseApprovalToml(toml("", version), "rogue.toml");
    EXPECT_TRUE(a.isOk()) << a.status().toString();
    a->leadCommittee = Committee{"Rogue Board", rogue.pub};
    return signApproval(*a, rogue).value();
  };
  SitePolicy countersign;
  countersign.site = "site-a";
  countersign.mode = SitePolicy::Mode::kCountersignature;
  countersign.siteCommittee = siteCommittee_.pub;
  for (const SitePolicy& policy : {standing(), countersign}) {
    SCOPED_TRACE(policy.mode == SitePolicy::Mode::kStandingList ? "standing list"
                                                                : "countersignature");
    ApprovalRegistry registry(policy);
    const SignedApproval v1 = signedApproval("", 1);
    ASSERT_TRUE(registry.addApproval(v1).isOk());
    if (policy.mode == SitePolicy::Mode::kCountersignature) {
      ASSERT_TRUE(registry
                      .addStatement(statement(StatementKind::kRecognition, v1, {2026, 1, 1},
                                              siteCommittee_, "site-a"))
                      .isOk());
    }
    const SignedApproval v2 = rogueApproval(2);
    Status admissible = registry.admissible(v2.approval);
    if (policy.mode == SitePolicy::Mode::kStandingList) {
      // Refused at submission, with the reason.
      EXPECT_EQ(admissible.code(), StatusCode::kPermissionDenied);
      EXPECT_NE(admissible.message().find("'Rogue Board'"), std::string::npos)
          << admissible.message();
      EXPECT_NE(admissible.message().find("which this site does not recognise"), std::string::npos);
    } else {
      EXPECT_TRUE(admissible.isOk()) << admissible.toString();
    }
    // Even if it is in the registry (stored by an earlier build), it never supersedes v1.
    ASSERT_TRUE(registry.addApproval(v2).isOk());
    auto g = registry.check(use());
    ASSERT_TRUE(g.isOk()) << g.status().toString();
    EXPECT_EQ(g->protocolVersion, 1u);
    // The rogue revokes its own version: nothing changes. It cannot revoke v1.
    ASSERT_TRUE(
        registry.addStatement(statement(StatementKind::kRevocation, v2, {2026, 2, 1}, rogue))
            .isOk());
    EXPECT_EQ(registry.check(use())->protocolVersion, 1u);
    EXPECT_EQ(registry.addStatement(statement(StatementKind::kRevocation, v1, {2026, 2, 1}, rogue))
                  .code(),
              StatusCode::kPermissionDenied);
    EXPECT_EQ(registry.check(use())->protocolVersion, 1u);
    // A third, still higher rogue version changes nothing either.
    ASSERT_TRUE(registry.addApproval(rogueApproval(3)).isOk());
    EXPECT_EQ(registry.check(use())->protocolVersion, 1u);
    // The real lead committee's revocation refuses, naming v1, not a supersession.
    ASSERT_TRUE(
        registry.addStatement(statement(StatementKind::kRevocation, v1, {2026, 3, 1}, lead_))
            .isOk());
    EXPECT_EQ(refusal(registry.check(use())),
              "approval LUNG-7 v1 was revoked on 2026-03-01: safety signal");
  }
}

TEST_F(ApprovalTest, BudgetIsCountedAndExhausted) {
  ApprovalRegistry registry(standing());
  const SignedApproval sa = signedApproval("query_budget = 2\n");
  ASSERT_TRUE(registry.addApproval(sa).isOk());
  EXPECT_EQ(registry.authorize(use())->budgetLeft, 1u);
  EXPECT_TRUE(registry.check(use()).isOk());  // check alone does not consume
  EXPECT_EQ(registry.authorize(use())->budgetLeft, 0u);
  auto r = registry.authorize(use());
  EXPECT_EQ(r.status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(refusal(r),
            "approval LUNG-7 v3: its query budget of 2 queries is exhausted at this site");
  EXPECT_EQ(registry.usage(approvalId(sa.approval)), 2u);
}

// The node's round rules run as authorize()'s precondition: a refusal by them is returned as
// is and does not consume the budget; the grant they see is the approval's.
TEST_F(ApprovalTest, RefusedPreconditionDoesNotConsumeTheBudget) {
  ApprovalRegistry registry(standing());
  const SignedApproval sa = signedApproval("query_budget = 1\n");
  ASSERT_TRUE(registry.addApproval(sa).isOk());
  uint32_t seenVersion = 0;
  auto refused = registry.authorize(use(), [&](const Grant& g) {
    seenVersion = g.protocolVersion;
    return Status::failedPrecondition("approval requires secure aggregation");
  });
  ASSERT_FALSE(refused.isOk());
  EXPECT_EQ(refused.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(refused.status().message(), "approval requires secure aggregation");
  EXPECT_EQ(seenVersion, 3u);
  EXPECT_EQ(registry.usage(approvalId(sa.approval)), 0u);
  auto allowed = registry.authorize(use(), [](const Grant&) { return Status::ok(); });
  ASSERT_TRUE(allowed.isOk()) << allowed.status().toString();
  EXPECT_EQ(allowed->budgetLeft, 0u);
  EXPECT_EQ(registry.usage(approvalId(sa.approval)), 1u);
}

TEST_F(ApprovalTest, StoreRestoresApprovalsStatementsAndUsage) {
  const std::string dir = ::testing::TempDir() + "/approval_store";
  std::filesystem::remove_all(dir);
  const SignedApproval sa = signedApproval("query_budget = 3\n");
  {
    auto store = ApprovalStore::open(dir);
    ASSERT_TRUE(store.isOk()) << store.status().toString();
    ASSERT_TRUE((*store)->putApproval(sa).isOk());
    ASSERT_TRUE((*store)
                    ->putStatement(statement(StatementKind::kSuspension, sa, {2026, 6, 1}, lead_))
                    .isOk());
    ASSERT_TRUE((*store)->putUsage(approvalId(sa.approval), 2).isOk());
  }
  auto store = ApprovalStore::open(dir);
  ASSERT_TRUE(store.isOk());
  auto registry = (*store)->load(standing());
  ASSERT_TRUE(registry.isOk()) << registry.status().toString();
  EXPECT_EQ((*registry)->authorize(use())->budgetLeft, 0u);
  QueryUse u = use();
  u.today = Date{2026, 6, 2};
  EXPECT_NE(refusal((*registry)->check(u)).find("is suspended since 2026-06-01"),
            std::string::npos);
  store->reset();
  std::filesystem::remove_all(dir);
}

TEST_F(ApprovalTest, DatesParseStrictly) {
  EXPECT_EQ(parseDate("2028-02-29")->toString(), "2028-02-29");
  EXPECT_FALSE(parseDate("2026-02-29").isOk());
  EXPECT_FALSE(parseDate("2026-13-01").isOk());
  EXPECT_FALSE(parseDate("2026-1-01").isOk());
  EXPECT_EQ(dateFromUnixMs(1'790'000'000'000).toString(), "2026-09-21");
}

}  // namespace
}  // namespace trialmesh::ethics
