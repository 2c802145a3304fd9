#include "node/admin_ops.h"

#include <unistd.h>

#include "node/admin_protocol.h"
#include "node/backup.h"
#include "storage/dictionary.h"

namespace trialmesh::node {
namespace {

using nlohmann::json;

Result<std::string> stringField(const json& request, const char* key) {
  if (!request.contains(key) || !request[key].is_string()) {
    return Status::invalidArgument(std::string("admin request '") + request.value("op", "") +
                                   "': field '" + key + "' (a string) is missing");
  }
  return request[key].get<std::string>();
}

json datasetJson(const storage::DatasetInfo& d) {
  return {{"name", d.name},
          {"study", d.study},
          {"version", d.version},
          {"rows", d.rows},
          {"dictionary_hash", d.dictionaryHash},
          {"source_file", d.sourceFile},
          {"imported_at_unix", d.importedAtUnixSeconds}};
}

Result<json> liveImport(const AdminContext& ctx, const json& request, int fd, AdminReply& reply) {
  // Owns `fd` from here: closed on every early return, else passed to the import.
  struct FdGuard {
    int fd;
    ~FdGuard() {
      if (fd >= 0) ::close(fd);
    }
  } guard{fd};
  TM_ASSIGN_OR_RETURN(std::string dataset, stringField(request, "dataset"));
  TM_ASSIGN_OR_RETURN(std::string csvPath, stringField(request, "csv_path"));
  TM_ASSIGN_OR_RETURN(std::string dictToml, stringField(request, "dictionary_toml"));
  TM_ASSIGN_OR_RETURN(std::string dictPath, stringField(request, "dictionary_path"));
  if (fd < 0) {
    return Status::invalidArgument("admin import of '" + csvPath +
                                   "': the CSV file was not passed with the request");
  }
  TM_ASSIGN_OR_RETURN(storage::Dictionary dict, storage::Dictionary::parseToml(dictToml, dictPath));
  auto bound = ctx.boundDictionaries.find(dataset);
  if (bound != ctx.boundDictionaries.end() && bound->second != dict.hashHex()) {
    return Status::failedPrecondition(
        dictPath + " (hash " + dict.hashHex().substr(0, 16) +
        ") is not the dictionary this node "
        "serves dataset '" +
        dataset + "' with (hash " + bound->second.substr(0, 16) +
        "), and approvals were checked against that one; to change the data model, stop the "
        "node, import offline and start it again");
  }
  storage::ImportOptions options;
  options.maxErrors = request.value("max_errors", size_t{20});
  TM_ASSIGN_OR_RETURN(options.csv.delimiter,
                      storage::parseCsvDelimiter(request.value("delimiter", ",")));
  TM_ASSIGN_OR_RETURN(options.csv.encoding,
                      storage::parseCsvEncoding(request.value("encoding", "utf-8")));
  const std::string dup = request.value("duplicate_ids", "error");
  if (dup != "error" && dup != "warn") {
    return Status::invalidArgument("duplicate_ids must be 'error' or 'warn', not '" + dup + "'");
  }
  options.duplicateIds = dup == "warn" ? storage::ImportOptions::DuplicateIds::kWarn
                                       : storage::ImportOptions::DuplicateIds::kError;
  options.progress = [&reply](uint64_t done, uint64_t total) { reply.progress(done, total); };
  auto before = ctx.store->datasetInfo(dataset);
  options.inputFd = guard.fd;
  guard.fd = -1;
  TM_ASSIGN_OR_RETURN(storage::ImportReport report,
                      ctx.store->importCsv(dataset, dict, csvPath, options));
  // The audit log says which data answered which later query: the new version is a
  // configuration change of this site.
  ethics::ConfigChangeEvent event;
  event.setting = "dataset " + dataset;
  event.oldValue = before ? "version " + std::to_string(before->version) + " (" +
                                std::to_string(before->rows) + " rows)"
                          : "none";
  event.newValue = "version " + std::to_string(report.version) + " (" +
                   std::to_string(report.rows) + " rows from " + csvPath + ", dictionary " +
                   dict.hashHex().substr(0, 16) + ")";
  if (ctx.audit != nullptr) {
    auto logged = ctx.audit->append(ethics::EntryKind::kConfigChange, std::move(event));
    if (!logged) {
      return logged.status().withContext("dataset '" + dataset + "' version " +
                                         std::to_string(report.version) +
                                         " was imported but the audit log entry failed");
    }
  }
  return json{{"rows", report.rows},
              {"version", report.version},
              {"seconds", report.seconds},
              {"duplicate_ids", report.duplicateIds},
              {"warnings", report.warnings}};
}

}  // namespace

AdminHandler makeAdminHandler(AdminContext context) {
  auto ctx = std::make_shared<const AdminContext>(std::move(context));
  return [ctx](const json& request, int fd, AdminReply& reply) -> Result<json> {
    const std::string op = request.value("op", "");
    if (op == "import") return liveImport(*ctx, request, fd, reply);
    if (fd >= 0) ::close(fd);
    if (op == "status") {
      return json{{"node", ctx->nodeName}, {"store", ctx->store->directory()}};
    }
    if (op == "datasets") {
      TM_ASSIGN_OR_RETURN(auto list, ctx->store->listDatasets());
      json out = json::array();
      for (const auto& d : list) out.push_back(datasetJson(d));
      return json{{"datasets", out}};
    }
    if (op == "backup") {
      TM_ASSIGN_OR_RETURN(std::string to, stringField(request, "to"));
      BackupSources src;
      src.nodeName = ctx->nodeName;
      src.store = ctx->store.get();
      src.audit = ctx->audit;
      src.approvals = ctx->approvals;
      src.ledger = ctx->ledger ? ctx->ledger() : nullptr;
      src.peerHeadsDir = ctx->peerHeadsDir;
      return writeBackup(src, to);
    }
    return Status::invalidArgument("unknown admin request '" + op +
                                   "' (this node serves import, datasets, backup, status)");
  };
}

}  // namespace trialmesh::node
