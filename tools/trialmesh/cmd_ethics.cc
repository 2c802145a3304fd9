// `trialmesh ethics`: a committee signs, submits, inspects, revokes, suspends and reinstates
// approvals; a site's own committee recognises them (countersignature policy).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>

#include "crypto/identity.h"
#include "ethics/approval.h"
#include "node/config.h"
#include "node/coordinator.h"
#include "tools/trialmesh/cli_status.h"
#include "tools/trialmesh/ethics_commands.h"
#include "tools/trialmesh/passphrase.h"

namespace trialmesh::cli {
namespace {

Result<std::string> readAll(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::notFound(std::string(what) + " '" + path + "' cannot be read");
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

Result<ethics::SignedApproval> readSignedApproval(const std::string& path) {
  TM_ASSIGN_OR_RETURN(std::string bytes, readAll(path, "signed approval"));
  auto sa =
      ethics::decodeSignedApproval({reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()});
  if (!sa) return sa.status().withContext(path);
  return sa;
}

ethics::Date today() {
  return ethics::dateFromUnixMs(std::chrono::duration_cast<std::chrono::milliseconds>(
                                    std::chrono::system_clock::now().time_since_epoch())
                                    .count());
}

struct Args {
  std::string approval, identity, out, members, study, node, reason, as, passphraseFile, file;
  uint32_t version = 0;
};

// Levenshtein distance, for "did you mean" on a misspelt member name.
size_t editDistance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// Issue 14: before a board signs, every site the approval names must be a site of the
// members file and every coordinator key a coordinator there; a misspelt name would otherwise
// make an approval that no site ever applies. Prints what was resolved, for confirmation.
Status checkAgainstMembers(const ethics::Approval& approval, const node::Members& members,
                           const std::string& membersPath) {
  for (const std::string& name : approval.sites) {
    const node::Member* m = members.findByName(name);
    if (m != nullptr && m->role == node::Role::kSite) {
      std::printf("site        %-24s %s\n", name.c_str(), m->publicKey.toText().c_str());
      continue;
    }
    std::string best;
    size_t bestDistance = 3;  // suggest only close names
    for (const node::Member& candidate : members.members) {
      if (candidate.role != node::Role::kSite) continue;
      const size_t d = editDistance(name, candidate.name);
      if (d < bestDistance) bestDistance = d, best = candidate.name;
    }
    std::string message = "approval names site '" + name + "', " +
                          (m == nullptr ? std::string("which is not a member") : "not a site") +
                          " in " + membersPath;
    if (!best.empty()) message += "; did you mean '" + best + "'?";
    return Status::notFound(message);
  }
  for (const crypto::PublicKey& key : approval.coordinators) {
    const node::Member* m = members.findByKey(key);
    if (m == nullptr || m->role != node::Role::kCoordinator) {
      return Status::notFound("approval names coordinator key " + key.toText() +
                              ", which is not a coordinator in " + membersPath);
    }
    std::printf("coordinator %-24s %s\n", m->name.c_str(), key.toText().c_str());
  }
  std::printf("dictionary  %s\n", ethics::hashHex(approval.dictionaryHash).c_str());
  return Status::ok();
}

int runSign(const Args& a) {
  auto text = readAll(a.approval, "approval TOML");
  if (!text) return fail(text.status());
  auto approval = ethics::parseApprovalToml(*text, a.approval);
  if (!approval) return fail(approval.status());
  if (!a.members.empty()) {
    auto members = node::loadMembers(a.members);
    if (!members) return fail(members.status());
    Status known = checkAgainstMembers(*approval, *members, a.members);
    if (!known.isOk()) return fail(known.withContext(a.approval));
  }
  auto identity = crypto::loadIdentity(a.identity, passphraseProvider(a.passphraseFile));
  if (!identity) return fail(identity.status().withContext(a.identity));
  auto sa = ethics::signApproval(std::move(*approval), *identity);
  if (!sa) return fail(sa.status());
  std::ofstream out(a.out, std::ios::binary | std::ios::trunc);
  out << ethics::encodeSignedApproval(*sa);
  out.close();
  if (!out) return fail(Status::ioError("cannot write " + a.out));
  std::printf("signed approval %s (id %s) -> %s\n", sa->approval.label().c_str(),
              ethics::hashHex(ethics::approvalId(sa->approval)).c_str(), a.out.c_str());
  return 0;
}

int runSubmit(const Args& a) {
  auto sa = readSignedApproval(a.file);
  if (!sa) return fail(sa.status());
  Status verified = ethics::verifyApproval(*sa);
  if (!verified.isOk()) return fail(verified.withContext(a.file));
  if (sa->approval.study != a.study) {
    return fail(Status::invalidArgument(a.file + " approves study '" + sa->approval.study +
                                        "', not --study '" + a.study + "'"));
  }
  auto members = node::loadMembers(a.members);
  if (!members) return fail(members.status());
  auto identity = crypto::loadIdentity(a.identity, passphraseProvider(a.passphraseFile));
  if (!identity) return fail(identity.status().withContext(a.identity));
  auto sites = members->sitesOf(a.study);
  if (sites.empty())
    return fail(Status::notFound("no site of study '" + a.study + "' in " + a.members));
  const std::string bytes = ethics::encodeSignedApproval(*sa);
  int failures = 0;
  for (const node::Member* site : sites) {
    auto receipt = node::submitApprovalToSite(*identity, *members, site->name, bytes);
    if (receipt) {
      std::printf("%-20s %s\n", site->name.c_str(), receipt->c_str());
    } else {
      ++failures;
      std::printf("%-20s FAILED: %s\n", site->name.c_str(), receipt.status().toString().c_str());
    }
  }
  return failures == 0 ? 0 : 1;
}

void printApproval(const ethics::SignedApproval& sa) {
  std::printf("# approval %s, id %s, signature %s\n", sa.approval.label().c_str(),
              ethics::hashHex(ethics::approvalId(sa.approval)).c_str(),
              ethics::verifyApproval(sa).isOk() ? "valid" : "INVALID");
  std::printf("%s\n", ethics::approvalToToml(sa.approval).c_str());
}

int runShow(const Args& a) {
  auto sa = readSignedApproval(a.file);
  if (!sa) return fail(sa.status());
  printApproval(*sa);
  return ethics::verifyApproval(*sa).isOk() ? 0 : 1;
}

// revoke, suspend, reinstate (lead committee; every site of the study) and recognise (a site's
// own committee; that site only): sign the statement and push it.
int runStatement(const Args& a, ethics::StatementKind kind) {
  auto members = node::loadMembers(a.members);
  if (!members) return fail(members.status());
  auto committee = crypto::loadIdentity(a.identity, passphraseProvider(a.passphraseFile));
  if (!committee) return fail(committee.status().withContext(a.identity));
  std::optional<crypto::Identity> sender;
  if (!a.as.empty()) {
    auto s = crypto::loadIdentity(a.as, passphraseProvider(a.passphraseFile));
    if (!s) return fail(s.status().withContext(a.as));
    sender = std::move(*s);
  }
  const crypto::Identity& connectAs = sender ? *sender : *committee;
  auto sites = members->sitesOf(a.study);
  if (kind == ethics::StatementKind::kRecognition) {
    const node::Member* site = members->findByName(a.node);
    if (site == nullptr || site->role != node::Role::kSite) {
      return fail(Status::notFound("--site '" + a.node + "' is not a site in " + a.members));
    }
    sites = {site};
  }
  if (sites.empty())
    return fail(Status::notFound("no site of study '" + a.study + "' in " + a.members));
  // The approval id comes from the first site that holds the approval.
  // Sites only let ethics-board members in: say so rather than "no site holds it" (issue 14).
  const node::Member* connecting = members->findByKey(connectAs.pub);
  if (connecting == nullptr || connecting->role != node::Role::kEthicsBoard) {
    std::string boards;
    for (const node::Member& m : members->members) {
      if (m.role == node::Role::kEthicsBoard) boards += (boards.empty() ? "" : ", ") + m.name;
    }
    return fail(Status::permissionDenied(
        std::string(sender ? "--as" : "--identity") + " key " + connectAs.pub.toText() +
        " is not an ethics-board member in " + a.members + "; sites accept statements only over " +
        "a board member's connection: pass --as <key file of one of: " +
        (boards.empty() ? std::string("(none listed)") : boards) + ">"));
  }
  std::optional<ethics::Hash> id;
  std::string unreachable;
  for (const node::Member* site : sites) {
    auto list = node::listSiteApprovals(connectAs, *members, site->name);
    if (!list) {
      unreachable += "; " + site->name + ": " + list.status().message();
      continue;
    }
    for (const auto& bytes : *list) {
      auto sa = ethics::decodeSignedApproval(
          {reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()});
      if (sa && sa->approval.study == a.study && sa->approval.protocolVersion == a.version) {
        id = ethics::approvalId(sa->approval);
      }
    }
    if (id) break;
  }
  if (!id) {
    return fail(Status::notFound("no site of study '" + a.study + "' holds approval " + a.study +
                                 " v" + std::to_string(a.version) + unreachable));
  }
  ethics::Statement st;
  st.kind = kind;
  if (kind == ethics::StatementKind::kRecognition) st.site = a.node;
  st.study = a.study;
  st.protocolVersion = a.version;
  st.approvalId = *id;
  st.effective = today();
  st.reason = a.reason;
  const std::string bytes = ethics::encodeSignedStatement(ethics::signStatement(st, *committee));
  int failures = 0;
  for (const node::Member* site : sites) {
    auto receipt = node::submitStatementToSite(connectAs, *members, site->name, bytes);
    if (receipt) {
      std::printf("%-20s %s\n", site->name.c_str(), receipt->c_str());
    } else {
      ++failures;
      std::printf("%-20s FAILED: %s\n", site->name.c_str(), receipt.status().toString().c_str());
    }
  }
  return failures == 0 ? 0 : 1;
}

}  // namespace

void addEthicsCommands(CLI::App& app, int& exitCode) {
  auto args = std::make_shared<Args>();
  CLI::App* e = app.add_subcommand(
      "ethics",
      "Ethics approvals: sign, submit to a study's sites, show, list, revoke, suspend, "
      "reinstate, recognise");
  e->require_subcommand(1);

  CLI::App* sign = e->add_subcommand(
      "sign", "Sign an approval (TOML, docs/ethics.md) with the lead committee's key");
  sign->add_option("--approval", args->approval, "Approval TOML")->required();
  sign->add_option("--identity", args->identity, "Lead committee key")->required();
  sign->add_option("--out", args->out, "Signed approval file to write")->required();
  sign->add_option("--members", args->members,
                   "Members file: refuse site names and coordinator keys it does not list, and "
                   "show what they resolve to");
  sign->add_option("--passphrase-file", args->passphraseFile, "Key passphrase (first line)");
  sign->callback([args, &exitCode] { exitCode = runSign(*args); });

  CLI::App* submit = e->add_subcommand(
      "submit", "Push a signed approval to every site of the study (needs role ethics-board)");
  submit->add_option("--members", args->members, "Members file")->required();
  submit->add_option("--identity", args->identity, "Ethics-board member key")->required();
  submit->add_option("--study", args->study, "Study, e.g. LUNG-7")->required();
  submit->add_option("--passphrase-file", args->passphraseFile, "Key passphrase (first line)");
  submit->add_option("approval", args->file, "Signed approval file")->required();
  submit->callback([args, &exitCode] { exitCode = runSubmit(*args); });

  CLI::App* show =
      e->add_subcommand("show", "Print a signed approval file and check its signature");
  show->add_option("approval", args->file, "Signed approval file")->required();
  show->callback([args, &exitCode] { exitCode = runShow(*args); });

  addEthicsListCommand(*e, exitCode);  // cmd_ethics_list.cc

  struct StatementCommand {
    const char* name;
    ethics::StatementKind kind;
    const char* help;
    const char* signer;
    const char* version;
    bool reasonRequired;
  };
  const StatementCommand commands[] = {
      {"revoke", ethics::StatementKind::kRevocation,
       "Sign a revocation with the lead committee's key and push it to the study's sites: the "
       "approval is refused from now on, for good",
       "Lead committee key (signs)", "Protocol version to revoke", true},
      {"suspend", ethics::StatementKind::kSuspension,
       "Sign a suspension with the lead committee's key and push it to the study's sites: "
       "queries are refused until a reinstatement",
       "Lead committee key (signs)", "Protocol version to suspend", true},
      {"reinstate", ethics::StatementKind::kReinstatement,
       "Sign a reinstatement with the lead committee's key and push it to the study's sites: "
       "lifts an earlier suspension",
       "Lead committee key (signs)", "Protocol version to reinstate", false},
      {"recognise", ethics::StatementKind::kRecognition,
       "Sign a recognition with a site's own committee key and push it to that site (sites "
       "whose [ethics] own_committee is that key need one per approval)",
       "The site's own committee key (signs)", "Protocol version to recognise", false},
  };
  for (const StatementCommand& c : commands) {
    CLI::App* cmd = e->add_subcommand(c.name, c.help);
    cmd->add_option("--members", args->members, "Members file")->required();
    cmd->add_option("--identity", args->identity, c.signer)->required();
    cmd->add_option("--as", args->as,
                    "Ethics-board member key to connect with (default: --identity)");
    cmd->add_option("--study", args->study, "Study")->required();
    cmd->add_option("--version", args->version, c.version)->required();
    if (c.kind == ethics::StatementKind::kRecognition) {
      cmd->add_option("--site", args->node, "Site member name that recognises the approval")
          ->required();
    }
    auto* reason = cmd->add_option("--reason", args->reason,
                                   "Reason shown to coordinators and written to the audit log");
    if (c.reasonRequired) reason->required();
    cmd->add_option("--passphrase-file", args->passphraseFile, "Key passphrase (first line)");
    const ethics::StatementKind kind = c.kind;
    cmd->callback([args, kind, &exitCode] { exitCode = runStatement(*args, kind); });
  }
}

}  // namespace trialmesh::cli
