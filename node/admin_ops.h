// The requests the node serves on its admin socket (node/admin_server.h): "import" (live
// import into the open store), "datasets" (the store's datasets), "backup" (node/backup.h) and
// "status". docs/deployment.md, "Admin socket", lists each request's fields.
//
// Thread-safety: the handler runs on admin connection threads; everything it touches (store,
// audit log, approval store, ledger) is internally synchronised.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "ethics/approval.h"
#include "ethics/audit_log.h"
#include "ethics/privacy_budget.h"
#include "node/admin_server.h"
#include "storage/store.h"

namespace trialmesh::node {

struct AdminContext {
  std::string nodeName;
  std::shared_ptr<storage::Store> store;
  ethics::AuditLog* audit = nullptr;
  const ethics::ApprovalStore* approvals = nullptr;
  // The secure-dp ledger if the node has one (opening it on demand), else null.
  std::function<const ethics::PrivacyBudgetLedger*()> ledger;
  std::string peerHeadsDir;
  // dataset -> hex hash of the dictionary the node checks approvals against (bound at start):
  // a live import must keep it, or every later query of the study would be refused.
  std::map<std::string, std::string> boundDictionaries;
};

AdminHandler makeAdminHandler(AdminContext context);

}  // namespace trialmesh::node
