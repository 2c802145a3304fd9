// The ethics board's view in `trialmesh console` (GET /api/board, docs/console.md): for every
// site of the members file, its audit log downloaded and verified (ethics::verifyLog against
// the site's key from the members file: green, or red with the reason), the approvals it holds
// with their state as its verified log records them (active, recognised, suspended, revoked),
// and a timeline of its entries with coordinator names, query texts, approvals and decisions.
//
// Sites allow these calls only to ethics-board members (and themselves): `identity` must be
// one. Thread-safety: may be called concurrently; each call opens its own connections.
#pragma once

#include <string>

#include "crypto/identity.h"
#include "node/config.h"

namespace trialmesh::console {

// The JSON of GET /api/board (docs/console.md). Never fails as a whole: a site that cannot be
// reached or whose log does not verify is reported as such, with the reason.
std::string boardJson(const crypto::Identity& identity, const node::Members& members,
                      size_t timelineEntries = 200);

}  // namespace trialmesh::console
