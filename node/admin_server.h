// The server side of the admin socket (wire format: node/admin_protocol.h; operator view:
// docs/deployment.md, "Admin socket"). One thread accepts connections; each connection gets a
// thread of its own (at most kMaxAdminConnections at once; more are answered
// ResourceExhausted), reads one request and hands it to the handler, which may send progress
// before its final answer. Nothing here is reachable from the network.
//
// Socket file: created with mode 0660 (owner and group of the service user); start() refuses a
// path whose directory others may write (someone else could replace the socket) and a path
// where another node is listening; a stale socket left by a killed node is replaced.
//
// Thread-safety: start/stop from one thread; the handler runs on connection threads,
// concurrently with itself and with the rest of the node.
#pragma once

#include <atomic>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "common/status.h"

namespace trialmesh::node {

inline constexpr size_t kMaxAdminConnections = 4;

// The checks start() makes on a socket path before binding (also run by --check-config): at
// most 107 bytes, in an existing directory that users other than its owner cannot write
// (unless it is sticky and owned by root or us).
Status checkAdminSocketPath(const std::string& path);

// What a handler uses to answer.
class AdminReply {
 public:
  explicit AdminReply(int fd) : fd_(fd) {}
  // A progress message; failures are ignored (a client that went away still lets the work
  // finish, e.g. an import commits even if the terminal was closed).
  void progress(uint64_t done, uint64_t total);
  int fd() const { return fd_; }

 private:
  int fd_;
};

// Handles one request: `request` is the client's JSON object (its "v" already checked), `fd`
// the descriptor passed with it or -1 (the handler owns it). Returns the result object, or the
// error sent back as {"ok": false, "code", "message"}.
using AdminHandler =
    std::function<Result<nlohmann::json>(const nlohmann::json& request, int fd, AdminReply&)>;

class AdminServer {
 public:
  AdminServer() = default;
  ~AdminServer();  // stop()
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  Status start(const std::string& path, AdminHandler handler);
  // Stops accepting, waits for running requests to finish (an import in progress completes),
  // and removes the socket file.
  void stop();
  const std::string& path() const { return path_; }

 private:
  void acceptLoop();
  void serve(int fd);

  std::string path_;
  AdminHandler handler_;
  int listenFd_ = -1;
  int wakeFds_[2] = {-1, -1};
  std::thread acceptor_;
  std::mutex mu_;
  struct Worker {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  std::list<Worker> workers_;  // finished ones are joined at the next accept
  std::atomic<size_t> active_{0};
};

}  // namespace trialmesh::node
