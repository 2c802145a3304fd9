#include "node/backup.h"

#include <filesystem>
#include <fstream>
#include <system_error>

#include "crypto/hash.h"

namespace trialmesh::node {
namespace fs = std::filesystem;
namespace {

constexpr const char* kManifest = "MANIFEST.json";

Status ioFailure(const std::string& what, const std::error_code& ec) {
  return Status::ioError(what + ": " + ec.message());
}

Status writeFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.flush();
  if (!out) return Status::ioError("cannot write " + path);
  return Status::ok();
}

// Copies `from` (a directory tree) into `to` (created), files 0600 and directories 0700: the
// copies hold patient rows and the audit log.
Status copyTreePrivate(const fs::path& from, const fs::path& to) {
  std::error_code ec;
  fs::create_directories(to, ec);
  if (ec) return ioFailure("cannot create " + to.string(), ec);
  fs::permissions(to, fs::perms::owner_all, fs::perm_options::replace, ec);
  for (auto it = fs::recursive_directory_iterator(from, ec); !ec && it != fs::end(it);
       it.increment(ec)) {
    const fs::path rel = fs::relative(it->path(), from);
    const fs::path dst = to / rel;
    if (it->is_directory()) {
      fs::create_directories(dst, ec);
      if (!ec) fs::permissions(dst, fs::perms::owner_all, fs::perm_options::replace, ec);
    } else {
      fs::copy_file(it->path(), dst, fs::copy_options::overwrite_existing, ec);
      if (!ec) {
        fs::permissions(dst, fs::perms::owner_read | fs::perms::owner_write,
                        fs::perm_options::replace, ec);
      }
    }
    if (ec) return ioFailure("cannot copy " + it->path().string() + " to " + dst.string(), ec);
  }
  if (ec) return ioFailure("cannot read " + from.string(), ec);
  return Status::ok();
}

Result<nlohmann::json> readManifest(const std::string& dir) {
  const std::string path = dir + "/" + kManifest;
  std::ifstream in(path);
  if (!in) {
    return Status::notFound(path + " does not exist: " + dir +
                            " is not a trialmesh backup (or the backup was not completed)");
  }
  nlohmann::json m = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (m.is_discarded() || !m.is_object() || m.value("format", "") != kBackupFormat ||
      !m.contains("audit_tree_head") || !m["audit_tree_head"].is_string() ||
      !m.contains("datasets") || !m["datasets"].is_array()) {
    return Status::corruption(path + " is not a " + std::string(kBackupFormat) +
                              " manifest (unreadable JSON, another format, or a missing "
                              "audit_tree_head/datasets)");
  }
  return m;
}

}  // namespace

Result<nlohmann::json> writeBackup(const BackupSources& src, const std::string& targetDir) {
  if (src.store == nullptr || src.audit == nullptr || src.approvals == nullptr) {
    return Status::internal("writeBackup: store, audit log and approval store are required");
  }
  const fs::path target(targetDir);
  if (!target.is_absolute()) {
    return Status::invalidArgument("backup target '" + targetDir +
                                   "' must be an absolute path (the node writes it)");
  }
  std::error_code ec;
  if (fs::exists(target, ec)) {
    return Status::alreadyExists("backup target " + targetDir +
                                 " already exists; give a new directory (one per backup)");
  }
  if (!fs::is_directory(target.parent_path(), ec)) {
    return Status::notFound("the parent directory of backup target " + targetDir +
                            " does not exist");
  }
  const fs::path partial = targetDir + ".partial";
  fs::remove_all(partial, ec);  // a backup that was interrupted
  fs::create_directory(partial, ec);
  if (ec) return ioFailure("cannot create " + partial.string(), ec);
  fs::permissions(partial, fs::perms::owner_all, fs::perm_options::replace, ec);

  nlohmann::json datasets = nlohmann::json::array();
  bool hasLedger = false;
  // Everything but the log is copied while appends wait, so the parts agree with each other.
  auto alongside = [&]() -> Status {
    TM_RETURN_IF_ERROR(src.store->checkpoint((partial / "store").string()));
    TM_RETURN_IF_ERROR(src.approvals->checkpoint((partial / "ethics-approvals").string()));
    if (src.ledger != nullptr) {
      TM_RETURN_IF_ERROR(src.ledger->checkpoint((partial / "privacy-budget").string()));
      hasLedger = true;
    }
    std::error_code e;
    if (!src.peerHeadsDir.empty() && fs::is_directory(src.peerHeadsDir, e)) {
      TM_RETURN_IF_ERROR(copyTreePrivate(src.peerHeadsDir, partial / "ethics-peer-heads"));
    }
    return Status::ok();
  };
  auto head = src.audit->checkpoint((partial / "ethics-audit").string(), alongside);
  if (!head) {
    fs::remove_all(partial, ec);
    return head.status().withContext("backup to " + targetDir);
  }
  // The datasets as copied: read from the checkpoint itself, not from the live store.
  {
    storage::StoreOptions ro;
    ro.readOnly = true;
    ro.cacheBytes = 0;
    auto copy = storage::Store::open((partial / "store").string(), ro);
    if (!copy) return copy.status().withContext("backup to " + targetDir + ": the store copy");
    auto list = (*copy)->listDatasets();
    if (!list) return list.status();
    for (const auto& d : *list) {
      datasets.push_back({{"name", d.name}, {"version", d.version}, {"rows", d.rows}});
    }
  }
  const std::string sth = ethics::encodeTreeHead(*head);
  nlohmann::json manifest = {
      {"format", kBackupFormat},
      {"node", src.nodeName},
      {"created_at_unix_ms", head->timestampMs},
      {"audit_tree_head",
       crypto::toHex({reinterpret_cast<const uint8_t*>(sth.data()), sth.size()})},
      {"audit_size", head->treeSize},
      {"audit_root", crypto::toHex(head->root)},
      {"log_key", head->logKey.toText()},
      {"privacy_budget", hasLedger},
      {"datasets", datasets}};
  TM_RETURN_IF_ERROR(writeFile((partial / kManifest).string(), manifest.dump(2) + "\n"));
  fs::rename(partial, target, ec);
  if (ec) return ioFailure("cannot rename " + partial.string() + " to " + targetDir, ec);
  return manifest;
}

Status verifyBackupLayout(const std::string& storeDir, const std::string& auditDir,
                          const nlohmann::json& manifest) {
  auto sthBytes = crypto::fromHex(manifest["audit_tree_head"].get<std::string>());
  if (!sthBytes)
    return Status::corruption("manifest audit_tree_head: " + sthBytes.status().message());
  auto sth = ethics::decodeTreeHead(*sthBytes);
  if (!sth) return Status::corruption("manifest audit_tree_head: " + sth.status().message());
  // The full check: every entry decodes, carries its sequence number and the root stored with
  // it, and the last root is the one the node signed when the backup was taken.
  auto entries = ethics::AuditLog::readAllUnchecked(auditDir);
  if (!entries) return entries.status().withContext("audit log " + auditDir);
  Status verified = ethics::verifyLog(*entries, *sth, sth->logKey);
  if (!verified.isOk()) {
    return Status::corruption("audit log " + auditDir +
                              " does not verify against the signed "
                              "tree head in the manifest: " +
                              verified.message());
  }
  storage::StoreOptions ro;
  ro.readOnly = true;
  ro.cacheBytes = 0;
  auto store = storage::Store::open(storeDir, ro);
  if (!store) return store.status().withContext("store copy " + storeDir);
  for (const auto& d : manifest["datasets"]) {
    const std::string name = d.value("name", "");
    auto info = (*store)->datasetInfo(name);
    if (!info) return info.status().withContext("store copy " + storeDir);
    if (info->version != d.value("version", uint64_t{0}) ||
        info->rows != d.value("rows", uint64_t{0})) {
      return Status::corruption("store copy " + storeDir + ": dataset '" + name + "' is version " +
                                std::to_string(info->version) + " with " +
                                std::to_string(info->rows) + " rows; the manifest says version " +
                                d["version"].dump() + " with " + d["rows"].dump());
    }
    auto source = (*store)->openDataset(name);  // also checks the stored dictionary's hash
    if (!source) return source.status().withContext("store copy " + storeDir);
  }
  return Status::ok();
}

Result<nlohmann::json> restoreBackup(const RestoreOptions& o) {
  TM_ASSIGN_OR_RETURN(nlohmann::json manifest, readManifest(o.from));
  const fs::path from(o.from);
  TM_RETURN_IF_ERROR(
      verifyBackupLayout((from / "store").string(), (from / "ethics-audit").string(), manifest)
          .withContext("backup " + o.from));
  const fs::path target(o.dataDir);
  std::error_code ec;
  if (fs::exists(target, ec)) {
    if (!fs::is_directory(target, ec)) {
      return Status::failedPrecondition("restore target " + o.dataDir + " is not a directory");
    }
    if (!fs::is_empty(target, ec)) {
      if (!o.force) {
        return Status::failedPrecondition(
            "restore target " + o.dataDir +
            " is not empty; restore into an empty directory, or pass --force to replace its "
            "contents (the node must be stopped)");
      }
      // --force deletes: only what looks like a node's data directory, not a mistyped path.
      if (!fs::exists(target / "CURRENT", ec) && !fs::exists(target / "ethics-audit", ec)) {
        return Status::failedPrecondition(
            "restore target " + o.dataDir +
            " does not look like a trialmesh data directory (no store, no ethics-audit); "
            "refusing to delete its contents even with --force");
      }
      // A node serving this directory holds the store's LOCK: never pull it from under it.
      storage::StoreOptions probe;
      probe.createIfMissing = false;
      probe.cacheBytes = 0;
      auto running = storage::Store::open(o.dataDir, probe);
      if (!running && running.status().code() == StatusCode::kUnavailable) {
        return Status::failedPrecondition("restore target " + o.dataDir +
                                          " is in use (a node holds its store); stop the node "
                                          "first");
      }
      running = Status::notFound("closed");  // release the LOCK before removing the files
      for (const auto& entry : fs::directory_iterator(target, ec)) {
        fs::remove_all(entry.path(), ec);
        if (ec) return ioFailure("cannot remove " + entry.path().string(), ec);
      }
    }
  }
  TM_RETURN_IF_ERROR(copyTreePrivate(from / "store", target));
  TM_RETURN_IF_ERROR(copyTreePrivate(from / "ethics-audit", target / "ethics-audit"));
  TM_RETURN_IF_ERROR(copyTreePrivate(from / "ethics-approvals", target / "ethics-approvals"));
  for (const char* optional : {"privacy-budget", "ethics-peer-heads"}) {
    if (fs::is_directory(from / optional, ec)) {
      TM_RETURN_IF_ERROR(copyTreePrivate(from / optional, target / optional));
    }
  }
  TM_RETURN_IF_ERROR(
      verifyBackupLayout(target.string(), (target / "ethics-audit").string(), manifest)
          .withContext("restored " + o.dataDir));
  return manifest;
}

}  // namespace trialmesh::node
