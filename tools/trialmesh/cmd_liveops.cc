// Live operations on a running node: `trialmesh import` through the node (runImportViaNode),
// `trialmesh backup` and `trialmesh restore` (node/backup.h).
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "crypto/identity.h"
#include "node/admin_protocol.h"
#include "node/backup.h"
#include "node/check_config.h"
#include "node/config.h"
#include "tools/trialmesh/cli_status.h"
#include "tools/trialmesh/commands.h"
#include "tools/trialmesh/live_import.h"
#include "tools/trialmesh/progress.h"
#include "tools/trialmesh/store_access.h"

namespace trialmesh::cli {

Result<std::unique_ptr<storage::Store>> openStoreForReading(const std::string& dir) {
  storage::StoreOptions options;
  options.createIfMissing = false;
  auto store = storage::Store::open(dir, options);
  if (store || store.status().code() != StatusCode::kUnavailable) return store;
  options.readOnly = true;  // a node serves it: read beside it
  // The node may delete a table file (compaction, the end of an import) between our reading
  // of its MANIFEST and opening the file; the next attempt reads the new MANIFEST. Once open,
  // every table file is held open, so reads need no retry.
  for (int attempt = 1;; ++attempt) {
    store = storage::Store::open(dir, options);
    if (store || attempt == 40 ||
        (store.status().code() != StatusCode::kCorruption &&
         store.status().code() != StatusCode::kIOError)) {
      return store;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
}

Result<std::string> adminSocketFor(const std::string& storeDir, const Status& lockStatus) {
  if (auto advertised = node::adminSocketOfStore(storeDir)) return *advertised;
  return Status::unavailable(lockStatus.message() + ". No admin socket is advertised in " +
                             storeDir +
                             "/admin-socket: if a trialmesh-node serves this store, pass its "
                             "admin_socket with --via-node SOCKET");
}

int runImportViaNode(const std::string& socket, const LiveImportRequest& r) {
  // The dictionary is checked here first, with the same messages as an offline import.
  auto dict = storage::Dictionary::loadFile(r.dictionary);
  if (!dict) return fail(dict.status());
  std::ifstream dictIn(r.dictionary, std::ios::binary);
  std::stringstream dictText;
  dictText << dictIn.rdbuf();
  // The node reads the file through this descriptor: it needs no access to the path.
  int fd = ::open(r.csv.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return fail(Status::notFound(
        fmt::format("cannot open CSV file '{}': {}", r.csv, std::strerror(errno))));
  }
  nlohmann::json request = {{"v", node::kAdminProtocolVersion},
                            {"op", "import"},
                            {"dataset", r.dataset},
                            {"csv_path", r.csv},
                            {"dictionary_path", r.dictionary},
                            {"dictionary_toml", dictText.str()},
                            {"max_errors", r.maxErrors},
                            {"delimiter", r.delimiter},
                            {"encoding", r.encoding},
                            {"duplicate_ids", r.duplicateIds}};
  std::fprintf(stderr, "importing through the running node (admin socket %s)\n", socket.c_str());
  ProgressBar bar("importing " + std::filesystem::path(r.csv).filename().string());
  auto result = node::callAdmin(socket, request, fd,
                                [&bar](uint64_t done, uint64_t total) { bar.update(done, total); });
  ::close(fd);
  bar.finish();
  if (!result) return fail(result.status());
  const nlohmann::json& rep = *result;
  for (const auto& w : rep.value("warnings", nlohmann::json::array())) {
    std::fprintf(stderr, "warning: %s\n", w.get<std::string>().c_str());
  }
  const uint64_t dups = rep.value("duplicate_ids", uint64_t{0});
  const uint64_t shown = rep.value("warnings", nlohmann::json::array()).size();
  if (dups > shown) {
    std::fprintf(stderr, "warning: ... and %llu more repeated subject ids\n",
                 static_cast<unsigned long long>(dups - shown));
  }
  const uint64_t rows = rep.value("rows", uint64_t{0});
  const double seconds = rep.value("seconds", 0.0);
  std::printf("imported %llu rows into dataset '%s' (version %llu) in %.2f s (%.0f rows/s)\n",
              static_cast<unsigned long long>(rows), r.dataset.c_str(),
              static_cast<unsigned long long>(rep.value("version", uint64_t{0})), seconds,
              seconds > 0 ? static_cast<double>(rows) / seconds : 0.0);
  return 0;
}

namespace {

struct BackupArgs {
  std::string to;
  std::string config;
  std::string viaNode;
};

void printManifest(const nlohmann::json& m, const std::string& dir) {
  std::printf("backup %s of node '%s': audit log of %llu entries, root %s\n", dir.c_str(),
              m.value("node", "").c_str(),
              static_cast<unsigned long long>(m.value("audit_size", uint64_t{0})),
              m.value("audit_root", "").c_str());
  for (const auto& d : m["datasets"]) {
    std::printf("  dataset %s version %llu, %llu rows\n", d.value("name", "").c_str(),
                static_cast<unsigned long long>(d.value("version", uint64_t{0})),
                static_cast<unsigned long long>(d.value("rows", uint64_t{0})));
  }
}

int runBackup(const BackupArgs& a) {
  ::umask(077);
  std::error_code ec;
  const std::string to = std::filesystem::absolute(a.to, ec).lexically_normal().string();
  std::string socket = a.viaNode;
  std::optional<node::NodeConfig> config;
  if (socket.empty()) {
    auto loaded = node::loadNodeConfig(a.config);
    if (!loaded) return fail(loaded.status());
    config = std::move(*loaded);
    socket = config->adminSocket;
  }
  nlohmann::json request = {{"v", node::kAdminProtocolVersion}, {"op", "backup"}, {"to", to}};
  if (!socket.empty()) {
    auto viaNode = node::callAdmin(socket, request);
    if (viaNode) {
      printManifest(*viaNode, to);
      return 0;
    }
    // Unavailable: no node listens there (stopped); anything else is the node's answer.
    if (viaNode.status().code() != StatusCode::kUnavailable || !config) {
      return fail(viaNode.status());
    }
  }
  // Offline: the node is stopped, so this process may open its databases.
  storage::StoreOptions so;
  so.createIfMissing = false;
  auto store = storage::Store::open(config->dataDir, so);
  if (!store) {
    return fail(store.status().withContext("offline backup (no node answered on admin_socket " +
                                           socket + ")"));
  }
  auto identity = crypto::loadIdentity(
      config->identityPath, [&config]() { return node::readIdentityPassphrase(*config); });
  if (!identity) return fail(identity.status().withContext(config->identityPath));
  auto approvals = ethics::ApprovalStore::open(config->ethics.approvalsDir);
  if (!approvals) return fail(approvals.status().withContext(config->ethics.approvalsDir));
  ethics::AuditLogOptions ao;  // the full check at open, as the node does at start
  auto audit = ethics::AuditLog::open(config->ethics.auditDir, *identity, ao);
  if (!audit) return fail(audit.status().withContext(config->ethics.auditDir));
  std::unique_ptr<ethics::PrivacyBudgetLedger> ledger;
  if (std::filesystem::exists(config->dataDir + "/privacy-budget", ec)) {
    auto opened = ethics::PrivacyBudgetLedger::open(config->dataDir + "/privacy-budget");
    if (!opened) return fail(opened.status());
    ledger = std::move(*opened);
  }
  node::BackupSources src;
  src.nodeName = config->name;
  src.store = store->get();
  src.audit = audit->get();
  src.approvals = approvals->get();
  src.ledger = ledger.get();
  src.peerHeadsDir = config->dataDir + "/ethics-peer-heads";
  auto manifest = node::writeBackup(src, to);
  if (!manifest) return fail(manifest.status());
  printManifest(*manifest, to);
  return 0;
}

int runRestore(const node::RestoreOptions& o) {
  ::umask(077);
  auto manifest = node::restoreBackup(o);
  if (!manifest) return fail(manifest.status());
  std::printf("restored %s into %s; the audit log verifies (%llu entries, root %s)\n",
              o.from.c_str(), o.dataDir.c_str(),
              static_cast<unsigned long long>(manifest->value("audit_size", uint64_t{0})),
              manifest->value("audit_root", "").c_str());
  std::printf(
      "Peers that checked this site's log after the backup will report a fork when the node "
      "starts: tell the federation (docs/deployment.md, \"Backup and restore\").\n");
  return 0;
}

}  // namespace

void addLiveOpsCommands(CLI::App& app, int& exitCode) {
  auto b = std::make_shared<BackupArgs>();
  CLI::App* backup = app.add_subcommand(
      "backup",
      "Back up a site's store, approvals, privacy budget and audit log, consistent with each "
      "other, through the running node (or directly when the node is stopped)");
  backup->add_option("--to", b->to, "New backup directory (must not exist)")->required();
  auto* cfg = backup->add_option("--config", b->config,
                                 "The node's node.toml (admin_socket, or the data when stopped)");
  auto* via = backup->add_option("--via-node", b->viaNode, "The running node's admin socket");
  cfg->excludes(via);
  via->excludes(cfg);
  backup->callback([b, &exitCode] {
    if (b->config.empty() && b->viaNode.empty()) {
      exitCode =
          fail(Status::invalidArgument("backup: give --config node.toml or --via-node SOCKET"));
      return;
    }
    exitCode = runBackup(*b);
  });

  auto r = std::make_shared<node::RestoreOptions>();
  CLI::App* restore = app.add_subcommand(
      "restore",
      "Restore a backup into a data directory (the node stopped), verifying the audit log and "
      "the store against the backup's manifest");
  restore->add_option("--from", r->from, "Backup directory (written by trialmesh backup)")
      ->required()
      ->check(CLI::ExistingDirectory);
  restore->add_option("--data-dir", r->dataDir, "The node's data_dir to restore into")->required();
  restore->add_flag("--force", r->force, "Replace the contents of a non-empty --data-dir");
  restore->callback([r, &exitCode] { exitCode = runRestore(*r); });
}

}  // namespace trialmesh::cli
