// Writes the binary seeds of corpus/ (request, partial, audit entries, tree heads, signed
// approvals and statements, members with real keys) that cannot be typed by hand. Not a fuzzer:
// run once after a format change, `build-fuzz/bin/fuzz_make_seeds tests/fuzz/corpus`, and
// commit the files (the keys are random, the structure is what matters).
#include <capnp/message.h>
#include <capnp/serialize.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "ethics/approval.h"
#include "ethics/audit_log.h"
#include "protocol/messages.h"

namespace {

using namespace trialmesh;
namespace fs = std::filesystem;

fs::path root;

void write(const std::string& harness, const std::string& name, std::string_view prefix,
           std::string_view bytes) {
  fs::create_directories(root / harness);
  std::ofstream out(root / harness / name, std::ios::binary);
  out << prefix << bytes;
  std::printf("%s/%s: %zu bytes\n", harness.c_str(), name.c_str(), prefix.size() + bytes.size());
}

std::string_view asView(const std::vector<uint8_t>& v) {
  return {reinterpret_cast<const char*>(v.data()), v.size()};
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <corpus dir>\n", argv[0]);
    return 2;
  }
  root = argv[1];
  const crypto::Identity coordinator = crypto::generateIdentity();
  const crypto::Identity committee = crypto::generateIdentity();
  const crypto::Identity siteA = crypto::generateIdentity();
  const crypto::Identity siteB = crypto::generateIdentity();

  // Signed-query requests: plain, and secure with participants.
  protocol::QueryRequestFields f;
  f.federation = "fed";
  f.study = "LUNG-7";
  f.queryText = "count, mean(age) where sex = \"F\" by arm";
  f.coordinatorKey = coordinator.pub;
  f.audience = {siteA.pub, siteB.pub};
  std::sort(f.audience.begin(), f.audience.end());
  f.nonce = protocol::newNonce();
  f.issuedAtMs = 1'700'000'000'000;
  f.expiresAtMs = f.issuedAtMs + 60'000;
  write("query_request", "plain", "", asView(protocol::encodeQueryRequest(f)));
  f.aggregation = protocol::wire::Aggregation::SECURE;
  f.participants = f.audience;
  write("query_request", "secure", "", asView(protocol::encodeQueryRequest(f)));

  // A partial aggregate: two cells, count and mean.
  {
    query::PartialResult p;
    p.shape.dictionaryHash = "d1";
    p.shape.queryText = "count, mean(age) by arm";
    p.shape.cells = 2;
    p.shape.statistics = 2;
    capnp::MallocMessageBuilder builder;
    protocol::partialToWire(p, builder.initRoot<protocol::wire::PartialResult>());
    auto words = capnp::messageToFlatArray(builder);
    write("partial_wire", "two_cells", "",
          std::string_view(reinterpret_cast<const char*>(words.asBytes().begin()),
                           words.asBytes().size()));
  }

  // Audit entries of several kinds ('0' prefix) and a signed tree head ('1').
  {
    ethics::Entry e;
    e.sequence = 7;
    e.timestampMs = 1'700'000'000'000;
    e.kind = ethics::EntryKind::kQuery;
    ethics::QueryEvent q;
    q.coordinator = coordinator.pub;
    q.study = "LUNG-7";
    q.allowed = true;
    e.body = q;
    write("audit_entry", "query", "0", *ethics::encodeEntry(e));
    e.kind = ethics::EntryKind::kNodeStart;
    e.body = ethics::NodeEvent{"started"};
    write("audit_entry", "node_start", "0", *ethics::encodeEntry(e));
    e.kind = ethics::EntryKind::kApprovalReceived;
    e.body = ethics::ApprovalEvent{"LUNG-7", 3, {}, "lead committee"};
    write("audit_entry", "approval", "0", *ethics::encodeEntry(e));
    ethics::BudgetChargeEvent b;
    b.coordinator = coordinator.pub;
    b.study = "LUNG-7";
    b.protocolVersion = 3;
    b.epsilon = 0.5;
    b.spent = 1.5;
    b.budget = 4;
    b.charged = true;
    e.kind = ethics::EntryKind::kPrivacyBudgetCharged;
    e.body = b;
    if (auto enc = ethics::encodeEntry(e); enc.isOk()) write("audit_entry", "budget", "0", *enc);
    ethics::Hash root{};
    root[0] = 1;
    write("audit_entry", "tree_head", "1",
          ethics::encodeTreeHead(ethics::signTreeHead(siteA, 8, e.timestampMs, root)));
  }

  // Approvals: TOML ('0'), signed approval ('1'), signed statement ('2').
  {
    ethics::Approval a;
    a.study = "LUNG-7";
    a.protocolVersion = 3;
    a.leadCommittee = {"west-china-irb", committee.pub};
    a.sites = {"site-a", "site-b", "site-c"};
    a.coordinators = {coordinator.pub};
    a.variables = {"age", "arm", "sex"};
    a.analyses = {"count", "mean"};
    a.minCellSize = 5;
    a.validFrom = *ethics::parseDate("2026-01-01");
    a.validUntil = *ethics::parseDate("2027-01-01");
    a.queryBudget = 100;
    ethics::canonicalise(a);
    write("approval", "approval.toml", "0", ethics::approvalToToml(a));
    a.aggregation = ethics::AggregationMode::kSecureDp;
    a.dpEpsilonPerQuery = 0.5;
    a.dpBudget = 4;
    a.timeBin = 7;
    write("approval", "approval_dp.toml", "0", ethics::approvalToToml(a));
    auto signedApproval = ethics::signApproval(a, committee);
    if (signedApproval.isOk())
      write("approval", "signed_approval", "1", ethics::encodeSignedApproval(*signedApproval));
    ethics::Statement s;
    s.kind = ethics::StatementKind::kSuspension;
    s.study = "LUNG-7";
    s.protocolVersion = 3;
    s.effective = a.validFrom;
    s.reason = "adverse event review";
    write("approval", "statement", "2",
          ethics::encodeSignedStatement(ethics::signStatement(s, committee)));
  }

  // Members ('1') and node config ('0') with real keys.
  {
    std::string members = "federation = \"sichuan-chongqing-lung\"\n";
    auto member = [&](const char* name, const char* role, const crypto::Identity& id,
                      const char* extra) {
      members += std::string("\n[[member]]\nname = \"") + name + "\"\nrole = \"" + role +
                 "\"\npublic_key = \"" + id.pub.toText() + "\"\n" + extra;
    };
    member("west-china", "site", siteA, "address = \"127.0.0.1:7401\"\nstudies = [\"LUNG-7\"]\n");
    member("chongqing", "site", siteB, "address = \"[::1]:7402\"\n");
    member("coord", "coordinator", coordinator, "");
    member("irb", "ethics-board", committee, "");
    write("node_config", "members.toml", "1", members);
  }
  return 0;
}
