// `trialmesh audit`: an ethics board verifies, exports and follows a site's audit log.
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <thread>

#include "crypto/identity.h"
#include "ethics/approval.h"
#include "ethics/audit_log.h"
#include "ethics/head_pin.h"
#include "node/config.h"
#include "node/coordinator.h"
#include "tools/trialmesh/cli_status.h"
#include "tools/trialmesh/ethics_commands.h"
#include "tools/trialmesh/passphrase.h"

namespace trialmesh::cli {
namespace {

struct Args {
  std::string node, members, identity, passphraseFile, study, from, to, format = "csv";
  std::string state, expectHead, acceptKey;  // audit verify
  uint64_t count = 0;
  uint32_t intervalMs = 1000;
};

struct Session {
  node::Members members;
  crypto::Identity identity;
  std::string site;

  // The site's log key for `head`: any key the members file accepts for the site at the head's
  // time (its current key, or a previous one during a rotation, docs/keys.md).
  Result<crypto::PublicKey> logKeyOf(const ethics::SignedTreeHead& head) const {
    const node::Member* m = members.findByName(site);
    TM_RETURN_IF_ERROR(m->checkKeyAt(head.logKey, head.timestampMs, "tree head of " + site));
    return head.logKey;
  }
  ethics::KeyValidity keyValidity() const {
    const node::Member* m = members.findByName(site);
    return [m, name = site](const crypto::PublicKey& key, int64_t atMs) {
      return m->checkKeyAt(key, atMs, "key of site " + name);
    };
  }
};

Result<Session> openSession(const Args& a) {
  TM_ASSIGN_OR_RETURN(node::Members members, node::loadMembers(a.members));
  auto identity = crypto::loadIdentity(a.identity, passphraseProvider(a.passphraseFile));
  if (!identity) return identity.status().withContext(a.identity);
  const node::Member* site = members.findByName(a.node);
  if (site == nullptr || site->role != node::Role::kSite) {
    return Status::notFound("--node '" + a.node + "' is not a site in " + a.members);
  }
  Session s{std::move(members), std::move(*identity), a.node};
  return s;
}

std::string entryStudy(const ethics::Entry& e) {
  return std::visit(
      [](const auto& body) -> std::string {
        using T = std::decay_t<decltype(body)>;
        if constexpr (std::is_same_v<T, ethics::ApprovalEvent> ||
                      std::is_same_v<T, ethics::QueryEvent> ||
                      std::is_same_v<T, ethics::ResultReleasedEvent> ||
                      std::is_same_v<T, ethics::BudgetChargeEvent>) {
          return body.study;
        } else if constexpr (std::is_same_v<T, ethics::AlertEvent>) {
          // A surveillance alert names its study ("surveillance alarm study=FLU period=...").
          constexpr std::string_view kPrefix = "surveillance alarm study=";
          if (body.message.rfind(kPrefix, 0) != 0) return {};
          const size_t end = body.message.find(' ', kPrefix.size());
          return body.message.substr(kPrefix.size(), end - kPrefix.size());
        } else {
          return {};
        }
      },
      e.body);
}

std::string isoTime(int64_t ms) {
  const time_t secs = static_cast<time_t>(ms / 1000);
  struct tm tm {};
  gmtime_r(&secs, &tm);
  char buf[96];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(ms % 1000));
  return buf;
}

// A key as the board knows it: the member name from the members file, the key itself only
// for a key the file does not list.
std::string memberName(const node::Members& members, const crypto::PublicKey& key) {
  // Any key the file lists, previous ones included: old entries name old keys.
  const node::Member* m = members.keyState(key, 0).first;
  return m != nullptr ? m->name : "unknown key " + key.toText();
}

// The name the site recorded (format 2) or, for older entries, the members file's.
std::string coordinatorName(const node::Members& members, const crypto::PublicKey& key,
                            const ethics::QueryAuditFields& audit) {
  return audit.coordinatorName.empty() ? memberName(members, key) : audit.coordinatorName;
}

std::string approvalText(const ethics::QueryAuditFields& audit) {
  if (audit.approvalStudy.empty()) return {};
  return audit.approvalStudy + " v" + std::to_string(audit.approvalVersion);
}

// One flat record per entry for the committee's report.
nlohmann::ordered_json entryRecord(const ethics::Entry& e, const node::Members& members) {
  nlohmann::ordered_json j;
  j["sequence"] = e.sequence;
  j["time"] = isoTime(e.timestampMs);
  j["kind"] = ethics::entryKindName(e.kind);
  j["study"] = entryStudy(e);
  std::string coordinator, queryId, queryText, approval, queryHash, decision, detail;
  uint64_t cells = 0, suppressed = 0;
  auto takeAudit = [&](const ethics::QueryAuditFields& audit) {
    queryId = audit.queryId;
    queryText = audit.queryText;
    approval = approvalText(audit);
  };
  std::visit(
      [&](const auto& b) {
        using T = std::decay_t<decltype(b)>;
        if constexpr (std::is_same_v<T, ethics::QueryEvent>) {
          coordinator = coordinatorName(members, b.coordinator, b.audit);
          takeAudit(b.audit);
          queryHash = ethics::hashHex(b.queryHash);
          decision = b.allowed ? "allowed" : "refused";
          detail = b.reason;
        } else if constexpr (std::is_same_v<T, ethics::ResultReleasedEvent>) {
          coordinator = coordinatorName(members, b.coordinator, b.audit);
          takeAudit(b.audit);
          queryHash = ethics::hashHex(b.queryHash);
          cells = b.cells;
          suppressed = b.suppressedCells;
        } else if constexpr (std::is_same_v<T, ethics::ApprovalEvent>) {
          detail = "v" + std::to_string(b.protocolVersion) + " id " +
                   ethics::hashHex(b.approvalId) + ": " + b.detail;
        } else if constexpr (std::is_same_v<T, ethics::ConfigChangeEvent>) {
          detail = b.setting + ": " + b.oldValue + " -> " + b.newValue;
        } else if constexpr (std::is_same_v<T, ethics::KeyChangeEvent>) {
          detail = b.role + ": " + b.oldKey.toText() + " -> " + b.newKey.toText();
        } else if constexpr (std::is_same_v<T, ethics::KeyRotationEvent>) {
          // Exported only after verifyLog, which checks both signatures.
          detail = b.member + ": node key " + b.oldKey.toText() + " -> " + b.newKey.toText() +
                   ", signed by both keys at " + isoTime(b.signedAtMs);
        } else if constexpr (std::is_same_v<T, ethics::NodeEvent>) {
          detail = b.detail;
        } else if constexpr (std::is_same_v<T, ethics::AlertEvent>) {
          if (b.message.rfind("surveillance alarm", 0) == 0) {
            coordinator = memberName(members, b.peer);  // the coordinator that signed it
            detail = b.message;
          } else {
            detail = memberName(members, b.peer) + ": " + b.message;
          }
        } else if constexpr (std::is_same_v<T, ethics::BudgetChargeEvent>) {
          coordinator = memberName(members, b.coordinator);
          queryHash = ethics::hashHex(b.queryHash);
          decision = b.charged ? "charged" : "refused";
          detail = "v" + std::to_string(b.protocolVersion) + " " + ethics::budgetChargeText(b) +
                   (b.charged ? "" : ": " + b.reason);
        } else if constexpr (std::is_same_v<T, ethics::RefusalEvent>) {
          // Refused before the ethics check: no study or query to show, only who and why.
          coordinator = b.peer;
          decision = b.summarised > 0 ? "refused (summary of " + std::to_string(b.summarised) + ")"
                                      : "refused";
          detail = b.reasonClass + " from " + b.remote + ": " + b.message;
        } else {
          static_assert(sizeof(T) == 0, "every entry body needs its record fields here");
        }
      },
      e.body);
  j["coordinator"] = coordinator;
  j["query_id"] = queryId;
  j["query"] = queryText;
  j["approval"] = approval;
  j["query_hash"] = queryHash;
  j["decision"] = decision;
  j["cells"] = cells;
  j["suppressed_cells"] = suppressed;
  j["detail"] = detail;
  return j;
}

std::string csvField(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

int runVerify(const Args& a) {
  // Everything the board passed is checked before anything is downloaded.
  std::optional<ethics::ExpectedHead> expected;
  if (!a.expectHead.empty()) {
    auto e = ethics::parseExpectedHead(a.expectHead);
    if (!e) return fail(e.status());
    expected = *e;
  }
  std::optional<crypto::PublicKey> acceptKey;
  if (!a.acceptKey.empty()) {
    auto k = crypto::parsePublicKey(a.acceptKey);
    if (!k) return fail(k.status().withContext("--accept-key"));
    acceptKey = *k;
  }
  std::string statePath = a.state;
  if (statePath.empty()) {
    auto d = ethics::defaultPinPath();
    if (!d) return fail(d.status());
    statePath = *d;
  }
  auto pins = ethics::loadPins(statePath);
  if (!pins) return fail(pins.status());

  auto session = openSession(a);
  if (!session) return fail(session.status());
  auto log = node::downloadAuditLog(session->identity, session->members, a.node);
  if (!log) return fail(log.status());
  auto failed = [&](const Status& s) {
    std::printf("audit log of %s FAILED verification: %s\n", a.node.c_str(), s.message().c_str());
    return 1;
  };
  auto logKey = session->logKeyOf(log->head);
  if (!logKey) return failed(logKey.status());
  Status verified = ethics::verifyLog(log->entries, log->head, *logKey);
  if (!verified.isOk()) return failed(verified);

  // The site must prove that this head extends the one we verified last.
  std::vector<ethics::Hash> proof;
  const ethics::PinnedHead* pin = ethics::findPin(*pins, a.node, log->head.logKey);
  const uint64_t pinnedSize = pin != nullptr ? pin->head.treeSize : 0;
  if (pin != nullptr && pinnedSize <= log->head.treeSize) {
    auto p = node::fetchAuditConsistency(session->identity, session->members, a.node, pinnedSize,
                                         log->head.treeSize);
    if (!p) return fail(p.status().withContext("consistency proof from the pinned head"));
    proof = std::move(*p);
  }
  ethics::PinCheck check;
  check.pins = &*pins;
  check.site = a.node;
  check.entries = log->entries;
  check.head = log->head;
  check.consistencyProof = proof;
  check.expected = expected;
  check.acceptKey = acceptKey;
  check.keyValidity = session->keyValidity();
  check.keyVouched = [site = session->members.findByName(a.node)](const crypto::PublicKey& key) {
    return key == site->publicKey;
  };
  auto outcome = ethics::checkAgainstPins(check);
  if (!outcome) {
    return failed(
        outcome.status().withContext("compared with what was verified before (" + statePath + ")"));
  }
  Status saved = ethics::savePins(statePath, ethics::withPin(std::move(*pins), a.node, log->head));
  if (!saved.isOk()) return fail(saved);
  std::printf("audit log of %s verified: %llu entries, root %s, tree head signed by %s\n",
              a.node.c_str(), static_cast<unsigned long long>(log->head.treeSize),
              ethics::hashHex(log->head.root).c_str(), log->head.logKey.toText().c_str());
  switch (*outcome) {
    case ethics::PinOutcome::kFirstUse:
      std::printf(
          "first verification of this log on this computer: pinning its head (trust on first "
          "use) in %s; to check it against a head known from elsewhere, pass --expect-head\n",
          statePath.c_str());
      break;
    case ethics::PinOutcome::kExpected:
      std::printf("matches the expected head %s; pinned in %s\n", a.expectHead.c_str(),
                  statePath.c_str());
      break;
    case ethics::PinOutcome::kConsistent:
      std::printf(
          "consistent with the head pinned before (%llu entries): nothing was removed "
          "or rewritten; pin updated in %s\n",
          static_cast<unsigned long long>(pinnedSize), statePath.c_str());
      break;
    case ethics::PinOutcome::kKeyRotated:
      std::printf(
          "extends the head pinned before under the site's previous key, and the log records "
          "the key rotation to %s signed by both keys; pinned in %s\n",
          log->head.logKey.toText().c_str(), statePath.c_str());
      break;
    case ethics::PinOutcome::kKeyAccepted:
      std::printf("new log key accepted as given with --accept-key; pinned in %s\n",
                  statePath.c_str());
      break;
  }
  std::printf("head for the report (pass as --expect-head next time): %s\n",
              ethics::formatExpectedHead(log->head).c_str());
  return 0;
}

int runExport(const Args& a) {
  if (a.format != "csv" && a.format != "json") {
    return fail(Status::invalidArgument("--format '" + a.format + "' must be csv or json"));
  }
  std::optional<ethics::Date> from, to;
  if (!a.from.empty()) {
    auto d = ethics::parseDate(a.from);
    if (!d) return fail(d.status().withContext("--from"));
    from = *d;
  }
  if (!a.to.empty()) {
    auto d = ethics::parseDate(a.to);
    if (!d) return fail(d.status().withContext("--to"));
    to = *d;
  }
  auto session = openSession(a);
  if (!session) return fail(session.status());
  auto log = node::downloadAuditLog(session->identity, session->members, a.node);
  if (!log) return fail(log.status());
  // A report is only worth filing about a log that verifies.
  auto logKey = session->logKeyOf(log->head);
  Status verified = logKey ? ethics::verifyLog(log->entries, log->head, *logKey) : logKey.status();
  if (!verified.isOk()) {
    return fail(Status::corruption("audit log of " + a.node +
                                   " does not verify, not exported: " + verified.message()));
  }
  nlohmann::ordered_json rows = nlohmann::ordered_json::array();
  for (const auto& stored : log->entries) {
    auto e = ethics::decodeEntry(
        {reinterpret_cast<const uint8_t*>(stored.bytes.data()), stored.bytes.size()});
    if (!e) return fail(e.status());
    const ethics::Date day = ethics::dateFromUnixMs(e->timestampMs);
    if (from && day < *from) continue;
    if (to && *to < day) continue;
    if (!a.study.empty() && entryStudy(*e) != a.study) continue;
    rows.push_back(entryRecord(*e, session->members));
  }
  if (a.format == "json") {
    nlohmann::ordered_json doc;
    doc["node"] = a.node;
    doc["tree_size"] = log->head.treeSize;
    doc["root"] = ethics::hashHex(log->head.root);
    doc["entries"] = rows;
    std::printf("%s\n", doc.dump(2).c_str());
    return 0;
  }
  std::printf(
      "sequence,time,kind,study,coordinator,query_id,query,approval,query_hash,decision,cells,"
      "suppressed_cells,detail\n");
  for (const auto& r : rows) {
    std::printf(
        "%llu,%s,%s,%s,%s,%s,%s,%s,%s,%s,%llu,%llu,%s\n",
        static_cast<unsigned long long>(r["sequence"].get<uint64_t>()),
        r["time"].get<std::string>().c_str(), r["kind"].get<std::string>().c_str(),
        csvField(r["study"].get<std::string>()).c_str(),
        csvField(r["coordinator"].get<std::string>()).c_str(),
        r["query_id"].get<std::string>().c_str(), csvField(r["query"].get<std::string>()).c_str(),
        csvField(r["approval"].get<std::string>()).c_str(),
        r["query_hash"].get<std::string>().c_str(), r["decision"].get<std::string>().c_str(),
        static_cast<unsigned long long>(r["cells"].get<uint64_t>()),
        static_cast<unsigned long long>(r["suppressed_cells"].get<uint64_t>()),
        csvField(r["detail"].get<std::string>()).c_str());
  }
  return 0;
}

std::atomic<bool> gInterrupted{false};

int runTail(const Args& a) {
  auto session = openSession(a);
  if (!session) return fail(session.status());
  signal(SIGINT, [](int) { gInterrupted = true; });
  uint64_t next = 0;
  {
    auto head = node::downloadAuditLog(session->identity, session->members, a.node, 0);
    if (!head) return fail(head.status());
    next = head->head.treeSize > 10 ? head->head.treeSize - 10 : 0;
  }
  uint64_t printed = 0;
  while (!gInterrupted && (a.count == 0 || printed < a.count)) {
    auto log = node::downloadAuditLog(session->identity, session->members, a.node, next);
    if (!log) return fail(log.status());
    for (const auto& stored : log->entries) {
      auto e = ethics::decodeEntry(
          {reinterpret_cast<const uint8_t*>(stored.bytes.data()), stored.bytes.size()});
      if (!e) return fail(e.status());
      std::printf("%s\n", ethics::describeEntry(*e).c_str());
      ++next;
      if (a.count != 0 && ++printed >= a.count) break;
    }
    std::fflush(stdout);
    if (a.count != 0 && printed >= a.count) break;
    for (uint32_t waited = 0; waited < a.intervalMs && !gInterrupted; waited += 50) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  return 0;
}

void addCommon(CLI::App* c, Args& args) {
  c->add_option("--node", args.node, "Site member name")->required();
  c->add_option("--members", args.members, "Members file")->required();
  c->add_option("--identity", args.identity, "Ethics-board member key (or the site's own)")
      ->required();
  c->add_option("--passphrase-file", args.passphraseFile, "Key passphrase (first line)");
}

}  // namespace

void addAuditCommands(CLI::App& app, int& exitCode) {
  auto args = std::make_shared<Args>();
  CLI::App* a = app.add_subcommand(
      "audit", "A site's tamper-evident audit log (ethics boards and the site itself only)");
  a->require_subcommand(1);

  CLI::App* verify = a->add_subcommand(
      "verify",
      "Download every entry and a signed tree head and verify them end to end, and check that "
      "the log extends the head verified last time (remembered per site and log key); names "
      "the first bad entry or what differs and exits 1 on failure");
  addCommon(verify, *args);
  verify->add_option("--state", args->state,
                     "File remembering the last verified head per site (default "
                     "$XDG_STATE_HOME/trialmesh/audit-pins or ~/.local/state/trialmesh/"
                     "audit-pins)");
  verify->add_option("--expect-head", args->expectHead,
                     "<root hex>@<size>: a head known from elsewhere (e.g. an earlier report); "
                     "the log must contain it");
  verify->add_option("--accept-key", args->acceptKey,
                     "The site's new log key (tmpk1...) after a key rotation confirmed out of "
                     "band; without it a head by a key other than the pinned one fails");
  verify->callback([args, &exitCode] { exitCode = runVerify(*args); });

  CLI::App* exp = a->add_subcommand("export", "Verified entries as CSV or JSON for a report");
  addCommon(exp, *args);
  exp->add_option("--study", args->study, "Only entries about this study");
  exp->add_option("--from", args->from, "First day (YYYY-MM-DD, UTC), inclusive");
  exp->add_option("--to", args->to, "Last day (YYYY-MM-DD, UTC), inclusive");
  exp->add_option("--format", args->format, "csv (default) or json");
  exp->callback([args, &exitCode] { exitCode = runExport(*args); });

  CLI::App* tail = a->add_subcommand(
      "tail", "Print the last 10 entries, then follow new ones until --count or Ctrl-C");
  addCommon(tail, *args);
  tail->add_option("--count", args->count, "Stop after this many entries (0 = until Ctrl-C)");
  tail->add_option("--interval-ms", args->intervalMs, "Polling interval (default 1000)");
  tail->callback([args, &exitCode] { exitCode = runTail(*args); });
}

}  // namespace trialmesh::cli
