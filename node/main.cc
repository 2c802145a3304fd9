// trialmesh-node: a federation site node. Usage: trialmesh-node --config node.toml
// Every config key: docs/deployment.md.
#include <cstdio>
#include <cstring>
#include <string>

#include "common/allocator.h"
#include "node/config.h"
#include "node/site.h"

namespace {

constexpr const char* kUsage =
    "usage: trialmesh-node --config node.toml\n"
    "       trialmesh-node --check-config node.toml   (validate and exit)\n"
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
  trialmesh::retainFreedMemoryForReuse();
  auto config = trialmesh::node::loadNodeConfig(argv[2]);
  if (!config) {
    std::fprintf(stderr, "trialmesh-node: %s\n", config.status().message().c_str());
    return 1;
  }
  if (std::strcmp(argv[1], "--check-config") == 0) {
    auto members = trialmesh::node::loadMembers(config->membersPath);
    if (!members) {
      std::fprintf(stderr, "trialmesh-node: %s\n", members.status().message().c_str());
      return 1;
    }
    std::printf("%s: OK\n", argv[2]);
    return 0;
  }
  return trialmesh::node::runSiteNode(*config);
}
