// Backup and restore of a site's data directory (`trialmesh backup`, `trialmesh restore`;
// docs/deployment.md, "Backup and restore").
//
// A backup is a directory:
//   MANIFEST.json        format "trialmesh-backup/v1", node name, time, the audit log's signed
//                        tree head (hex of ethics::encodeTreeHead), its size and root, and the
//                        datasets (name, version, rows) of the store copy
//   store/               RocksDB checkpoint of the site store (data_dir)
//   ethics-audit/        RocksDB checkpoint of the audit log
//   ethics-approvals/    RocksDB checkpoint of the approval store
//   privacy-budget/      RocksDB checkpoint of the secure-dp ledger (only if the node has one)
//   ethics-peer-heads/   copy of the peer tree heads this site verified (if any)
// Every part is taken while no audit entry can be appended (AuditLog::checkpoint), so the log
// and the rest describe the same moment, and the signed head covers exactly the copied log.
// The directory is written as <dir>.partial and renamed when complete: a backup directory that
// exists is whole.
//
// Thread-safety: functions; the sources are thread-safe (the node keeps serving meanwhile).
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "common/status.h"
#include "ethics/approval.h"
#include "ethics/audit_log.h"
#include "ethics/privacy_budget.h"
#include "storage/store.h"

namespace trialmesh::node {

inline constexpr const char* kBackupFormat = "trialmesh-backup/v1";

struct BackupSources {
  std::string nodeName;
  storage::Store* store = nullptr;
  ethics::AuditLog* audit = nullptr;
  const ethics::ApprovalStore* approvals = nullptr;
  const ethics::PrivacyBudgetLedger* ledger = nullptr;  // null: the node has none
  std::string peerHeadsDir;                             // copied if it exists
};

// Writes a backup to `targetDir` (absolute; must not exist; its parent must). Returns the
// manifest. AlreadyExists / NotFound / IOError naming the path.
Result<nlohmann::json> writeBackup(const BackupSources& sources, const std::string& targetDir);

// The data directory layout a restore recreates (a node.toml with default audit_dir and
// approvals_dir reads it as is).
struct RestoreOptions {
  std::string from;     // a backup directory
  std::string dataDir;  // target; must be empty or absent unless `force`
  bool force = false;   // replace the contents of a non-empty dataDir
};

// Checks the backup (manifest, the audit log verified entry by entry against the signed head
// with ethics::verifyLog, the store openable with the manifest's datasets), copies it into
// options.dataDir (0700/0600), and checks the copy the same way. Returns the manifest.
// Errors name the file and what to do: FailedPrecondition for a non-empty target without
// force or a target a running node holds; Corruption for a backup that fails verification.
Result<nlohmann::json> restoreBackup(const RestoreOptions& options);

// Verifies the backup (or restored data directory `dir` with the manifest `manifest`) without
// changing it: the audit log against the manifest's head, the store against its datasets.
Status verifyBackupLayout(const std::string& storeDir, const std::string& auditDir,
                          const nlohmann::json& manifest);

}  // namespace trialmesh::node
