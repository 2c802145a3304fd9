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
// Thread-safety: runFederatedQuery creates and runs its own KJ event loop on the calling
// thread. REQUIRES: the calling thread has no KJ event loop of its own. Separate threads may
// call it concurrently.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "crypto/identity.h"
#include "ethics/audit_log.h"
#include "node/config.h"
#include "protocol/freshness.h"
#include "protocol/messages.h"
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
  // Largest message accepted from a site. Default 64 MiB.
  uint64_t maxMessageBytes = 64ull << 20;
  // Clock for issuedAtMs/expiresAtMs; default the system clock. Not owned.
  const protocol::Clock* clock = nullptr;
  // Test hooks, called per site before signing / after signing; leave empty in production.
  // They let tests send expired, replayed and forged queries through the real client.
  std::function<void(const Member& site, protocol::QueryRequestFields&)> adjustRequest;
  std::function<void(const Member& site, protocol::SignedQueryBytes&)> adjustSigned;
};

// Runs `queryText` (the query language, docs/query-language.md) on every site of `study`.
// Errors (Status, nothing sent): InvalidArgument for a query that does not parse, NotFound
// when the members file has no site for the study. Everything that goes wrong at a site is
// in its SiteOutcome instead.
Result<FederatedResult> runFederatedQuery(const crypto::Identity& identity, const Members& members,
                                          const std::string& study, const std::string& queryText,
                                          const FederatedQueryOptions& options = {});

struct SiteInfo {
  std::string name;
  std::string federation;
  uint32_t protocolVersion = 0;
  std::string softwareVersion;
  std::vector<std::string> studies;
};

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

struct AuditDownload {
  ethics::SignedTreeHead head;
  std::vector<ethics::StoredEntry> entries;  // [begin, head.treeSize)
};
// Fetches a signed tree head, then every entry from `begin` up to its size (paged). Does not
// verify anything: pass the result to ethics::verifyLog.
Result<AuditDownload> downloadAuditLog(
    const crypto::Identity& identity, const Members& members, const std::string& siteName,
    uint64_t begin = 0, std::chrono::milliseconds deadline = std::chrono::seconds(60));

}  // namespace trialmesh::node
