// The node's local admin channel (docs/deployment.md, "Admin socket"): a Unix domain socket on
// which the running node accepts requests from `trialmesh` on the same machine (live import,
// datasets, backup), so that the node stays the only writer of its store and audit log.
//
// Wire format, version 1: each message is a 4-byte big-endian length followed by that many
// bytes of UTF-8 JSON (a single object, at most kMaxAdminMessageBytes). The client sends one
// request {"v": 1, "op": ..., ...}; for an import it passes the opened CSV file with the
// request (SCM_RIGHTS), so the node reads the operator's file without needing access to its
// path. The node answers with any number of {"progress": [done, total]} messages and then
// exactly one final message: {"ok": true, "result": {...}} or {"ok": false, "code": "<status
// code name>", "message": "..."}; then it closes the connection. Access control is the socket
// file's mode (0660, owner = the service user): whoever may connect is a site administrator.
//
// Thread-safety: free functions on a file descriptor; no shared state.
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "common/status.h"

namespace trialmesh::node {

inline constexpr int kAdminProtocolVersion = 1;
inline constexpr uint32_t kMaxAdminMessageBytes = 1u << 20;

// Sends one message; with `passFd` >= 0, also passes that descriptor (SCM_RIGHTS).
Status sendAdminMessage(int socketFd, const nlohmann::json& message, int passFd = -1);

// A received message and the descriptor passed with it (-1 if none; the caller owns it).
struct AdminMessage {
  nlohmann::json body;
  int fd = -1;
};
// Reads one message. NotFound at a clean end of stream before any byte (the peer closed);
// InvalidArgument for an oversized or malformed message; IOError otherwise.
Result<AdminMessage> receiveAdminMessage(int socketFd);

// Connects to the socket at `path`. Unavailable (naming the path and what to check) when no
// node listens there or the caller may not connect.
Result<int> connectAdminSocket(const std::string& path);

// Client side of one request: sends `request` (with `passFd`, not closed here), calls
// `onProgress` for each progress message and returns the final result object, or the error the
// node reported as a Status with the node's code and message.
Result<nlohmann::json> callAdmin(const std::string& socketPath, const nlohmann::json& request,
                                 int passFd = -1,
                                 const std::function<void(uint64_t, uint64_t)>& onProgress = {});

// The status code names used on the wire ("InvalidArgument", ...) and back.
std::string statusCodeWireName(StatusCode code);
Status statusFromWire(const std::string& codeName, const std::string& message);

// The file a running node writes into its data_dir naming its admin socket, so that
// `trialmesh import --store DIR` finds the node that holds DIR's lock.
inline constexpr const char* kAdminSocketPointerFile = "admin-socket";
// The socket named by <storeDir>/admin-socket, if that file exists.
std::optional<std::string> adminSocketOfStore(const std::string& storeDir);

}  // namespace trialmesh::node
