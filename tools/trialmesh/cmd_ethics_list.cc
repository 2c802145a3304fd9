// `trialmesh ethics list`: every approval a site holds, or every site of a study holds, with
// the site's standing on it (active, suspended, revoked, recognised by whom or awaiting
// recognition) and the history of statements; members named, not keyed (the members file).
#include <fmt/format.h>

#include <cstdio>
#include <ctime>
#include <nlohmann/json.hpp>

#include "ethics/approval.h"
#include "node/config.h"
#include "node/coordinator.h"
#include "tools/trialmesh/cli_status.h"
#include "tools/trialmesh/ethics_commands.h"
#include "tools/trialmesh/passphrase.h"

namespace trialmesh::cli {
namespace {

using Json = nlohmann::ordered_json;

struct ListArgs {
  std::string members, identity, node, study, passphraseFile;
  bool json = false;
};

// A key as people know it: the member's name, else the approval's name for its lead committee,
// else the key itself (someone outside the members file).
std::string nameOf(const crypto::PublicKey& key, const node::Members& members,
                   const ethics::Approval& approval) {
  if (const node::Member* m = members.findByKey(key)) return m->name;
  if (key == approval.leadCommittee.key) return approval.leadCommittee.name;
  return key.toText();
}

std::string issuedText(const std::optional<int64_t>& ms) {
  if (!ms) return "";
  const std::time_t t = static_cast<std::time_t>(*ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

Json standingJson(const ethics::ApprovalStanding& s, const node::Members& members) {
  const ethics::Approval& a = s.approval.approval;
  Json statements = Json::array();
  for (const ethics::Statement& x : s.statements) {
    statements.push_back({{"kind", ethics::statementKindName(x.kind)},
                          {"signer", nameOf(x.signer, members, a)},
                          {"signer_key", x.signer.toText()},
                          {"effective", x.effective.toString()},
                          {"issued_at", x.issuedAtMs ? Json(issuedText(x.issuedAtMs)) : Json()},
                          {"reason", x.reason},
                          {"site", x.site.empty() ? Json() : Json(x.site)}});
  }
  Json j;
  j["study"] = a.study;
  j["version"] = a.protocolVersion;
  j["id"] = ethics::hashHex(ethics::approvalId(a));
  j["lead_committee"] = a.leadCommittee.name;
  j["state"] = s.state.empty() ? Json() : Json(s.state);
  j["recognised_by"] = s.recognisedBy ? Json(nameOf(*s.recognisedBy, members, a)) : Json();
  j["statements"] = std::move(statements);
  return j;
}

void printStanding(const ethics::ApprovalStanding& s, const node::Members& members) {
  const ethics::Approval& a = s.approval.approval;
  std::printf("  %s (id %s), lead committee '%s'\n", a.label().c_str(),
              ethics::hashHex(ethics::approvalId(a)).substr(0, 16).c_str(),
              a.leadCommittee.name.c_str());
  std::printf("    state: %s\n", s.state.empty() ? "unknown (the site's version does not report it)"
                                                 : s.state.c_str());
  if (s.recognisedBy) {
    std::printf("    recognised by: %s\n", nameOf(*s.recognisedBy, members, a).c_str());
  } else if (s.state == "awaiting recognition") {
    std::printf("    recognised by: nobody yet (awaiting the site committee's recognition)\n");
  }
  if (s.statements.empty()) {
    std::printf("    statements: none\n");
    return;
  }
  std::printf("    statements (in the order they apply):\n");
  for (const ethics::Statement& x : s.statements) {
    std::string line = fmt::format("      {} {:<13} by {}", x.effective.toString(),
                                   ethics::statementKindName(x.kind), nameOf(x.signer, members, a));
    if (!x.site.empty()) line += " for " + x.site;
    if (x.issuedAtMs) line += ", issued " + issuedText(x.issuedAtMs);
    if (!x.reason.empty()) line += ": " + x.reason;
    std::printf("%s\n", line.c_str());
  }
}

int runList(const ListArgs& a) {
  if (a.node.empty() == a.study.empty()) {
    return fail(Status::invalidArgument(
        "ethics list needs --node SITE (one site) or --study S (every site of the study)"));
  }
  auto members = node::loadMembers(a.members);
  if (!members) return fail(members.status());
  std::vector<std::string> sites;
  if (!a.study.empty()) {
    for (const node::Member* m : members->sitesOf(a.study)) sites.push_back(m->name);
    if (sites.empty())
      return fail(Status::notFound("no site of study '" + a.study + "' in " + a.members));
  } else {
    sites.push_back(a.node);
  }
  auto identity = crypto::loadIdentity(a.identity, passphraseProvider(a.passphraseFile));
  if (!identity) return fail(identity.status().withContext(a.identity));
  Json out = Json::array();
  size_t answered = 0;
  for (const std::string& site : sites) {
    auto list = node::listSiteApprovalStandings(*identity, *members, site);
    if (!list && a.study.empty()) return fail(list.status());
    std::vector<ethics::ApprovalStanding> shown;
    if (list) {
      ++answered;
      for (auto& s : *list)
        if (a.study.empty() || s.approval.approval.study == a.study) shown.push_back(std::move(s));
    }
    if (a.json) {
      Json approvals = Json::array();
      for (const auto& s : shown) approvals.push_back(standingJson(s, *members));
      out.push_back({{"site", site},
                     {"reachable", list.isOk()},
                     {"error", list ? Json() : Json(list.status().toString())},
                     {"approvals", std::move(approvals)}});
      continue;
    }
    if (!list) {
      // A site that is down is reported, not fatal: the others still say where they stand.
      std::printf("Site %s: unreachable (%s)\n\n", site.c_str(), list.status().toString().c_str());
      continue;
    }
    std::printf("Site %s: %zu approval%s\n", site.c_str(), shown.size(),
                shown.size() == 1 ? "" : "s");
    for (const auto& s : shown) printStanding(s, *members);
    std::printf("\n");
  }
  if (a.json) std::printf("%s\n", Json{{"sites", std::move(out)}}.dump(2).c_str());
  if (answered == 0) return fail(Status::unavailable("no site answered"));
  return 0;
}

}  // namespace

void addEthicsListCommand(CLI::App& ethics, int& exitCode) {
  auto args = std::make_shared<ListArgs>();
  CLI::App* list = ethics.add_subcommand(
      "list",
      "List the approvals a site holds (--node) or every site of a study holds (--study), with\n"
      "each site's standing: active, suspended, revoked, not yet valid, expired, recognised by\n"
      "whom or awaiting recognition, and the statements it holds. Sites that are down are\n"
      "listed as unreachable. Example:\n"
      "  trialmesh ethics list --members members.toml --identity board.key --study LUNG-7");
  list->add_option("--members", args->members, "Members file")->required();
  list->add_option("--identity", args->identity, "Ethics-board member key")->required();
  list->add_option("--node", args->node, "One site (member name)");
  list->add_option("--study", args->study, "Every site of this study (members file)");
  list->add_option("--passphrase-file", args->passphraseFile, "Key passphrase (first line)");
  list->add_flag("--json", args->json, "Print JSON (named fields; docs/ethics.md)");
  list->callback([args, &exitCode] { exitCode = runList(*args); });
}

}  // namespace trialmesh::cli
