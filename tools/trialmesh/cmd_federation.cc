// Federation commands: keygen, the federated query, the federation demo.
#include "tools/trialmesh/federation_commands.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "crypto/identity.h"
#include "node/config.h"
#include "node/coordinator.h"
#include "node/local_federation.h"
#include "node/model_runner.h"
#include "query/cross_test.h"
#include "query/format.h"
#include "query/stratified_km.h"
#include "query/surveil.h"
#include "tools/plot/plot.h"
#include "tools/trialmesh/cli_status.h"
#include "tools/trialmesh/model_commands.h"
#include "tools/trialmesh/passphrase.h"

namespace trialmesh::cli {
namespace {

constexpr int kExitFailed = 1;
constexpr int kExitPartial = 3;

void printSites(const node::FederatedResult& r, FILE* out) {
  std::fprintf(out, "\nSites (%zu of %zu answered%s):\n", r.answered(), r.sites.size(),
               r.partial() ? "; PARTIAL RESULT" : "");
  const bool secure = r.aggregation != ethics::AggregationMode::kPlain;
  for (const auto& s : r.sites) {
    if (s.outcome == node::SiteOutcomeKind::kAnswered && secure) {
      std::fprintf(out, "  %-20s answered     masked vector, %.1f ms\n", s.site.c_str(),
                   s.elapsedMs);
    } else if (s.outcome == node::SiteOutcomeKind::kAnswered) {
      std::fprintf(out, "  %-20s answered     %llu rows scanned, %.1f ms\n", s.site.c_str(),
                   static_cast<unsigned long long>(s.rowsScanned), s.elapsedMs);
    } else {
      std::fprintf(out, "  %-20s %-12s %s\n", s.site.c_str(), node::outcomeName(s.outcome),
                   s.reason.c_str());
    }
  }
}

// "Aggregation: secure (approval LUNG-7 v1), 2 rounds; dropped: s03"
std::string aggregationLine(const node::FederatedResult& r) {
  std::string line = std::string("Aggregation: ") + ethics::aggregationModeName(r.aggregation);
  if (!r.approval.empty()) line += " (approval " + r.approval + ")";
  if (r.rounds > 1) line += ", " + std::to_string(r.rounds) + " rounds";
  if (!r.dropped.empty()) {
    line += "; dropped:";
    for (const auto& d : r.dropped) line += " " + d;
  }
  return line;
}

}  // namespace

int runFederatedQueryCommand(const FederatedQueryArgs& a) {
  if (a.study.empty() || a.members.empty() || a.identity.empty()) {
    return fail(Status::invalidArgument(
        "a federated query needs --study S --members members.toml --identity coordinator.key"));
  }
  if (a.deadlineMs <= 0) return fail(Status::invalidArgument("--deadline-ms must be positive"));
  auto members = node::loadMembers(a.members);
  if (!members) return fail(members.status());
  auto identity = crypto::loadIdentity(a.identity, passphraseProvider(a.passphraseFile));
  if (!identity) return fail(identity.status().withContext(a.identity));
  const node::Member* me = members->findByKey(identity->pub);
  if (me == nullptr || me->role != node::Role::kCoordinator) {
    return fail(Status::permissionDenied(a.identity + " (" + identity->pub.toText() +
                                         ") is not a coordinator in " + a.members +
                                         "; sites refuse queries from anyone else"));
  }
  if (isModelQuery(a.text)) {
    return runFederatedModel(a.text, *identity, *members, a.study, a.deadlineMs, a.json, a.csv,
                             a.plot);
  }
  if (isQuantileQueryText(a.text)) {
    return runFederatedQuantile(a.text, *identity, *members, a.study, a.deadlineMs, a.json, a.csv);
  }
  // surveil(...): the federation runs its count query; detection runs here on the pooled,
  // released series (query/surveil.h).
  auto surveil = query::parseSurveil(a.text);
  if (!surveil) return fail(surveil.status());
  // chisq(a, b) / fisher(a, b): likewise the count by a, b, tested here (query/cross_test.h).
  auto cross = query::parseCrossTest(a.text);
  if (!cross) return fail(cross.status());
  // km(..., strata = s) by g: the curves, then the km by g and s for the stratified test
  // (query/stratified_km.h), each an ordinary federated query.
  auto stratified = query::parseStratifiedKm(a.text);
  if (!stratified) return fail(stratified.status());
  node::FederatedQueryOptions options;
  options.deadline = std::chrono::milliseconds(a.deadlineMs);
  auto result = node::runFederatedQuery(*identity, *members, a.study,
                                        *surveil      ? (*surveil)->countQuery
                                        : *cross      ? (*cross)->countQuery
                                        : *stratified ? (*stratified)->curveQuery
                                                      : a.text,
                                        options);
  if (!result) return fail(result.status());
  if (*stratified && result->table) {
    auto strata =
        node::runFederatedQuery(*identity, *members, a.study, (*stratified)->strataQuery, options);
    if (!strata) return fail(strata.status());
    if (Status st = node::applyStratifiedKmResult(*result, *strata, **stratified); !st.isOk())
      return fail(st);
  }
  if (*surveil && result->table) {
    auto detected = query::applySurveil(*result->table, **surveil);
    if (!detected) return fail(detected.status());
    result->table = std::move(*detected);
  }
  if (*cross && result->table) {
    auto tested = query::applyCrossTest(*result->table, **cross);
    if (!tested) return fail(tested.status());
    result->table = std::move(*tested);
  }
  if (a.json) {
    // ordered_json: keys in the documented order (docs/json-output.md), as the local path.
    nlohmann::ordered_json sites = nlohmann::ordered_json::array();
    for (const auto& s : result->sites) {
      sites.push_back({{"site", s.site},
                       {"outcome", node::outcomeName(s.outcome)},
                       {"reason", s.reason},
                       {"rows_scanned", s.rowsScanned},
                       {"elapsed_ms", s.elapsedMs}});
    }
    nlohmann::ordered_json out;
    out["query"] = result->canonicalQuery;
    out["study"] = a.study;
    out["partial"] = result->partial();
    out["aggregation"] = ethics::aggregationModeName(result->aggregation);
    out["approval"] = result->approval;
    out["rounds"] = result->rounds;
    out["dropped"] = result->dropped;
    out["refusal"] = result->refusal;
    out["sites"] = sites;
    out["result"] = result->table ? nlohmann::ordered_json::parse(query::formatJson(*result->table))
                                  : nlohmann::ordered_json(nullptr);
    std::printf("%s\n", out.dump(2).c_str());
  } else if (a.csv) {
    if (result->table) std::fputs(query::formatCsv(*result->table).c_str(), stdout);
    std::fprintf(stderr, "\n%s\n", aggregationLine(*result).c_str());
    printSites(*result, stderr);
  } else {
    std::printf("Study %s: %s\n\n", a.study.c_str(), result->canonicalQuery.c_str());
    if (result->table) {
      std::fputs(query::formatTable(*result->table).c_str(), stdout);
    } else if (!result->refusal.empty()) {
      std::printf("(no result: %s)\n", result->refusal.c_str());
    } else {
      std::printf("(no site answered; no result)\n");
    }
    std::printf("\n%s\n", aggregationLine(*result).c_str());
    printSites(*result, stdout);
  }
  if (result->answered() == 0 || !result->table) return kExitFailed;
  if (!a.plot.empty()) {
    if (Status st = plot::plotTable(*result->table,
                                    "Study " + a.study + ": " + result->canonicalQuery, a.plot);
        !st.isOk())
      return fail(st);
    std::fprintf(stderr, "plot written to %s\n", a.plot.c_str());
  }
  return result->partial() ? kExitPartial : 0;
}

int runFederationDemo(const FederationDemoArgs& a) {
  namespace fs = std::filesystem;
  std::string dir = a.workdir;
  bool removeDir = false;
  if (dir.empty()) {
    std::string tmpl = (fs::temp_directory_path() / "trialmesh-federation-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) {
      return fail(Status::ioError("cannot create a temporary directory in " +
                                  fs::temp_directory_path().string()));
    }
    dir = tmpl;
    removeDir = !a.keep;
  }
  std::printf("Setting up a %u-site federation on 127.0.0.1 in %s\n", a.sites, dir.c_str());
  std::printf("  generating %llu subjects of study LUNG-7, split across the sites; fresh keys\n",
              static_cast<unsigned long long>(a.rows));
  node::LocalFederationOptions options;
  options.directory = dir;
  options.sites = a.sites;
  options.rows = a.rows;
  options.seed = a.seed;
  int status = 0;
  {
    auto fed = node::LocalFederation::create(options);
    if (!fed) return fail(fed.status());
    for (size_t i = 0; i < (*fed)->siteCount(); ++i) {
      std::printf("  %s: %s (log %s)\n", (*fed)->siteName(i).c_str(),
                  (*fed)->members().findByName((*fed)->siteName(i))->address.c_str(),
                  (*fed)->siteLogPath(i).c_str());
    }
    std::printf("Starting %zu trialmesh-node processes...\n", (*fed)->siteCount());
    Status started = (*fed)->start();
    if (!started.isOk()) {
      (*fed)->stop();
      return fail(started);
    }
    std::printf("All sites ready. Running a federated query as the coordinator:\n\n");
    FederatedQueryArgs q;
    q.text = a.query;
    q.study = node::LocalFederation::kStudy;
    q.members = (*fed)->membersPath();
    q.identity = (*fed)->coordinatorKeyPath();
    std::printf("$ trialmesh query --study %s --members %s --identity %s '%s'\n\n", q.study.c_str(),
                q.members.c_str(), q.identity.c_str(), q.text.c_str());
    std::fflush(stdout);
    status = runFederatedQueryCommand(q);
    std::printf("\nShutting the federation down (SIGTERM)...\n");
    std::vector<int> exits = (*fed)->stop();
    bool clean = true;
    for (int e : exits) clean = clean && e == 0;
    std::printf("  %zu nodes exited %s\n", exits.size(), clean ? "cleanly" : "WITH ERRORS");
    if (!clean && status == 0) status = kExitFailed;
  }
  if (removeDir) {
    std::error_code ec;
    fs::remove_all(dir, ec);
  } else {
    std::printf("Kept %s (members.toml, keys, node configs, logs)\n", dir.c_str());
  }
  return status;
}

void addFederationCommands(CLI::App& app, int& exitCode) {
  struct KeygenArgs {
    std::string out;
    std::string passphraseFile;
    bool force = false;
  };
  auto args = std::make_shared<KeygenArgs>();
  CLI::App* k = app.add_subcommand(
      "keygen",
      "Create an Ed25519 identity: NAME.key (secret, mode 0600) and NAME.key.pub, and print\n"
      "the public key to put in the federation's members file. Example:\n"
      "  trialmesh keygen --out west-china.key --passphrase-file pass.txt");
  k->add_option("--out", args->out, "Secret key file to write")->required();
  k->add_option("--passphrase-file", args->passphraseFile,
                "Encrypt the key with the passphrase in this file (first line)");
  k->add_flag("--force", args->force, "Replace existing key files");
  k->callback([args, &exitCode] {
    std::optional<std::string> passphrase;
    if (!args->passphraseFile.empty()) {
      auto p = readPassphraseFile(args->passphraseFile);
      if (!p) {
        exitCode = fail(p.status());
        return;
      }
      passphrase = *p;
    }
    crypto::Identity id = crypto::generateIdentity();
    crypto::KeyFileOptions options;
    options.overwrite = args->force;
    Status s = crypto::saveIdentity(
        args->out, id, passphrase ? std::optional<std::string_view>(*passphrase) : std::nullopt,
        options);
    if (!s.isOk()) {
      exitCode = fail(s);
      return;
    }
    std::printf("%s\n", id.pub.toText().c_str());
    std::fprintf(stderr, "wrote %s (secret, mode 0600) and %s.pub\n", args->out.c_str(),
                 args->out.c_str());
  });
}

}  // namespace trialmesh::cli
