// `trialmesh-node --check-config`: every check the node makes at start-up, without writing,
// without taking the store's lock and without holding a port (each address is bound and
// released at once), so it also runs beside a node serving the same config.
#pragma once

#include <string>
#include <vector>

#include "common/status.h"
#include "node/config.h"

namespace trialmesh::node {

// The identity key's passphrase as the node reads it: the first line of
// identity_passphrase_file, else $TRIALMESH_PASSPHRASE (FailedPrecondition naming both).
Result<std::string> readIdentityPassphrase(const NodeConfig& config);

// data_dir holds patient rows: PermissionDenied, with the chmod that fixes it, when other local
// users may read or enter it (any "other" permission bit).
Status checkDataDirPrivate(const std::string& dataDir, const std::string& configPath);

// Runs the checks in start-up order and stops at the first failure (its message names the file
// and key, as the node would at start): log_level and log_file's directory; the members file,
// this site's membership and role; the identity (file mode, passphrase) and that its public key
// is the one the members file lists; data_dir exists, is private and writable by this user, the
// store opens and every [[dataset]] exists with a readable dictionary; listen and ops_listen can be
// bound. On success returns one line per check passed, for the operator.
Result<std::vector<std::string>> checkNodeConfig(const NodeConfig& config);

}  // namespace trialmesh::node
