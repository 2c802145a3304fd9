// Ethics approvals and the registry that enforces them on every query (issue #4 §1, §3).
//
// Model. A lead ethics committee signs an Approval for a study (one protocol version). Each
// site decides by SitePolicy how it recognises approvals: a standing list of committee keys it
// trusts, or a per-approval Recognition statement signed by the site's own committee. A newer
// protocol version of the same study supersedes older ones. The lead committee may suspend,
// reinstate or revoke an approval version by signed Statements. docs/ethics.md describes the
// TOML form, the canonical byte forms that are hashed and signed, and who may do what.
//
// Canonical bytes are this module's own documented binary layout (big-endian, lists sorted and
// de-duplicated); Cap'n Proto carries them on the wire later, but signatures and ids are
// always over these bytes, so the wire format can change without invalidating signatures.
//
// Errors come back as Status/Result. A refused query is PermissionDenied (ResourceExhausted for
// an exhausted budget) whose message is meant for the coordinator, e.g.
// "approval LUNG-7 v3 expired on 2026-10-01".
// Thread-safety: free functions are pure; ApprovalRegistry and ApprovalStore are internally
// synchronised.
#pragma once

#include <compare>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "crypto/identity.h"
#include "ethics/merkle.h"

namespace trialmesh::ethics {

// A calendar date (UTC). Validity is [validFrom, validUntil): the approval expires ON validUntil.
struct Date {
  int32_t year = 1970;
  uint8_t month = 1;
  uint8_t day = 1;
  friend auto operator<=>(const Date&, const Date&) = default;
  friend bool operator==(const Date&, const Date&) = default;
  std::string toString() const;  // "2026-10-01"
};
// Parses "YYYY-MM-DD" (a real calendar date). InvalidArgument otherwise.
Result<Date> parseDate(std::string_view text);
// The UTC date of a Unix time in milliseconds.
Date dateFromUnixMs(int64_t ms);

// Analyses an approval may list. Disclosive ones reveal single records' values and must be
// listed in `disclosive_analyses`, never in `analyses`.
inline constexpr std::string_view kKnownAnalyses[] = {"count", "sum",   "mean",    "var", "sd",
                                                      "hist",  "km",    "min",     "max", "lm",
                                                      "glm",   "coxph", "quantile"};
inline constexpr std::string_view kDisclosiveAnalyses[] = {"min", "max"};
bool isDisclosiveAnalysis(std::string_view analysis);

// How the sites' answers are combined (docs/privacy.md). Frozen: written into canonical bytes.
enum class AggregationMode : uint8_t {
  kPlain = 0,     // the coordinator sees each site's partial aggregate
  kSecure = 1,    // pairwise-masked secure aggregation: only the sum is visible (default)
  kSecureDp = 2,  // secure aggregation plus discrete Laplace noise drawn in shares by the sites
};
// "plain", "secure", "secure-dp" (the TOML spelling).
const char* aggregationModeName(AggregationMode mode);
inline constexpr uint32_t kDefaultMinSites = 3;

struct Committee {
  std::string name;
  crypto::PublicKey key{std::array<uint8_t, crypto::kPublicKeyBytes>{}};
};

struct Approval {
  std::string study;             // e.g. "LUNG-7": letters, digits, '-', '_', '.'
  uint32_t protocolVersion = 0;  // >= 1
  Committee leadCommittee;
  std::vector<std::string> sites;               // member names of participating sites
  std::vector<crypto::PublicKey> coordinators;  // who may send queries
  Hash dictionaryHash{};
  std::vector<std::string> variables;
  std::vector<std::string> analyses;            // non-disclosive, from kKnownAnalyses
  std::vector<std::string> disclosiveAnalyses;  // from kDisclosiveAnalyses
  uint32_t minCellSize = 0;                     // >= 1
  Date validFrom;
  Date validUntil;                      // exclusive
  std::optional<uint64_t> queryBudget;  // allowed queries per site for this version
  // Aggregation policy (issue #5). Defaults are what an approval without these keys means.
  AggregationMode aggregation = AggregationMode::kSecure;
  uint32_t minSites = kDefaultMinSites;  // >= 2: fewer participating sites are refused
  double dpEpsilonPerQuery = 0;          // kSecureDp only: > 0, ε spent by each query
  double dpBudget = 0;                   // kSecureDp only: total ε per coordinator, >= per query
  std::optional<double> timeBin;         // > 0: bin width of survival times (km), any mode
  // Issue #11: a site with fewer complete-case rows takes no part in a model fit (it refuses the
  // rounds and is left out; docs/ethics.md). 0 = no per-site minimum.
  uint32_t modelMinSiteRows = 0;
  // Issue #15 item 3: the shortest time between two evaluations of the same surveillance series
  // (a count grouped by day/week/month of a date, what `surveil(...)` and standing queries run)
  // by the same coordinator; a site refuses, audited, an evaluation that comes sooner.
  // 0 = no bound (the behaviour before this field existed).
  uint64_t surveillanceMinIntervalMs = 0;

  // "LUNG-7 v3", used in every message.
  std::string label() const { return study + " v" + std::to_string(protocolVersion); }
};

// Parses approval TOML (format in docs/ethics.md). `sourceName` (a file name) starts every
// error, which names the line and key: "lung7.toml:7: key 'min_cell_size': must be at least 1,
// got 0". Lists are sorted and de-duplicated.
Result<Approval> parseApprovalToml(std::string_view text, std::string_view sourceName);
// TOML that parseApprovalToml reads back to an equal Approval.
std::string approvalToToml(const Approval& approval);

// The canonical bytes (docs/ethics.md "Approval canonical form") and the approval id, their
// SHA-256. REQUIRES: lists sorted and unique (as parseApprovalToml leaves them); canonicalise()
// makes them so. Format version 1 when the aggregation policy is the default (secure, 3 sites,
// no time bin) — the bytes every approval signed before issue #5 has —, version 4 when
// surveillance_min_interval_ms is set, version 3 when model_min_site_rows is set, and version 2
// otherwise.
void canonicalise(Approval& approval);
std::string approvalBytes(const Approval& approval);
Hash approvalId(const Approval& approval);

struct SignedApproval {
  Approval approval;
  crypto::Signature signature{};  // by approval.leadCommittee.key
};
// Signs over "trialmesh/approval/v1\0" || approvalBytes. REQUIRES: committee.pub is the
// approval's lead committee key (InvalidArgument otherwise).
Result<SignedApproval> signApproval(Approval approval, const crypto::Identity& committee);
// PermissionDenied unless the signature verifies with the lead committee key.
[[nodiscard]] Status verifyApproval(const SignedApproval& signedApproval);
std::string encodeSignedApproval(const SignedApproval& sa);
Result<SignedApproval> decodeSignedApproval(std::span<const uint8_t> bytes);

// Frozen: written into signed statements.
enum class StatementKind : uint8_t {
  kRecognition = 1,    // a site's committee recognises an approval (signed by that committee)
  kSuspension = 2,     // signed by the lead committee
  kReinstatement = 3,  // lifts a suspension; signed by the lead committee
  kRevocation = 4,     // final; signed by the lead committee
};
const char* statementKindName(StatementKind kind);

struct Statement {
  StatementKind kind = StatementKind::kRecognition;
  std::string study;
  uint32_t protocolVersion = 0;
  Hash approvalId{};
  std::string site;    // recognition: the recognising site's member name; else empty
  Date effective;      // from this date on
  std::string reason;  // free text shown to coordinators
  crypto::PublicKey signer{std::array<uint8_t, crypto::kPublicKeyBytes>{}};
  // When the signer issued it (Unix milliseconds, the signer's clock): orders statements that
  // take effect on the same day (statementOrder). Format version 2; a version 1 statement,
  // signed before this field existed, has none.
  std::optional<int64_t> issuedAtMs;
};
// The total order in which suspensions and reinstatements apply: effective date, then issue
// time (a version 1 statement, which has none, before any version 2 one of the same day), then
// kind (a reinstatement before a suspension, so an unordered same-day pair leaves the approval
// suspended: the fail-safe reading), then the statement bytes. It depends only on the
// statements themselves, never on the order a site received or stored them, so every restart
// and every replica decides the same.
bool statementOrder(const Statement& x, const Statement& y);
struct SignedStatement {
  Statement statement;
  crypto::Signature signature{};
};
// Format version 2 when issuedAtMs is set, version 1 (the bytes signed before it existed)
// otherwise; decodeSignedStatement reads both.
std::string statementBytes(const Statement& statement);
// Sets statement.signer to the identity's key and, when unset, issuedAtMs to the current time,
// and signs over "trialmesh/ethics-statement/v1\0" || statementBytes.
SignedStatement signStatement(Statement statement, const crypto::Identity& signer);
[[nodiscard]] Status verifyStatement(const SignedStatement& ss);
std::string encodeSignedStatement(const SignedStatement& ss);
Result<SignedStatement> decodeSignedStatement(std::span<const uint8_t> bytes);

// How this site recognises approvals.
struct SitePolicy {
  enum class Mode { kStandingList, kCountersignature };
  std::string site;  // this site's member name, as listed in approvals' `sites`
  Mode mode = Mode::kStandingList;
  std::vector<crypto::PublicKey> recognisedCommittees;  // kStandingList
  std::optional<crypto::PublicKey> siteCommittee;       // kCountersignature
};

// What a query is about to use.
struct QueryUse {
  std::string site;
  crypto::PublicKey coordinator{std::array<uint8_t, crypto::kPublicKeyBytes>{}};
  std::string study;
  Hash dictionaryHash{};
  std::vector<std::string> variables;
  std::vector<std::string> analyses;
  Date today;
};

// The approval that allows a query.
struct Grant {
  std::string study;
  uint32_t protocolVersion = 0;
  Hash approvalId{};
  uint32_t minCellSize = 0;            // released cells below this must be suppressed
  std::optional<uint64_t> budgetLeft;  // after this query
  // The approval's aggregation policy, for the caller to enforce (see Approval).
  AggregationMode aggregation = AggregationMode::kSecure;
  uint32_t minSites = kDefaultMinSites;
  double dpEpsilonPerQuery = 0;
  double dpBudget = 0;
  std::optional<double> timeBin;
  uint32_t modelMinSiteRows = 0;           // 0 = none
  uint64_t surveillanceMinIntervalMs = 0;  // 0 = none
};

// How this site stands on one stored approval on a given day (`trialmesh ethics list`), decided
// as check() decides: revoked (a revocation in effect) before recognition, then recognition,
// then the last suspension / reinstatement in effect (statementOrder).
struct ApprovalStanding {
  SignedApproval approval;
  // "revoked", "not recognised" (standing-list site; the lead committee is not on its list),
  // "awaiting recognition" (countersignature site; no recognition by its committee yet),
  // "suspended", "not yet valid", "expired" or "active".
  std::string state;
  // Who recognised it here: the site committee's key (countersignature) or the lead committee's
  // key (standing list); nullopt when not recognised.
  std::optional<crypto::PublicKey> recognisedBy;
  std::vector<Statement> statements;  // every stored statement about it, in statementOrder
};

// In-memory state built from signed approvals and statements. Every add verifies signatures.
class ApprovalRegistry {
 public:
  explicit ApprovalRegistry(SitePolicy policy) : policy_(std::move(policy)) {}

  // Verifies and stores an approval. PermissionDenied for a bad signature; AlreadyExists if
  // another approval with the same study and version but different content is stored (the same
  // one again is OK).
  Status addApproval(const SignedApproval& sa);
  // Verifies and stores a statement. PermissionDenied for a bad signature or a suspension/
  // reinstatement/revocation not signed by the approval's lead committee; NotFound if it names
  // an approval that is not stored.
  Status addStatement(const SignedStatement& ss);
  // Whether a submitted approval may be stored: PermissionDenied, with the reason, for one
  // signed by a committee off this site's standing list (countersignature sites store every
  // approval; an unrecognised one never governs, see check()).
  Status admissible(const Approval& approval) const;
  // Restores how many queries have used each approval (from ApprovalStore).
  void setUsage(const Hash& approvalId, uint64_t used);
  uint64_t usage(const Hash& approvalId) const;

  // Decides without consuming budget, under the newest version of the study that this site
  // recognises (a newer unrecognised one does not supersede it until it is recognised).
  Result<Grant> check(const QueryUse& use) const;
  // check(), then `precondition` on the grant when one is given (e.g. the node's aggregation
  // mode and quorum rules), and only when both allow, counts one query against the budget;
  // atomically, and with one check. A refusal by either leaves the budget untouched.
  Result<Grant> authorize(const QueryUse& use,
                          const std::function<Status(const Grant&)>& precondition = {});

  // All stored approvals, newest version first per study.
  std::vector<SignedApproval> approvals() const;
  // approvals() with this site's standing on each on `today`.
  std::vector<ApprovalStanding> standings(const Date& today) const;
  // Per study, the version check() decides under: the newest one this site recognises (studies
  // with none are left out).
  std::vector<SignedApproval> governingApprovals() const;

 private:
  Result<Grant> checkLocked(const QueryUse& use) const;
  Status recognitionRefusal(const Approval& a, const Hash& id) const;

  SitePolicy policy_;
  mutable std::mutex mu_;
  // study -> version -> approval
  std::map<std::string, std::map<uint32_t, SignedApproval>> approvals_;
  std::map<Hash, std::vector<Statement>> statements_;  // by approval id
  std::map<Hash, uint64_t> used_;
};

// Durable storage of approvals, statements and budget usage in a RocksDB database of its own
// (column families "ethics_approvals", "ethics_statements", "ethics_usage"), all writes synced.
class ApprovalStore {
 public:
  static Result<std::unique_ptr<ApprovalStore>> open(const std::string& path);
  ~ApprovalStore();
  ApprovalStore(const ApprovalStore&) = delete;
  ApprovalStore& operator=(const ApprovalStore&) = delete;

  Status putApproval(const SignedApproval& sa);
  Status putStatement(const SignedStatement& ss);
  Status putUsage(const Hash& approvalId, uint64_t used);
  // Rebuilds a registry from everything stored (re-verifying every signature).
  Result<std::unique_ptr<ApprovalRegistry>> load(SitePolicy policy) const;
  // A consistent, openable copy of the store in `targetDir` (must not exist), for backups.
  Status checkpoint(const std::string& targetDir) const;

  class Impl;

 private:
  explicit ApprovalStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace trialmesh::ethics
