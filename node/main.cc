// trialmesh-node: a federation site node. Usage: trialmesh-node --config node.toml
// Every config key: docs/deployment.md.
#include <sys/stat.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "common/allocator.h"
#include "node/check_config.h"
#include "node/config.h"
#include "node/site.h"

namespace {

constexpr const char* kUsage =
    "usage: trialmesh-node --config node.toml\n"
    "       trialmesh-node --check-config node.toml   (every start-up check, then exit)\n"
    "Runs a trialmesh site node until SIGTERM or SIGINT. Exit status: 0 after a clean\n"
    "shutdown, 1 when the node cannot start (reason on stderr and in the log), 2 bad usage.\n"
    "Configuration keys and defaults: docs/deployment.md.\n";

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && (std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0)) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (argc == 2 && std::strcmp(argv[1], "--version") == 0) {
    std::puts("trialmesh-node 0.1.0");
    return 0;
  }
  if (argc != 3 ||
      (std::strcmp(argv[1], "--config") != 0 && std::strcmp(argv[1], "--check-config") != 0)) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  // Store, audit log and approvals hold patient-derived data: private to the service user.
  ::umask(077);
  trialmesh::retainFreedMemoryForReuse();
  auto config = trialmesh::node::loadNodeConfig(argv[2]);
  if (!config) {
    std::fprintf(stderr, "trialmesh-node: %s\n", config.status().message().c_str());
    return 1;
  }
  if (std::strcmp(argv[1], "--check-config") == 0) {
    // Every start-up check, without writing or holding the store or a port (node/check_config.h).
    auto passed = trialmesh::node::checkNodeConfig(*config);
    if (!passed) {
      std::fprintf(stderr, "trialmesh-node: %s\n", passed.status().message().c_str());
      return 1;
    }
    for (const auto& line : *passed) std::printf("  ok: %s\n", line.c_str());
    std::printf("%s: OK\n", argv[2]);
    return 0;
  }
  return trialmesh::node::runSiteNode(*config);
}
