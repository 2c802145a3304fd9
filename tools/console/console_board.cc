#include "tools/console/console_board.h"

#include <chrono>
#include <ctime>
#include <future>
#include <map>
#include <nlohmann/json.hpp>
#include <variant>

#include "ethics/approval.h"
#include "ethics/audit_log.h"
#include "node/coordinator.h"

namespace trialmesh::console {
namespace {

using Json = nlohmann::ordered_json;

std::string isoTime(int64_t ms) {
  const time_t secs = static_cast<time_t>(ms / 1000);
  struct tm tm {};
  gmtime_r(&secs, &tm);
  char buf[40];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string memberName(const node::Members& members, const crypto::PublicKey& key) {
  const node::Member* m = members.findByKey(key);
  return m != nullptr ? m->name : "unknown key " + key.toText();
}

std::string label(const std::string& study, uint32_t version) {
  return study + " v" + std::to_string(version);
}

// What an approval statement entry makes of the approval at this site.
const char* stateAfter(ethics::EntryKind kind) {
  switch (kind) {
    case ethics::EntryKind::kApprovalReceived:
    case ethics::EntryKind::kApprovalAmended:
    case ethics::EntryKind::kApprovalReinstated:
      return "active";
    case ethics::EntryKind::kApprovalRecognised:
      return "recognised";
    case ethics::EntryKind::kApprovalSuspended:
      return "suspended";
    case ethics::EntryKind::kApprovalRevoked:
      return "revoked";
    default:
      return nullptr;
  }
}

// One timeline record, named as `trialmesh audit export` names its columns.
Json record(const ethics::Entry& e, const node::Members& members) {
  Json j{{"sequence", e.sequence},
         {"time", isoTime(e.timestampMs)},
         {"kind", ethics::entryKindName(e.kind)},
         {"study", ""},
         {"coordinator", ""},
         {"query", ""},
         {"approval", ""},
         {"decision", ""},
         {"detail", ""}};
  auto audit = [&](const ethics::QueryAuditFields& a, const crypto::PublicKey& who) {
    j["coordinator"] = a.coordinatorName.empty() ? memberName(members, who) : a.coordinatorName;
    j["query"] = a.queryText;
    if (!a.approvalStudy.empty()) j["approval"] = label(a.approvalStudy, a.approvalVersion);
  };
  std::visit(
      [&](const auto& b) {
        using T = std::decay_t<decltype(b)>;
        if constexpr (std::is_same_v<T, ethics::QueryEvent>) {
          j["study"] = b.study;
          audit(b.audit, b.coordinator);
          j["decision"] = b.allowed ? "allowed" : "refused";
          j["detail"] = b.reason;
        } else if constexpr (std::is_same_v<T, ethics::ResultReleasedEvent>) {
          j["study"] = b.study;
          audit(b.audit, b.coordinator);
          j["decision"] = "released";
          j["detail"] = std::to_string(b.cells) + " cells, " + std::to_string(b.suppressedCells) +
                        " suppressed";
        } else if constexpr (std::is_same_v<T, ethics::ApprovalEvent>) {
          j["study"] = b.study;
          j["approval"] = label(b.study, b.protocolVersion);
          j["detail"] = b.detail;
        } else if constexpr (std::is_same_v<T, ethics::NodeEvent>) {
          j["detail"] = b.detail;
        }
      },
      e.body);
  return j;
}

Json siteReport(const crypto::Identity& identity, const node::Members& members,
                const node::Member& site, size_t timelineEntries) {
  Json out{{"site", site.name}, {"reachable", false}, {"verified", false}, {"reason", ""}};
  // Approvals first: they also tell whether the site answers this identity at all.
  auto approvals = node::listSiteApprovals(identity, members, site.name);
  if (!approvals) {
    out["reason"] = approvals.status().message();
    return out;
  }
  out["reachable"] = true;
  auto log = node::downloadAuditLog(identity, members, site.name);
  std::map<std::string, std::string> state;  // approval label -> state in the verified log
  Json timeline = Json::array();
  if (!log) {
    out["reason"] = "cannot download the audit log: " + log.status().message();
  } else if (Status v = ethics::verifyLog(log->entries, log->head, site.publicKey); !v.isOk()) {
    out["reason"] = v.message();
  } else {
    out["verified"] = true;
    out["tree_size"] = log->head.treeSize;
    out["head_time"] = isoTime(log->head.timestampMs);
    const size_t first =
        log->entries.size() > timelineEntries ? log->entries.size() - timelineEntries : 0;
    for (size_t i = 0; i < log->entries.size(); ++i) {
      const auto& bytes = log->entries[i].bytes;
      auto e = ethics::decodeEntry({reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()});
      if (!e) continue;  // verifyLog decoded every entry; unreachable
      if (const char* s = stateAfter(e->kind)) {
        const auto& b = std::get<ethics::ApprovalEvent>(e->body);
        state[label(b.study, b.protocolVersion)] = s;
      }
      if (i >= first) timeline.push_back(record(*e, members));
    }
  }
  const int64_t nowMs = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
  Json held = Json::array();
  for (const auto& bytes : *approvals) {
    auto sa = ethics::decodeSignedApproval(
        {reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()});
    if (!sa) continue;
    const ethics::Approval& a = sa->approval;
    auto it = state.find(a.label());
    // Without a verified log the state is unknown, not "active": say so. An approval the log
    // records no statement about (stored with the site's configuration) is in force within its
    // dates; any state but revoked becomes "expired" after them (ISO dates compare as text).
    std::string st = !out["verified"].get<bool>() ? "unknown"
                     : it != state.end()          ? it->second
                                                  : "active";
    const std::string today = isoTime(nowMs).substr(0, 10);
    if (st != "unknown" && st != "revoked") {
      if (today >= a.validUntil.toString()) st = "expired";
      if (today < a.validFrom.toString()) st = "not yet valid";
    }
    held.push_back({{"approval", a.label()},
                    {"study", a.study},
                    {"version", a.protocolVersion},
                    {"committee", a.leadCommittee.name},
                    {"valid_from", a.validFrom.toString()},
                    {"valid_until", a.validUntil.toString()},
                    {"aggregation", ethics::aggregationModeName(a.aggregation)},
                    {"state", st}});
  }
  out["approvals"] = held;
  out["timeline"] = timeline;
  return out;
}

}  // namespace

std::string boardJson(const crypto::Identity& identity, const node::Members& members,
                      size_t timelineEntries) {
  std::vector<std::future<Json>> reports;
  for (const auto& m : members.members) {
    if (m.role != node::Role::kSite) continue;
    // In parallel: each site's download and verification is independent.
    reports.push_back(std::async(std::launch::async, [&, site = &m] {
      return siteReport(identity, members, *site, timelineEntries);
    }));
  }
  Json sites = Json::array();
  for (auto& r : reports) sites.push_back(r.get());
  Json out;
  out["board"] = memberName(members, identity.pub);
  out["federation"] = members.federation;
  out["sites"] = sites;
  return out.dump();
}

}  // namespace trialmesh::console
