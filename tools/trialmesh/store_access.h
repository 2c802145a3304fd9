// How CLI commands reach a site store that a running node may hold (docs/deployment.md,
// "Live operations"): reads open the store read-only beside the node; writes go through the
// node's admin socket (node/admin_protocol.h).
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "common/status.h"
#include "storage/store.h"

namespace trialmesh::cli {

// Opens `dir` for reading. When a node holds the store (its RocksDB LOCK), opens it read-only
// instead, which sees the store as of this call (a later import is not seen).
Result<std::unique_ptr<storage::Store>> openStoreForReading(const std::string& dir);

// The admin socket to use for a write to `storeDir`: `viaNode` if given; otherwise, when a
// node holds the store (`lockStatus` is the Unavailable error of opening it), the socket the
// node advertised in <storeDir>/admin-socket. The error says what to do when there is none.
Result<std::string> adminSocketFor(const std::string& storeDir, const Status& lockStatus);

}  // namespace trialmesh::cli
