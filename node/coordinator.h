// The coordinator side of a federated query: sign the query once per site, ask every site of
// the study in parallel over the secure channel, wait at most until the deadline, merge the
// partial aggregates that came back and finalize them into one table.
//
//   auto r = runFederatedQuery(identity, members, "LUNG-7", "count, mean(bmi) by arm", {});
//   if (r) { print(r->table); for (auto& s : r->sites) print(s.site, outcomeName(s.outcome)); }
//
// A site that is down, slow, refuses, or whose answer does not merge never hangs or fails the
// whole query: it is listed with the reason, and the result is marked partial.
//
// Two ways to run queries:
//  * CoordinatorSession (below) keeps one authenticated connection per site open and reuses it
//    for every query: what an analysis that runs many queries (model fits, secure aggregation
//    rounds, an API server) should use. A query then costs one signature (for all its sites,
//    named in the request's audience), one RPC round trip per site and the scans; connect and
//    handshake are paid once per site per session.
//  * runFederatedQuery is one-shot: it opens a session, runs one query and closes it (the
//    `trialmesh query` CLI). Same results and outcome reporting.
//
// Thread-safety: see CoordinatorSession. runFederatedQuery and the other free functions may be
// called from any thread, concurrently; the free functions other than runFederatedQuery run
// their own KJ event loop on the calling thread, so that thread must not have one.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "crypto/identity.h"
#include "crypto/mask.h"
#include "ethics/approval.h"
#include "ethics/audit_log.h"
#include "ethics/key_rotation.h"
#include "node/config.h"
#include "protocol/freshness.h"
#include "protocol/messages.h"
#include "query/disclosure.h"
#include "query/partial.h"

namespace trialmesh::node {

enum class SiteOutcomeKind { kAnswered, kRefused, kUnreachable, kTimedOut };
const char* outcomeName(SiteOutcomeKind kind);  // "answered", "refused", ...

struct SiteOutcome {
  std::string site;     // member name
  std::string address;  // host:port dialled
  SiteOutcomeKind outcome = SiteOutcomeKind::kUnreachable;
  // Empty when answered; otherwise the reason: the site's own refusal text (e.g.
  // "PermissionDenied: query expired ..."), the connection error, or the deadline.
  std::string reason;
  uint64_t rowsScanned = 0;  // answered only
  double elapsedMs = 0;      // from the start of the query to this site's outcome
};

struct FederatedResult {
  std::string canonicalQuery;
  // How the answers were combined (issue #5; docs/privacy.md): the mode of the study's approval
  // as the sites report it (plain when no site reports one), and that approval's label.
  ethics::AggregationMode aggregation = ethics::AggregationMode::kPlain;
  std::string approval;
  // Secure modes: masking rounds run (a round is re-run without the sites that failed in it),
  // and the sites dropped from the participant list, in the order they failed.
  uint32_t rounds = 0;
  std::vector<std::string> dropped;
  // Disclosure control applied to `table` with the approval's min_cell_size (every mode).
  query::DisclosureReport disclosure;
  // Secure modes: why there is no table although sites were asked, e.g. "only 2 of 5 sites
  // answered; approval LUNG-7 v3 requires at least 3 (min_sites) ...". Empty otherwise.
  std::string refusal;
  std::vector<SiteOutcome> sites;  // every site of the study, in members-file order
  // Merge of every answered site's partial; absent when no site answered.
  std::optional<query::PartialResult> merged;
  // The finalized table of `merged` (bound against the answering sites' dictionary).
  std::optional<query::ResultTable> table;
  size_t answered() const;
  // True when some site of the study did not contribute.
  bool partial() const { return answered() != sites.size(); }
};

struct FederatedQueryOptions {
  // Overall deadline: by then every site has an outcome. Default 5 s.
  std::chrono::milliseconds deadline{5000};
  // Validity of the signed query (expiresAtMs - issuedAtMs). Default: the deadline plus one
  // minute of slack, within a site's default max_query_age_ms of 5 minutes.
  std::optional<std::chrono::milliseconds> validity;
  // Largest message accepted from a site (runFederatedQuery only; a session has its own).
  // Default 64 MiB.
  uint64_t maxMessageBytes = 64ull << 20;
  // Clock for issuedAtMs/expiresAtMs; default the system clock. Not owned.
  const protocol::Clock* clock = nullptr;
  // Test hooks, called per site before signing / after signing; leave empty in production.
  // They let tests send expired, replayed and forged queries through the real client.
  std::function<void(const Member& site, protocol::QueryRequestFields&)> adjustRequest;
  std::function<void(const Member& site, protocol::SignedQueryBytes&)> adjustSigned;
  // Test hook (secure modes): every masked vector the coordinator opens, as received, with the
  // site that sent it. Lets tests check that no vector is a site's partial.
  std::function<void(const std::string& site, std::span<const crypto::MaskWord> words)>
      observeMaskedVector;
  // Secure modes: at most this many masking rounds (the first plus re-runs after dropouts).
  uint32_t maxSecureRounds = 3;
  // Ask only these sites of the study (member names); empty: every site of the study. A model
  // fit (node/model_runner.h) runs all its rounds on one fixed set of sites this way. The
  // result's `sites` then lists only these; secure quorum (min_sites) counts only these.
  std::vector<std::string> onlySites;
};

// The aggregation policy of a study's newest approval, as a site reports it (NodeInfo).
struct StudyPolicy {
  std::string study;
  std::string approval;  // label, e.g. "LUNG-7 v3"
  ethics::AggregationMode aggregation = ethics::AggregationMode::kSecure;
  uint32_t minSites = ethics::kDefaultMinSites;
  uint32_t minCellSize = 0;
  std::optional<double> timeBin;
  double dpEpsilonPerQuery = 0;
  bool operator==(const StudyPolicy&) const = default;
};

struct SiteInfo {
  std::string name;
  std::string federation;
  uint32_t protocolVersion = 0;
  std::string softwareVersion;
  std::vector<std::string> studies;
  std::vector<StudyPolicy> policies;
  std::map<std::string, uint64_t> datasetVersions;  // study -> dataset version (data refresh)
  // The key the site authenticated with: its current key, or during a key rotation its
  // previous one (docs/keys.md). Secure rounds address and open its share with this key.
  crypto::PublicKey key{std::array<uint8_t, crypto::kPublicKeyBytes>{}};
};

struct CoordinatorSessionOptions {
  // Largest message accepted from a site. Default 64 MiB.
  uint64_t maxMessageBytes = 64ull << 20;
  // Bound on one connection attempt (TCP connect + handshake), independent of any query's
  // deadline, so a site that accepts TCP but never completes the handshake (a hung process)
  // does not hold the attempt forever. Default 10 s.
  std::chrono::milliseconds connectTimeout{10000};
};

// A coordinator's long-lived connection set: one authenticated secure channel (SecureStream +
// Cap'n Proto RPC) per site, opened on first use and kept for later queries.
//
//   CoordinatorSession session(identity, members);
//   for (int i = 0; i < 20; ++i) {
//     auto r = session.query("LUNG-7", "count, mean(bmi) by arm");  // reuses the connections
//   }
//
// Connections: a query connects (concurrently, one TCP connect + handshake per site) to every
// site of the study without an open connection, and reuses the open ones. A connection the
// site ends (restart, crash, network) is dropped as soon as the session notices; the next query
// reconnects. A query whose RPC fails because a reused connection turned out to be dead retries
// once on a fresh connection with a freshly signed query (new nonce), so a site restarted
// between two queries answers the second one; a site that is down is reported exactly as by
// runFederatedQuery ("cannot connect to ..."). Failures are per site, never per session.
//
// Dictionaries: the session caches every data dictionary it has verified, by hash, and tells the
// sites which hash it holds (Site.runQuery knownDictionaryHash), so the TOML travels and is
// parsed once per session rather than with every answer.
//
// Thread-safety: thread-safe. The session owns one event-loop thread that does all network I/O
// and handshakes; query(), siteInfo() and connect() may be called from any number of threads at
// once and run concurrently (queries share the per-site connections; the site runs them in
// parallel up to its limits.max_concurrent_queries). Signing, merging and finalizing run on the
// calling thread. Do not call from inside a KJ event loop callback of this session.
// Ownership: `identity` is not copied and must outlive the session; `members` is copied.
// Errors: as runFederatedQuery; site failures are in SiteOutcome.
class CoordinatorSession {
 public:
  CoordinatorSession(const crypto::Identity& identity, Members members,
                     CoordinatorSessionOptions options = {});
  // close().
  ~CoordinatorSession();
  CoordinatorSession(const CoordinatorSession&) = delete;
  CoordinatorSession& operator=(const CoordinatorSession&) = delete;

  // Runs `queryText` (docs/query-language.md) on every site of `study` (see runFederatedQuery).
  // options.maxMessageBytes is ignored (the session's applies).
  Result<FederatedResult> query(const std::string& study, const std::string& queryText,
                                const FederatedQueryOptions& options = {});

  // Opens connections to every site of `study` that has none, concurrently, waiting at most
  // `deadline`; returns one outcome per site (kAnswered = connected). Optional: query() connects
  // on demand; this moves the handshakes out of the first query. Errors: NotFound (no site).
  Result<std::vector<SiteOutcome>> connect(const std::string& study,
                                           std::chrono::milliseconds deadline);

  // Site.info over the session's connection to `siteName`. Errors as fetchSiteInfo.
  Result<SiteInfo> siteInfo(const std::string& siteName,
                            std::chrono::milliseconds deadline = std::chrono::seconds(2));

  // Connections currently open, and handshakes completed since the session started (a test and
  // benchmark aid: a reused connection does not add one).
  size_t openConnections() const;
  uint64_t handshakesCompleted() const;

  // Sends the close frame on every connection (bounded wait), cancels queries still running
  // (their sites are reported as unreachable: "session closed") and joins the event-loop
  // thread. Idempotent; afterwards query() reports every site as unreachable.
  void close();

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// Runs `queryText` (the query language, docs/query-language.md) on every site of `study`, over
// a session opened for this one query and closed after it.
// Errors (Status, nothing sent): InvalidArgument for a query that does not parse, NotFound
// when the members file has no site for the study. Everything that goes wrong at a site is
// in its SiteOutcome instead.
Result<FederatedResult> runFederatedQuery(const crypto::Identity& identity, const Members& members,
                                          const std::string& study, const std::string& queryText,
                                          const FederatedQueryOptions& options = {});

// Connects to site `siteName` and calls Site.info (a readiness and configuration check).
// Errors: NotFound (no such site in `members`), Unavailable (cannot connect, handshake refused,
// deadline passed) with the reason. Same event-loop requirement as runFederatedQuery.
Result<SiteInfo> fetchSiteInfo(const crypto::Identity& identity, const Members& members,
                               const std::string& siteName,
                               std::chrono::milliseconds deadline = std::chrono::seconds(2));

// ---- Ethics client (issue #4; docs/ethics.md) ----
// Each call connects to site `siteName` with `identity`, makes one or a few Site ethics calls
// and closes; same event-loop requirement as runFederatedQuery. The site allows them only to
// ethics-board members and itself. Errors: NotFound (no such site), Unavailable (connection,
// deadline), or the site's refusal as sent (e.g. PermissionDenied "auditEntries is for
// ethics-board members and the site itself; 'coordinator' has role coordinator").

// Sends canonical signed approval bytes (ethics::encodeSignedApproval); returns the receipt.
Result<std::string> submitApprovalToSite(
    const crypto::Identity& identity, const Members& members, const std::string& siteName,
    const std::string& bytes, std::chrono::milliseconds deadline = std::chrono::seconds(10));
// Sends canonical signed statement bytes (ethics::encodeSignedStatement); returns the receipt.
Result<std::string> submitStatementToSite(
    const crypto::Identity& identity, const Members& members, const std::string& siteName,
    const std::string& bytes, std::chrono::milliseconds deadline = std::chrono::seconds(10));
// The site's stored signed approvals (canonical bytes each).
Result<std::vector<std::string>> listSiteApprovals(
    const crypto::Identity& identity, const Members& members, const std::string& siteName,
    std::chrono::milliseconds deadline = std::chrono::seconds(10));
// The same approvals (decoded) with the site's standing on each today: state, who recognised it
// there, and the statements it holds (ethics::ApprovalRegistry::standings). A site too old to
// report standings gives an empty state. Errors as above, or Corruption for a malformed answer.
Result<std::vector<ethics::ApprovalStanding>> listSiteApprovalStandings(
    const crypto::Identity& identity, const Members& members, const std::string& siteName,
    std::chrono::milliseconds deadline = std::chrono::seconds(10));

// Delivers a signed surveillance alert (node/alert.h) to the site; returns its receipt. The site
// accepts it only from a coordinator of the study's approval (see Site.deliverAlert).
Result<std::string> deliverAlertToSite(
    const crypto::Identity& identity, const Members& members, const std::string& siteName,
    const std::string& alertBytes, const crypto::Signature& signature,
    std::chrono::milliseconds deadline = std::chrono::seconds(10));

struct AuditDownload {
  ethics::SignedTreeHead head;
  std::vector<ethics::StoredEntry> entries;  // [begin, head.treeSize)
};
// Fetches a signed tree head, then every entry from `begin` up to its size (paged). Does not
// verify anything: pass the result to ethics::verifyLog.
Result<AuditDownload> downloadAuditLog(
    const crypto::Identity& identity, const Members& members, const std::string& siteName,
    uint64_t begin = 0, std::chrono::milliseconds deadline = std::chrono::seconds(60));

struct AuditHeadAndProof {
  ethics::SignedTreeHead head;
  std::vector<ethics::Hash> consistency;  // from `fromSize` to head.treeSize; empty if none asked
};
// Fetches the site's signed tree head and, if `fromSize` is given and not above the head's
// size, the consistency proof from it to the head (two calls on one connection). Sites may call
// this on each other (node/peer_audit.h). Verifies nothing: use ethics::checkPeerHead.
Result<AuditHeadAndProof> fetchAuditHead(
    const crypto::Identity& identity, const Members& members, const std::string& siteName,
    std::optional<uint64_t> fromSize,
    std::chrono::milliseconds deadline = std::chrono::seconds(10));

// The site's RFC 6962 consistency proof from its tree of `fromSize` entries to that of
// `toSize` (toSize at most the size of a head it signed). Verifies nothing: pass it to
// ethics::verifyConsistency or ethics::checkAgainstPins.
Result<std::vector<ethics::Hash>> fetchAuditConsistency(
    const crypto::Identity& identity, const Members& members, const std::string& siteName,
    uint64_t fromSize, uint64_t toSize,
    std::chrono::milliseconds deadline = std::chrono::seconds(10));

// The site's key-rotation entries among its first `treeSize` entries, each with its inclusion
// proof into that tree (treeSize: the size of a head it signed). Verifies nothing: pass them to
// ethics::followKeyRotation. Sites may call this on each other (node/peer_audit.h).
Result<std::vector<ethics::ProvenEntry>> fetchAuditKeyRotations(
    const crypto::Identity& identity, const Members& members, const std::string& siteName,
    uint64_t treeSize, std::chrono::milliseconds deadline = std::chrono::seconds(10));

}  // namespace trialmesh::node
