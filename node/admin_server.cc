#include "node/admin_server.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>

#include "node/admin_protocol.h"

namespace trialmesh::node {
namespace {

nlohmann::json failure(const Status& s) {
  return {{"v", kAdminProtocolVersion},
          {"ok", false},
          {"code", statusCodeWireName(s.code())},
          {"message", s.message()}};
}

}  // namespace

// The directory must not be writable by users other than its owner unless it is sticky and
// root- or self-owned (then nobody else may rename or remove our socket).
Status checkAdminSocketPath(const std::string& path) {
  struct sockaddr_un addr {};
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    return Status::invalidArgument("admin_socket '" + path + "' is empty or longer than " +
                                   std::to_string(sizeof(addr.sun_path) - 1) +
                                   " bytes (a Unix socket path limit); choose a shorter path");
  }
  const std::string dir = std::filesystem::path(path).parent_path().string();
  struct stat st {};
  if (::stat(dir.empty() ? "." : dir.c_str(), &st) != 0) {
    return Status::notFound("admin_socket " + path + ": directory " + dir +
                            " does not exist (with systemd, RuntimeDirectory=trialmesh creates "
                            "/run/trialmesh)");
  }
  const bool othersWrite = (st.st_mode & (S_IWGRP | S_IWOTH)) != 0;
  const bool safeSticky =
      (st.st_mode & S_ISVTX) != 0 && (st.st_uid == 0 || st.st_uid == ::geteuid());
  if (othersWrite && !safeSticky) {
    return Status::permissionDenied("admin_socket " + path + ": directory " + dir +
                                    " is writable by other users, who could replace the socket; "
                                    "use a directory only the service user can write, e.g. "
                                    "/run/trialmesh");
  }
  return Status::ok();
}

void AdminReply::progress(uint64_t done, uint64_t total) {
  (void)sendAdminMessage(fd_, {{"v", kAdminProtocolVersion}, {"progress", {done, total}}});
}

AdminServer::~AdminServer() { stop(); }

Status AdminServer::start(const std::string& path, AdminHandler handler) {
  TM_RETURN_IF_ERROR(checkAdminSocketPath(path));
  struct sockaddr_un addr {};
  addr.sun_family = AF_UNIX;
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return Status::alreadyExists("admin_socket " + path +
                                   " exists and is not a socket; remove it or choose another path");
    }
    auto other = connectAdminSocket(path);
    if (other) {
      ::close(*other);
      return Status::unavailable("admin_socket " + path +
                                 ": another node is listening there; stop it or choose another "
                                 "path");
    }
    ::unlink(path.c_str());  // stale: left by a node that was killed
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::ioError("admin_socket: socket(): " + std::string(strerror(errno)));
  if (::bind(fd, reinterpret_cast<struct sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::chmod(path.c_str(), 0660) != 0 || ::listen(fd, 16) != 0 ||
      ::pipe2(wakeFds_, O_CLOEXEC) != 0) {
    const int err = errno;
    ::close(fd);
    ::unlink(path.c_str());
    return Status::ioError("admin_socket " + path + ": " + std::strerror(err));
  }
  path_ = path;
  handler_ = std::move(handler);
  listenFd_ = fd;
  acceptor_ = std::thread([this] { acceptLoop(); });
  return Status::ok();
}

void AdminServer::stop() {
  if (listenFd_ < 0) return;
  char byte = 1;
  (void)!::write(wakeFds_[1], &byte, 1);
  acceptor_.join();
  std::list<Worker> workers;
  {
    std::lock_guard lock(mu_);
    workers.swap(workers_);
  }
  for (auto& w : workers) w.thread.join();
  ::close(listenFd_);
  ::close(wakeFds_[0]);
  ::close(wakeFds_[1]);
  listenFd_ = -1;
  ::unlink(path_.c_str());
}

void AdminServer::acceptLoop() {
  for (;;) {
    struct pollfd fds[2] = {{listenFd_, POLLIN, 0}, {wakeFds_[0], POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[1].revents != 0) return;
    if ((fds[0].revents & POLLIN) == 0) continue;
    int conn = ::accept4(listenFd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (conn < 0) continue;
    // A client that connects and sends nothing must not hold a thread for ever.
    struct timeval tv {
      10, 0
    };
    ::setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (active_.load() >= kMaxAdminConnections) {
      (void)sendAdminMessage(
          conn, failure(Status::resourceExhausted("the node is already serving " +
                                                  std::to_string(kMaxAdminConnections) +
                                                  " admin requests; retry when one has finished")));
      ::close(conn);
      continue;
    }
    ++active_;
    std::lock_guard lock(mu_);
    for (auto it = workers_.begin(); it != workers_.end();) {
      if (it->done->load()) {
        it->thread.join();
        it = workers_.erase(it);
      } else {
        ++it;
      }
    }
    auto done = std::make_shared<std::atomic<bool>>(false);
    workers_.push_back({std::thread([this, conn, done] {
                          serve(conn);
                          ::close(conn);
                          --active_;
                          done->store(true);
                        }),
                        done});
  }
}

void AdminServer::serve(int fd) {
  auto request = receiveAdminMessage(fd);
  if (!request) {
    if (request.status().code() != StatusCode::kNotFound) {
      (void)sendAdminMessage(fd, failure(request.status()));
    }
    return;
  }
  const nlohmann::json& body = request->body;
  if (!body.contains("v") || !body["v"].is_number_integer() ||
      body["v"].get<int>() != kAdminProtocolVersion) {
    if (request->fd >= 0) ::close(request->fd);
    (void)sendAdminMessage(
        fd,
        failure(Status::failedPrecondition(
            "admin request version " + (body.contains("v") ? body["v"].dump() : "(none)") +
            " is not supported; this node speaks version " + std::to_string(kAdminProtocolVersion) +
            " (use the trialmesh of the same release)")));
    return;
  }
  AdminReply reply(fd);
  Result<nlohmann::json> result = Status::internal("no handler");
  try {
    result = handler_(body, request->fd, reply);
  } catch (const std::exception& e) {
    result = Status::internal(std::string("admin request failed: ") + e.what());
  }
  if (result) {
    (void)sendAdminMessage(fd, {{"v", kAdminProtocolVersion}, {"ok", true}, {"result", *result}});
  } else {
    (void)sendAdminMessage(fd, failure(result.status()));
  }
}

}  // namespace trialmesh::node
