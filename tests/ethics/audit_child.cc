// Test helper for crash_test.cc: appends query entries to the audit log at argv[1] forever (or
// argv[2] times) and prints "appended <sequence>" after each append returns, so the parent
// knows which entries a client could have been told about.
#include <cstdio>
#include <string>

#include "ethics/audit_log.h"

int main(int argc, char** argv) {
  using namespace trialmesh::ethics;
  if (argc < 2) return 2;
  const long limit = argc > 2 ? std::stol(argv[2]) : -1;
  const trialmesh::crypto::Identity id = trialmesh::crypto::generateIdentity();
  auto log = AuditLog::open(argv[1], id);
  if (!log.isOk()) {
    std::fprintf(stderr, "%s\n", log.status().toString().c_str());
    return 1;
  }
  std::printf("opened %llu\n", static_cast<unsigned long long>((*log)->size()));
  std::fflush(stdout);
  for (long i = 0; limit < 0 || i < limit; ++i) {
    QueryEvent q;
    q.study = "LUNG-7";
    q.allowed = true;
    q.reason = "approval LUNG-7 v3";
    auto e = (*log)->append(EntryKind::kQuery, q);
    if (!e.isOk()) {
      std::fprintf(stderr, "%s\n", e.status().toString().c_str());
      return 1;
    }
    std::printf("appended %llu\n", static_cast<unsigned long long>(e->sequence));
    std::fflush(stdout);
  }
  return 0;
}
